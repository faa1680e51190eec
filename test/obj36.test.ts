import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  encodeObj36Row, parseObj36Row, readObj36Tsv, Obj36Writer, Obj36Error, featureDim,
  type Obj36Record,
} from "../src/data/formats/obj36.ts";

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "obj36_small.tsv");

/** a temp dir removed when the test ends, pass or fail */
function tmpDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "obj36-test-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function collect(p: string, opts?: Parameters<typeof readObj36Tsv>[1]): Promise<Obj36Record[]> {
  const out: Obj36Record[] = [];
  for await (const r of readObj36Tsv(p, opts)) out.push(r);
  return out;
}

/** deterministic pseudo-random record (values exactly representable in float32) */
function makeRecord(id: string, n: number, d: number, seed: number): Obj36Record {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const f32 = (len: number, scale: number, shift = 0) =>
    Float32Array.from({ length: len }, () => Math.fround(rnd() * scale - shift));
  return {
    img_id: id, img_h: 300 + n, img_w: 500 + d, num_boxes: n,
    objects_id: Int32Array.from({ length: n }, (_, j) => (j % 3 === 0 ? -1 - j : 1599 - j)),
    objects_conf: f32(n, 1), attrs_id: Int32Array.from({ length: n }, (_, j) => j * 11),
    attrs_conf: f32(n, 1), boxes: f32(4 * n, 600), features: f32(n * d, 10, 5),
  };
}

test("reads the numpy-written fixture with exact values", async () => {
  const recs = await collect(FIXTURE);
  assert.equal(recs.length, 3);
  const D = 6;
  [3, 1, 4].forEach((n, i) => {
    const r = recs[i];
    assert.equal(r.img_id, `COCO_val2014_${String(42 + i).padStart(12, "0")}`);
    assert.equal(r.img_h, 480 + i);
    assert.equal(r.img_w, 640 - i);
    assert.equal(r.num_boxes, n);
    assert.equal(featureDim(r), D);
    for (let j = 0; j < n; j++) {
      assert.equal(r.objects_id[j], 1599 - j - 10 * i);
      assert.equal(r.attrs_id[j], 7 * j + i);
      assert.equal(r.objects_conf[j], Math.fround(0.5 + 0.1 * j));
      assert.equal(r.attrs_conf[j], Math.fround(1 / (j + 3)));
      assert.deepEqual(Array.from(r.boxes.subarray(4 * j, 4 * j + 4)),
        [10 * j + 0.5 + i, 20 * j + 0.25 + i, 10 * j + 100.75 + i, 20 * j + 50.125 + i]);
      for (let d = 0; d < D; d++) {
        assert.equal(r.features[j * D + d], Math.fround((j * D + d) * 0.01 - i));
      }
    }
  });
});

test("encoding reproduces the numpy/base64 bytes of the fixture (modulo CRLF)", async () => {
  const lines = fs.readFileSync(FIXTURE, "utf8").split("\r\n").filter((l) => l !== "");
  const recs = await collect(FIXTURE);
  assert.equal(lines.length, recs.length);
  recs.forEach((r, i) => assert.equal(encodeObj36Row(r), lines[i]));
});

test("writer/reader round trip, including a full-size 36 x 2048 row and negative ids", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "rt.tsv");
  const recs = [makeRecord("a", 36, 2048, 1), makeRecord("b", 10, 2048, 2), makeRecord("c c", 1, 3, 3)];
  const w = new Obj36Writer(file);
  for (const r of recs) w.write(r);
  await w.close();
  assert.equal(w.rows, 3);
  const back = await collect(file);
  assert.equal(back.length, 3);
  back.forEach((b, i) => assert.deepEqual(b, recs[i]));
  assert.throws(() => w.write(recs[0]), /after close/);
});

test("parse accepts a trailing CR and Python's b'...' wrapper", () => {
  const rec = makeRecord("x", 2, 4, 9);
  const fields = encodeObj36Row(rec).split("\t");
  const wrapped = fields.map((f, i) => ([3, 4, 5, 6, 8, 9].includes(i) ? `b'${f}'` : f)).join("\t");
  assert.deepEqual(parseObj36Row(wrapped + "\r", "t.tsv: line 1"), rec);
});

