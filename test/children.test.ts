// src/cli/children.ts, the process pool of `vlp demo` and experiments/compare.ts: at most N tasks at
// once, failures collected without stopping the others; a child's output in its log and by line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pool, runChild } from "../src/cli/children.ts";

test("pool: at most `jobs` at once, every item run once in order, failures returned after the rest", async () => {
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const failed = await pool([0, 1, 2, 3, 4, 5, 6], 3, async (i) => {
    started.push(i);
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, 5 + (i % 3) * 5));
    running--;
    if (i === 2 || i === 5) throw new Error(`item ${i}`);
  });
  assert.equal(most, 3);
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(failed.map((f) => [f.item, f.error.message]), [[2, "item 2"], [5, "item 5"]]);
  assert.deepEqual(await pool([], 2, async () => assert.fail("no item")), []);
});

test("runChild: exit code, stdout and stderr in the log, non-empty lines to onLine", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vlp-children-"));
  const lines: string[] = [];
  const log = join(dir, "a.log");
  const code = await runChild(["-e", "console.log('one\\n\\ntwo'); console.error('three'); process.exit(3)"], { log, onLine: (l) => lines.push(l) });
  assert.equal(code, 3);
  assert.deepEqual(lines.sort(), ["one", "three", "two"]);
  assert.deepEqual(readFileSync(log, "utf8").split("\n").filter(Boolean).sort(), ["one", "three", "two"]);
  assert.equal(await runChild(["-e", "process.stdout.write(process.env.X)"], { log: join(dir, "b.log"), env: { X: "x" } }), 0);
  assert.equal(readFileSync(join(dir, "b.log"), "utf8"), "x");
});
