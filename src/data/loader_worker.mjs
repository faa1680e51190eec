// Worker bootstrap: registers the TypeScript loader in this thread, then runs the worker module.
import { register } from "tsx/esm/api";

register();
await import("./loader_worker.ts");
