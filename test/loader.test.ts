import { test } from "node:test";
import assert from "node:assert/strict";
import { Loader, Sampler, toTensors } from "../src/data/loader.ts";

const spec = { module: new URL("./fixtures/loader_builder.ts", import.meta.url).href, args: { n: 50 } };

test("Sampler: deterministic per (seed, epoch), different across epochs, rank shards are disjoint and cover", () => {
  const a = new Sampler(50, { seed: 3 }).order(0);
  assert.deepEqual(a, new Sampler(50, { seed: 3 }).order(0));
  assert.notDeepEqual(a, new Sampler(50, { seed: 3 }).order(1));
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
  const r0 = new Sampler(50, { seed: 3, rank: 0, world: 2 }).order(2);
  const r1 = new Sampler(50, { seed: 3, rank: 1, world: 2 }).order(2);
  assert.equal(r0.length, 25);
  assert.equal(new Set([...r0, ...r1]).size, 50);
  assert.equal(r0.filter((i) => r1.includes(i)).length, 0);
});

test("Loader: batches follow the sampler, cross epochs, and resume at a position exactly", async () => {
  const l = await Loader.create(spec, { batchSize: 8, seed: 1 });
  assert.equal(l.batchesPerEpoch(), 6);
  const seen: number[][] = [];
  for (let i = 0; i < 9; i++) seen.push((await l.next()).meta.indices as number[]);
  assert.deepEqual(seen[0], new Sampler(50, { seed: 1 }).order(0).slice(0, 8));
  assert.deepEqual(seen[6], new Sampler(50, { seed: 1 }).order(1).slice(0, 8));
  assert.deepEqual(l.position, { epoch: 1, batch: 3 });
  const r = await Loader.create(spec, { batchSize: 8, seed: 1 });
  r.seek({ epoch: 1, batch: 1 });
  assert.deepEqual((await r.next()).meta.indices, seen[7]);
  const t = toTensors(await r.next());
  assert.equal(t.idx.dtype, "int64");
  assert.deepEqual(t.x.shape, [8, 2]);
});

test("Loader: worker threads build the same batches as the main thread, ahead of time", async () => {
  const main = await Loader.create(spec, { batchSize: 5, seed: 9 });
  const work = await Loader.create(spec, { batchSize: 5, seed: 9, workers: 2, prefetch: 3 });
  try {
    for (let i = 0; i < 12; i++) {
      const a = await main.next();
      const b = await work.next();
      assert.deepEqual(Array.from(b.arrays.x.data as Float32Array), Array.from(a.arrays.x.data as Float32Array));
    }
  } finally {
    await work.close();
  }
});

test("Loader: a worker that dies is one line on the batches it owes, not a crash with a stack trace", async () => {
  const why = "/data/feats.tsv: line 3 (img_id 7): cannot be read in this thread";
  const l = await Loader.create({ ...spec, args: { n: 50, startFailure: why } }, { batchSize: 4, seed: 1, workers: 2 });
  try {
    // an unheard "error" event from the worker ended the process here
    await new Promise((r) => setTimeout(r, 1500));
    for (let k = 0; k < 3; k++) {
      await assert.rejects(l.next(), (e: Error) => {
        assert.equal(e.message, `loader worker stopped: ${why}`);
        return true;
      });
    }
  } finally {
    await l.close();
  }
});
