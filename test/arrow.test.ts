import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import {
  Table, RecordBatch, Field, List, Utf8, Binary, Int64, Float64, Null, Type, vectorFromArray, tableToIPC, tableFromIPC,
  type DataType,
} from "apache-arrow";
import {
  ArrowFile, ArrowFormatError, CaptionArrowReader, VqaArrowReader, Nlvr2ArrowReader,
  CaptionArrowWriter, VqaArrowWriter, Nlvr2ArrowWriter, type VqaRowWithImage,
} from "../src/data/formats/arrow.ts";

/** a temp dir removed when the test ends, pass or fail */
function tmpDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arrow-test-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const listOf = (t: DataType) => new List(new Field("item", t, true));
const bytesOf = (seed: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 255);
const big = (xs: number[]) => xs.map(BigInt);

/** a table built directly with apache-arrow (not our writer), in several record batches */
function handBuilt(columns: Record<string, [unknown[], DataType]>, split: number[]): Table {
  const n = Object.values(columns)[0][0].length;
  const bounds = [0, ...split, n];
  const batches: RecordBatch[] = [];
  for (let b = 0; b + 1 < bounds.length; b++) {
    const vecs: Record<string, any> = {};
    for (const [name, [values, type]] of Object.entries(columns)) {
      vecs[name] = vectorFromArray(values.slice(bounds[b], bounds[b + 1]) as any[], type);
    }
    batches.push(new Table(vecs).batches[0]);
  }
  return new Table(batches);
}

function captionColumns(): Record<string, [unknown[], DataType]> {
  return {
    image: [[bytesOf(1, 100), bytesOf(2, 0), bytesOf(3, 5000), bytesOf(4, 7)], new Binary()],
    caption: [[["a dog", "a brown dog"], ["ünïcödé ✓"], [], ["x", "y", "z"]], listOf(new Utf8())],
    image_id: [["COCO_val2014_000000000042.jpg", "b.jpg", "c.jpg", "d.jpg"], new Utf8()],
    split: [["train", "train", "val", "restval"], new Utf8()],
  };
}

test("reads a hand-built apache-arrow caption table (3 record batches) by row, images on demand", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "coco_caption_karpathy_val.arrow");
  const table = handBuilt(captionColumns(), [1, 3]);
  assert.equal(table.batches.length, 3);
  fs.writeFileSync(file, tableToIPC(table, "file"));
  const r = CaptionArrowReader.open(file);
  assert.equal(r.numRows, 4);
  assert.deepEqual(r.row(0), { caption: ["a dog", "a brown dog"], image_id: "COCO_val2014_000000000042.jpg", split: "train" });
  assert.deepEqual(r.row(1).caption, ["ünïcödé ✓"]);
  assert.deepEqual(r.row(2), { caption: [], image_id: "c.jpg", split: "val" });
  assert.deepEqual(r.row(3).caption, ["x", "y", "z"]);
  for (const i of [3, 0, 2, 1]) assert.deepEqual(r.image(i), bytesOf(i + 1, [100, 0, 5000, 7][i]));
  assert.deepEqual([...r.rows()].map((x) => x.split), ["train", "train", "val", "restval"]);
  assert.throws(() => r.row(4), /coco_caption_karpathy_val\.arrow: row 4 out of range \[0, 4\)/);
  r.close();

  // the stream flavour of IPC is accepted too
  const stream = path.join(dir, "stream.arrow");
  fs.writeFileSync(stream, tableToIPC(table, "stream"));
  const s = CaptionArrowReader.open(stream);
  assert.deepEqual(s.row(3).caption, ["x", "y", "z"]);
  assert.deepEqual(s.image(2), bytesOf(3, 5000));
  s.close();
});

