#!/usr/bin/env node
// The `vlp` command. In the repository (src/ present) it runs the TypeScript CLI through tsx's
// loader; an installed package has no src/ and runs the JavaScript compiled into dist/
// (`npm run build`, which `npm pack` runs first).
import { existsSync } from "node:fs";

const source = new URL("../src/cli/vlp.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import("../dist/cli/vlp.js");
}
