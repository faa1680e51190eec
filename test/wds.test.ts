import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import tar from "tar-stream";
import {
  expandBraces, readWds, WdsError, WdsShardWriter, WdsShardedWriter, sampleText, sampleJson, type WdsSample, type WdsReadOptions,
} from "../src/data/formats/wds.ts";

/** a temp dir removed when the test ends, pass or fail */
function tmpDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wds-test-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const bytesOf = (seed: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 255);

async function collect(shards: string | string[], opts?: WdsReadOptions): Promise<WdsSample[]> {
  const out: WdsSample[] = [];
  for await (const s of readWds(shards, opts)) out.push(s);
  return out;
}

/** a raw tar written entry by entry with tar-stream (bypassing our writer's checks) */
async function rawTar(file: string, entries: [string, string | Uint8Array][]): Promise<void> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on("end", () => r()));
  for (const [name, content] of entries) {
    const buf = typeof content === "string" ? Buffer.from(content) : Buffer.from(content);
    await new Promise<void>((res, rej) => pack.entry({ name, size: buf.length }, buf, (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await ended;
  fs.writeFileSync(file, Buffer.concat(chunks));
}

test("brace expansion of shard lists", () => {
  const ten = expandBraces("data/shard-{000..009}.tar");
  assert.equal(ten.length, 10);
  assert.equal(ten[0], "data/shard-000.tar");
  assert.equal(ten[9], "data/shard-009.tar");
  assert.deepEqual(expandBraces("{train,val}-{0..2}.tar"), ["train-0.tar", "train-1.tar", "train-2.tar", "val-0.tar", "val-1.tar", "val-2.tar"]);
  assert.deepEqual(expandBraces("s{8..11}"), ["s8", "s9", "s10", "s11"]);
  assert.deepEqual(expandBraces("s{3..1}"), ["s3", "s2", "s1"]);
  assert.deepEqual(expandBraces("{a,b{1,2}}.tar"), ["a.tar", "b1.tar", "b2.tar"]);
  assert.deepEqual(expandBraces("lit{x}-{1..2}"), ["lit{x}-1", "lit{x}-2"]);
  assert.deepEqual(expandBraces("plain.tar"), ["plain.tar"]);
});

test("sharded writer → brace-expanded reader round trip", async (t) => {
  const dir = tmpDir(t);
  const w = new WdsShardedWriter(path.join(dir, "shard-%06d.tar"), { maxCount: 3, mtime: new Date(0) });
  const n = 7;
  for (let i = 0; i < n; i++) {
    const key = String(i).padStart(6, "0");
    await w.write({ key, files: { jpg: bytesOf(i, 100 + 50 * i), txt: `caption ${i} ✓`, json: { id: i, url: `http://x/${i}` } } });
  }
  await w.close();
  assert.deepEqual(w.shards.map((s) => path.basename(s)), ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]);
  const reader = readWds(path.join(dir, "shard-{000000..000002}.tar"), { required: ["jpg;png", "txt"] });
  const got: WdsSample[] = [];
  for await (const s of reader) got.push(s);
  assert.equal(reader.samples, n);
  assert.equal(reader.skipped, 0);
  got.forEach((s, i) => {
    assert.equal(s.key, String(i).padStart(6, "0"));
    assert.equal(path.basename(s.shard), `shard-00000${Math.floor(i / 3)}.tar`);
    assert.deepEqual(Object.keys(s.files).sort(), ["jpg", "json", "txt"]);
    assert.deepEqual(s.files.jpg, bytesOf(i, 100 + 50 * i));
    assert.equal(sampleText(s, "txt"), `caption ${i} ✓`);
    assert.deepEqual(sampleJson(s), { id: i, url: `http://x/${i}` });
  });
  // GNU tar sees the same entries
  const listing = execFileSync("tar", ["tf", w.shards[2]], { encoding: "utf8" }).trim().split("\n");
  assert.deepEqual(listing, ["000006.jpg", "000006.txt", "000006.json"]);
  assert.throws(() => sampleText(got[0], "png"), /sample "000000": no "png" file \(has jpg, txt, json\)/);
});

test("reads shards made by GNU tar (plain and gzipped, with directories in keys)", async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, "src");
  fs.mkdirSync(path.join(src, "part.v1"), { recursive: true });
  const files: [string, Uint8Array][] = [
    ["part.v1/000001.jpg", bytesOf(1, 300)], ["part.v1/000001.txt", Buffer.from("one")],
    ["part.v1/000001.seg.PNG", bytesOf(5, 20)],
    ["part.v1/000002.jpg", bytesOf(2, 10)], ["part.v1/000002.txt", Buffer.from("two")],
  ];
  for (const [name, data] of files) fs.writeFileSync(path.join(src, name), data);
  const names = files.map(([n]) => n);
  execFileSync("tar", ["cf", path.join(dir, "a.tar"), "-C", src, "part.v1", ...names]); // a directory entry too
  execFileSync("tar", ["czf", path.join(dir, "b.tar.gz"), "-C", src, ...names]);
  for (const shard of ["a.tar", "b.tar.gz"]) {
    const got = await collect(path.join(dir, shard), { required: ["jpg", "txt"] });
    assert.deepEqual(got.map((s) => s.key), ["part.v1/000001", "part.v1/000002"]);
    assert.deepEqual(got[0].files["seg.png"], bytesOf(5, 20));
    assert.deepEqual(got[0].files.jpg, bytesOf(1, 300));
    assert.equal(sampleText(got[1], "txt"), "two");
  }
  // a damaged gzip trailer (CRC): zlib may report it before or after the tar entries were parsed;
  // either way the shard is reported (with the sample being read, if any) and the last sample is not yielded
  const gz = fs.readFileSync(path.join(dir, "b.tar.gz"));
  gz[gz.length - 6] ^= 0xff;
  fs.writeFileSync(path.join(dir, "c.tar.gz"), gz);
  await assert.rejects(collect(path.join(dir, "c.tar.gz")), (err: Error) => {
    assert.match(err.message, /^\S*c\.tar\.gz: (sample "part\.v1\/000002": )?truncated or corrupt gzip\/tar: incorrect data check/);
    return true;
  });
});