test("malformed rows name file, line and img_id", () => {
  const rec = makeRecord("COCO_val2014_000000000042", 9, 4, 5);
  const good = encodeObj36Row(rec).split("\t");
  const withField = (i: number, v: string) => good.map((f, k) => (k === i ? v : f)).join("\t");
  const where = "feats.tsv: line 17";
  const at = `feats.tsv: line 17 (img_id COCO_val2014_000000000042)`;
  const cases: [string, RegExp | string][] = [
    [good.slice(0, 9).join("\t"), "expected 10 tab-separated fields, got 9"],
    [withField(7, "nine"), `field "num_boxes" is not a non-negative integer`],
    [withField(1, "-3"), `field "img_h" is not a non-negative integer`],
    [withField(8, Buffer.alloc(140).toString("base64")), `field "boxes" has 140 bytes, expected 144 for 9 boxes`],
    [withField(4, "@@@@"), `field "objects_conf" is not valid base64`],
    [withField(9, Buffer.alloc(4 * 9 * 4 + 4).toString("base64")), `field "features" has 148 bytes, not a positive multiple of 36`],
    [withField(3, Buffer.from(new BigInt64Array(9).fill(1n << 40n).buffer).toString("base64")),
      `field "objects_id"[0] = 1099511627776 does not fit in int32`],
  ];
  for (const [line, msg] of cases) {
    assert.throws(() => parseObj36Row(line, where), (err: Error) => {
      assert.ok(err instanceof Obj36Error, `${err}`);
      assert.ok(err.message.startsWith(at), err.message);
      assert.ok(err.message.includes(msg as string), `${err.message} should include ${msg}`);
      return true;
    });
  }
  assert.throws(() => parseObj36Row(withField(0, ""), where), /img_id <empty>\): field "img_id" is empty/);
  // a row with its tabs lost: the message stays short
  assert.throws(() => parseObj36Row("x".repeat(5000), where), (err: Error) => err.message.length < 200 && /got 1$/.test(err.message));
});

test("readObj36Tsv reports the failing line, or skips and reports it with skipInvalid", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "feats.tsv");
  const a = makeRecord("img_a", 2, 3, 1);
  const c = makeRecord("img_c", 2, 3, 3);
  const bad = encodeObj36Row(makeRecord("img_b", 2, 3, 2)).split("\t");
  bad[8] = bad[8].slice(0, -4);
  // blank lines are ignored but still counted; no newline after the last row
  fs.writeFileSync(file, `${encodeObj36Row(a)}\n\n${bad.join("\t")}\n${encodeObj36Row(c)}`);
  await assert.rejects(collect(file), (err: Error) => {
    assert.match(err.message, /feats\.tsv: line 3 \(img_id img_b\): field "boxes" has 30 bytes, expected 32 for 2 boxes/);
    return true;
  });
  const skipped: Error[] = [];
  const recs = await collect(file, { skipInvalid: true, onSkip: (e) => skipped.push(e) });
  assert.deepEqual(recs.map((r) => r.img_id), ["img_a", "img_c"]);
  assert.deepEqual(recs[1], c);
  assert.equal(skipped.length, 1);
  assert.match(skipped[0].message, /line 3 \(img_id img_b\)/);
});

test("encode rejects inconsistent records", () => {
  const r = makeRecord("x", 3, 4, 1);
  assert.throws(() => encodeObj36Row({ ...r, boxes: r.boxes.subarray(0, 8) }), /img_id x\): boxes has 8 values, expected 12 for 3 boxes/);
  assert.throws(() => encodeObj36Row({ ...r, features: r.features.subarray(0, 7) }), /features has 7 values/);
  assert.throws(() => encodeObj36Row({ ...r, img_id: "a\tb" }), /without tabs/);
  assert.throws(() => encodeObj36Row({ ...r, img_w: 1.5 }), /img_w must be a non-negative integer/);
});

test("NaN or infinite features, boxes and confidences name file, line, img_id, field, box and dim", () => {
  const rec = makeRecord("COCO_val2014_000000000042", 3, 4, 9);
  const where = "feats.tsv: line 17";
  const cases: [Partial<Obj36Record>, string][] = [];
  const f = rec.features.slice();
  f[2 * 4 + 3] = NaN;
  cases.push([{ features: f }, `field features box 2 dim 3 is NaN`]);
  const b = rec.boxes.slice();
  b[4 + 1] = -Infinity;
  cases.push([{ boxes: b }, `field boxes box 1 coordinate 1 is -Infinity`]);
  const c = rec.objects_conf.slice();
  c[0] = Infinity;
  cases.push([{ objects_conf: c }, `field objects_conf[0] is Infinity`]);
  for (const [change, msg] of cases) {
    const line = encodeObj36Row({ ...rec, ...change });
    assert.throws(() => parseObj36Row(line, where), (err: Error) => {
      assert.ok(err instanceof Obj36Error, `${err}`);
      assert.equal(err.message, `feats.tsv: line 17 (img_id COCO_val2014_000000000042): ${msg}`);
      return true;
    });
  }
});
