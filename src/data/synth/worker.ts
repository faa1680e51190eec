/**
 * Worker thread making batches of world images. Protocol: the parent sends
 * { start, end } batches; the worker answers { items } in index order, or { error }.
 */
import { parentPort, workerData } from "node:worker_threads";
import { makeRange, type ItemContext } from "./item.ts";

const ctx = workerData as ItemContext;

if (parentPort && ctx) {
  const port = parentPort;
  port.on("message", (msg: { start: number; end: number }) => {
    makeRange(ctx, msg.start, msg.end).then(
      (items) => port.postMessage({ items }),
      (e: Error) => port.postMessage({ error: e.message }),
    );
  });
}