test("incomplete samples error naming shard and key, or are skipped and counted", async (t) => {
  const dir = tmpDir(t);
  const shard = path.join(dir, "shard-000.tar");
  await rawTar(shard, [
    ["000001.jpg", bytesOf(1, 5)], ["000001.txt", "a"],
    ["000002.jpg", bytesOf(2, 5)], // img2dataset failure: caption missing
    ["000003.jpg", bytesOf(3, 5)], ["000003.txt", "c"],
  ]);
  await assert.rejects(collect(shard, { required: ["jpg", "txt"] }), (err: Error) => {
    assert.ok(err instanceof WdsError);
    assert.match(err.message, /^\S*shard-000\.tar: sample "000002": incomplete: missing "txt" \(has jpg\)/);
    assert.equal(err.key, "000002");
    return true;
  });
  const skipped: WdsError[] = [];
  const reader = readWds(shard, { required: ["jpg", "txt"], skipInvalid: true, onSkip: (e) => skipped.push(e) });
  const keys: string[] = [];
  for await (const s of reader) keys.push(s.key);
  assert.deepEqual(keys, ["000001", "000003"]);
  assert.equal(reader.skipped, 1);
  assert.equal(skipped[0].key, "000002");
  // without requirements the sample is fine
  assert.equal((await collect(shard)).length, 3);
});

test("split keys, duplicate files and extension-less entries are malformed", async (t) => {
  const dir = tmpDir(t);
  const split = path.join(dir, "split.tar");
  await rawTar(split, [["000001.jpg", "x"], ["000002.jpg", "y"], ["000001.txt", "z"]]);
  await assert.rejects(collect(split), /^WdsError: \S*split\.tar: sample "000001": key appears again after other samples/);
  const dup = path.join(dir, "dup.tar");
  await rawTar(dup, [["000001.jpg", "x"], ["000001.jpg", "y"], ["000002.jpg", "z"]]);
  await assert.rejects(collect(dup), /^WdsError: \S*dup\.tar: sample "000001": duplicate file "000001\.jpg"/);
  const r = readWds(dup, { skipInvalid: true });
  const keys: string[] = [];
  for await (const s of r) keys.push(s.key);
  assert.deepEqual([keys, r.skipped], [["000002"], 1]);
  const noext = path.join(dir, "noext.tar");
  await rawTar(noext, [["README", "x"], ["000001.jpg", "y"]]);
  await assert.rejects(collect(noext), /^WdsError: \S*noext\.tar: entry "README" has no key\.extension name/);
});

test("a truncated shard errors naming shard and sample; skipInvalid moves on to the next shard", async (t) => {
  const dir = tmpDir(t);
  const w = new WdsShardedWriter(path.join(dir, "s-%d.tar"), { maxCount: 4 });
  for (let i = 0; i < 8; i++) await w.write({ key: `k${i}`, files: { bin: bytesOf(i, 5000), txt: `t${i}` } });
  await w.close();
  const first = w.shards[0];
  const full = fs.readFileSync(first);
  // cut inside the 3rd sample's "bin" payload (each sample: 512 header + 5120 data + 512 header + 512 data)
  fs.writeFileSync(first, full.subarray(0, 2 * 6656 + 512 + 1000));
  await assert.rejects(collect(path.join(dir, "s-{0..1}.tar")), (err: Error) => {
    assert.ok(err instanceof WdsError, String(err));
    assert.match(err.message, /^\S*s-0\.tar: sample "k2": truncated or corrupt tar: /);
    return true;
  });
  const r = readWds(path.join(dir, "s-{0..1}.tar"), { skipInvalid: true });
  const keys: string[] = [];
  for await (const s of r) keys.push(s.key);
  assert.deepEqual(keys, ["k0", "k1", "k4", "k5", "k6", "k7"]);
  assert.equal(r.skipped, 1);
  await assert.rejects(collect(path.join(dir, "missing.tar")), /missing\.tar: cannot open shard/);
});

test("shard writer validates keys and values", async (t) => {
  const dir = tmpDir(t);
  const w = new WdsShardWriter(path.join(dir, "w.tar"));
  await assert.rejects(w.write({ key: "a.b", files: { jpg: bytesOf(1, 1) } }), /w\.tar: sample "a\.b": a key must be a relative path/);
  await assert.rejects(w.write({ key: "a", files: {} }), /sample "a": no files/);
  await assert.rejects(w.write({ key: "a", files: { bin: { x: 1 } } }), /sample "a": value for "bin" must be bytes or a string/);
  await w.write({ key: "a", files: { json: { x: 1 } } });
  await assert.rejects(w.write({ key: "a", files: { txt: "again" } }), /sample "a": duplicate key/);
  await w.close();
  const got = await collect(path.join(dir, "w.tar"));
  assert.deepEqual(got.map((s) => [s.key, sampleJson(s)]), [["a", { x: 1 }]]);
});