test("reads hand-built VQA tables: int64 ids, nested lists, and a test split with empty (list<null>) answers", (t) => {
  const dir = tmpDir(t);
  const train = path.join(dir, "vqav2_train.arrow");
  fs.writeFileSync(train, tableToIPC(handBuilt({
    image: [[bytesOf(9, 50), bytesOf(8, 60)], new Binary()],
    questions: [[["what color?", "how many?"], ["is it?"]], listOf(new Utf8())],
    answers: [[[["red", "dark red"], ["2"]], [["yes"]]], listOf(listOf(new Utf8()))],
    answer_labels: [[[big([5, 17]), big([3])], [big([0])]], listOf(listOf(new Int64()))],
    answer_scores: [[[[1, 0.3], [0.9]], [[1]]], listOf(listOf(new Float64()))],
    image_id: [big([9, 262146]), new Int64()],
    question_id: [[big([9000, 9001]), big([262146000])], listOf(new Int64())],
    split: [["train", "train"], new Utf8()],
  }, [1]), "file"));
  const r = VqaArrowReader.open(train);
  assert.deepEqual(r.row(0), {
    questions: ["what color?", "how many?"], answers: [["red", "dark red"], ["2"]],
    answer_labels: [[5, 17], [3]], answer_scores: [[1, 0.3], [0.9]], image_id: 9, question_id: [9000, 9001], split: "train",
  });
  assert.equal(r.row(1).image_id, 262146);
  assert.deepEqual(r.image(1), bytesOf(8, 60));
  r.close();

  const testSplit = path.join(dir, "vqav2_test.arrow");
  fs.writeFileSync(testSplit, tableToIPC(handBuilt({
    image: [[bytesOf(1, 10)], new Binary()],
    questions: [[["q?"]], listOf(new Utf8())],
    answers: [[[]], listOf(new Null())],
    answer_labels: [[[]], listOf(new Null())],
    answer_scores: [[[]], listOf(new Null())],
    image_id: [big([1]), new Int64()],
    question_id: [[big([10])], listOf(new Int64())],
    split: [["test"], new Utf8()],
  }, []), "file"));
  const ts = VqaArrowReader.open(testSplit);
  assert.deepEqual(ts.row(0).answers, []);
  assert.deepEqual(ts.row(0).answer_scores, []);
  ts.close();
});

test("reads a hand-built NLVR2 table; bad answers and missing/mistyped columns name file, row and column", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "nlvr2_dev.arrow");
  const cols = (answers: string[][]): Record<string, [unknown[], DataType]> => ({
    image_0: [[bytesOf(1, 30), bytesOf(2, 31)], new Binary()],
    image_1: [[bytesOf(3, 32), bytesOf(4, 33)], new Binary()],
    questions: [[["left has two dogs", "right is empty"], ["one bird"]], listOf(new Utf8())],
    answers: [answers, listOf(new Utf8())],
    identifier: [["dev-850-0", "dev-851-2"], new Utf8()],
  });
  fs.writeFileSync(file, tableToIPC(handBuilt(cols([["True", "False"], ["False"]]), []), "file"));
  const r = Nlvr2ArrowReader.open(file);
  assert.deepEqual(r.row(0), { questions: ["left has two dogs", "right is empty"], answers: ["True", "False"], identifier: "dev-850-0" });
  assert.deepEqual(r.image(1, 0), bytesOf(2, 31));
  assert.deepEqual(r.image(1, 1), bytesOf(4, 33));
  r.close();

  const bad = path.join(dir, "bad.arrow");
  fs.writeFileSync(bad, tableToIPC(handBuilt(cols([["True", "False"], ["maybe"]]), []), "file"));
  const b = Nlvr2ArrowReader.open(bad);
  assert.deepEqual(b.row(0).answers, ["True", "False"]);
  assert.throws(() => b.row(1), (e: Error) => e instanceof ArrowFormatError &&
    /bad\.arrow: row 1 column "answers": answer 0 is "maybe", expected "True" or "False"/.test(e.message));
  b.close();

  const noCol = path.join(dir, "nocol.arrow");
  const { identifier: _drop, ...rest } = cols([["True", "False"], ["False"]]);
  fs.writeFileSync(noCol, tableToIPC(handBuilt(rest, []), "file"));
  assert.throws(() => Nlvr2ArrowReader.open(noCol), /nocol\.arrow: not a NLVR2 table: no column "identifier"/);

  const wrongType = path.join(dir, "wrongtype.arrow");
  fs.writeFileSync(wrongType, tableToIPC(handBuilt({ ...cols([["True", "False"], ["False"]]), questions: [["a", "b"], new Utf8()] }, []), "file"));
  assert.throws(() => Nlvr2ArrowReader.open(wrongType), /wrongtype\.arrow: column "questions" has type Utf8, expected list<string>/);

  const nulls = path.join(dir, "nulls.arrow");
  fs.writeFileSync(nulls, tableToIPC(handBuilt({ ...captionColumns(), caption: [[["a"], null, ["b", null], []], listOf(new Utf8())] }, []), "file"));
  const n = CaptionArrowReader.open(nulls);
  assert.throws(() => n.row(1), /nulls\.arrow: row 1 column "caption": expected list<string>, got null/);
  assert.throws(() => n.row(2), /nulls\.arrow: row 2 column "caption"\[1\]: expected string, got null/);
  n.close();

  const truncated = path.join(dir, "truncated.arrow");
  fs.writeFileSync(truncated, fs.readFileSync(file).subarray(0, 300));
  assert.throws(() => Nlvr2ArrowReader.open(truncated), /truncated\.arrow: no ARROW1 magic at the end/);
});

