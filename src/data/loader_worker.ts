// Worker thread of the Loader: builds host batches with the same builder module as the main thread.
import { parentPort, workerData } from "node:worker_threads";
import type { BatchBuilder, BuilderSpec, HostArray } from "./loader.ts";

const spec = workerData as BuilderSpec;
const builder: BatchBuilder<object, object> = await (await import(spec.module)).createBuilder(spec.args);

parentPort!.on("message", async (m: { id: number; indices: number[]; step: number; items?: unknown[] }) => {
  try {
    const batch = await builder.build(m.indices, m.step, m.items);
    const transfer = [...new Set(Object.values(batch.arrays as Record<string, HostArray>).map((a) => a.data.buffer as ArrayBuffer))];
    parentPort!.postMessage({ id: m.id, batch }, transfer);
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