test("our writers round trip through our readers and through apache-arrow's own reader", async (t) => {
  const dir = tmpDir(t);
  const cap = path.join(dir, "cap.arrow");
  const w = new CaptionArrowWriter(cap, { batchRows: 2 });
  for (let i = 0; i < 5; i++) {
    await w.write({ image: Buffer.from(bytesOf(i, 10 + i)), caption: [`caption ${i}`, "second"], image_id: `${i}.jpg`, split: "train" });
  }
  await w.close();
  const r = CaptionArrowReader.open(cap);
  assert.equal(r.numRows, 5);
  assert.deepEqual(r.row(4), { caption: ["caption 4", "second"], image_id: "4.jpg", split: "train" });
  assert.deepEqual(r.image(3), bytesOf(3, 13));
  r.close();
  const af = ArrowFile.open(cap);
  assert.equal(af.numBatches, 3);
  af.close();
  const ct = tableFromIPC(fs.readFileSync(cap));
  assert.equal(ct.numRows, 5);
  assert.equal(ct.schema.fields.find((f) => f.name === "caption")!.type.typeId, Type.List);
  assert.deepEqual(ct.getChild("caption")!.get(2)!.toArray(), ["caption 2", "second"]);
  assert.deepEqual(ct.getChild("image")!.get(1), bytesOf(1, 11));

  const vqa = path.join(dir, "vqa.arrow");
  const vw = new VqaArrowWriter(vqa);
  const row: VqaRowWithImage = {
    image: bytesOf(5, 20), questions: ["q1", "q2"], answers: [["a"], ["b", "c"]], answer_labels: [[1], [2, 3]],
    answer_scores: [[1], [0.6, 0.3]], image_id: 123, question_id: [1230, 1231], split: "val",
  };
  await vw.write(row);
  await assert.rejects(vw.write({ ...row, question_id: [1] }), /vqa\.arrow: row 1 column "question_id": 1 ids for 2 questions/);
  await assert.rejects(vw.write({ ...row, image_id: "x" }), /row 1 column "image_id": string after number ids/);
  await assert.rejects(vw.write({ ...row, answer_scores: [[1], [0.6]] }), /row 1 column "answer_scores": question 1: 1 values for 2 answers/);
  await vw.close();
  const vr = VqaArrowReader.open(vqa);
  const { image: _img, ...meta } = row;
  assert.deepEqual(vr.row(0), meta);
  assert.deepEqual(vr.image(0), row.image);
  vr.close();
  const vt = tableFromIPC(fs.readFileSync(vqa));
  assert.equal(vt.getChild("image_id")!.get(0), 123n);
  assert.equal(vt.getChild("answer_scores")!.get(0)!.get(1)!.get(1), 0.3);

  const nl = path.join(dir, "nlvr2.arrow");
  const nw = new Nlvr2ArrowWriter(nl);
  await assert.rejects(nw.write({ image_0: bytesOf(1, 1), image_1: bytesOf(2, 2), questions: ["s"], answers: ["yes" as "True"], identifier: "x" }),
    /nlvr2\.arrow: row 0 column "answers": answer 0 is "yes"/);
  await nw.close(); // empty table: schema and footer only
  const nr = Nlvr2ArrowReader.open(nl);
  assert.equal(nr.numRows, 0);
  nr.close();
  assert.equal(tableFromIPC(fs.readFileSync(nl)).schema.fields.length, 5);
});

test("row access does not load the images: ~100 MB single-batch file, small RSS growth", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "big.arrow");
  const w = new CaptionArrowWriter(file, { batchRows: 1000, batchBytes: 1e9 });
  const img = new Uint8Array(2_500_000);
  for (let i = 0; i < 40; i++) {
    img.fill(i);
    await w.write({ image: img, caption: [`c${i}`], image_id: i, split: "train" });
  }
  await w.close();
  const af = ArrowFile.open(file);
  assert.equal(af.numBatches, 1);
  af.close();
  const size = fs.statSync(file).size;
  assert.ok(size > 100e6);

  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  const before = process.memoryUsage().rss;
  const r = CaptionArrowReader.open(file);
  for (let i = 0; i < r.numRows; i++) assert.deepEqual(r.row(i).caption, [`c${i}`]);
  const im = r.image(17);
  assert.equal(im.length, 2_500_000);
  assert.ok(im[0] === 17 && im[im.length - 1] === 17);
  const growth = process.memoryUsage().rss - before;
  r.close();
  assert.ok(growth < 30e6, `RSS grew ${(growth / 1e6).toFixed(1)} MB for a ${(size / 1e6).toFixed(0)} MB file`);
});

test("a pass over many record batches keeps the text buffers of two batches only", async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "gcc_train_0.arrow");
  const w = new CaptionArrowWriter(file, { batchRows: 10 });
  for (let i = 0; i < 95; i++) await w.write({ image: bytesOf(i, 16), caption: [`caption ${i}`, "x"], image_id: `img_${i}`, split: "train" });
  await w.close();
  const f = ArrowFile.open(file);
  assert.equal(f.numBatches, 10);
  for (let i = 0; i < f.numRows; i++) {
    assert.deepEqual(f.value(i, "caption"), [`caption ${i}`, "x"]);
    assert.ok(f.cachedBatchCount <= 2, `row ${i}: ${f.cachedBatchCount} batches cached`);
  }
  assert.deepEqual([f.value(3, "image_id"), f.value(94, "image_id"), f.value(3, "image_id")], ["img_3", "img_94", "img_3"], "evicted batches are read again");
  assert.equal(f.cachedBatchCount, 2);
  f.close();
});

test("damaged files: every byte of a table overwritten in turn is an ArrowFormatError naming the file, with bounded memory", async (t) => {
  const dir = tmpDir(t);
  const good = path.join(dir, "good.arrow");
  const w = new CaptionArrowWriter(good, { batchRows: 3 });
  for (let i = 0; i < 10; i++) w.write({ image: new Uint8Array(20 + i).fill(i), caption: [`cap ${i}`, "x"], image_id: `img${i}.jpg`, split: "train" });
  await w.close();
  const bytes = fs.readFileSync(good);
  const file = path.join(dir, "damaged.arrow");
  const r0 = process.memoryUsage().rss;
  let failures = 0;
  // 0x77 as the high byte of a length claims ~2e9 entries (a footer's schema fields: the heap ran
  // out at 4 GB); 0xff makes offsets negative and int64 values unsafe (a bare TypeError)
  for (const value of [0x77, 0xff]) {
    for (let at = 0; at < bytes.length; at++) {
      if (bytes[at] === value) continue;
      const b = Buffer.from(bytes);
      b[at] = value;
      fs.writeFileSync(file, b);
      try {
        const r = CaptionArrowReader.open(file);
        try {
          for (let i = 0; i < r.numRows; i++) {
            r.row(i);
            r.image(i);
          }
        } finally {
          r.close();
        }
      } catch (e) {
        failures++;
        assert.ok(e instanceof ArrowFormatError, `byte ${at} = ${value}: ${(e as Error).name}: ${(e as Error).message}`);
        assert.ok((e as Error).message.startsWith(`${file}: `), (e as Error).message);
      }
    }
  }
  assert.ok(failures > 100, `${failures} damaged files refused`);
  const grew = process.memoryUsage().rss - r0;
  assert.ok(grew < 200e6, `rss grew ${grew} bytes`);
});
