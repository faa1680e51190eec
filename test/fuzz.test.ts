// Fuzz suite (issue 16, item 7): generated malformed inputs for every format a user hands to
// vlpkit (obj36 TSV rows, JSON dataset records, images, Arrow tables, .pth and safetensors files,
// HTTP bodies). Each must be read correctly or refused with an error that names the file (and the
// record), or a clean 4xx from the server, never a bare library error, a crash or unbounded memory.
// Deterministic: every input comes from a seeded Rng, so a failure names a case that reproduces.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../src/engine/rng.ts";
import { encodeObj36Row, parseObj36Row, Obj36Error, type Obj36Record } from "../src/data/formats/obj36.ts";
import { readKarpathy } from "../src/data/formats/karpathy.ts";
import { readCocoCaptions } from "../src/data/formats/coco.ts";
import { readVqaAnnotations, readAns2Label } from "../src/data/formats/vqa.ts";
import { readPretrainExamples } from "../src/pretrain/examples.ts";
import { decodeImage, encodePng, MAX_IMAGE_PIXELS } from "../src/vision/image.ts";
import { ArrowFormatError, VqaArrowReader, VqaArrowWriter } from "../src/data/formats/arrow.ts";
import { loadPth } from "../src/engine/serialize/pth.ts";
import { readSafetensors, encodeSafetensors } from "../src/engine/serialize/safetensors.ts";
import { pngBomb, pthZip, zipBytes } from "./fixtures/hostile.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-fuzz-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));
const T = { timeout: 120_000 };
const MB = 1e6;

/** Runs `body`, then asserts the process grew by less than `limit` bytes of RSS. */
async function bounded(limit: number, body: () => void | Promise<void>): Promise<void> {
  const r0 = process.memoryUsage().rss;
  await body();
  const grew = process.memoryUsage().rss - r0;
  assert.ok(grew < limit, `rss grew ${(grew / MB).toFixed(0)} MB (limit ${limit / MB} MB)`);
}

/** `fn()` either returns or throws an Error whose message starts with `prefix` (names the file). */
function readsOrNames(prefix: string, fn: () => unknown, what: string, isOk?: (e: Error) => boolean): "ok" | "refused" {
  try {
    fn();
    return "ok";
  } catch (e) {
    const err = e as Error;
    assert.ok(err instanceof Error, `${what}: threw a non-Error ${String(e)}`);
    assert.ok(err.message.startsWith(prefix), `${what}: the error does not name the file: ${err.name}: ${err.message.slice(0, 300)}`);
    assert.ok(!/^(TypeError|RangeError|SyntaxError)$/.test(err.name), `${what}: bare ${err.name}: ${err.message.slice(0, 300)}`);
    if (isOk) assert.ok(isOk(err), `${what}: unexpected error ${err.message.slice(0, 300)}`);
    return "refused";
  }
}

/** One damage of a byte string: flipped bytes, a random int32 written somewhere, a cut, an insertion. */
function damage(rng: Rng, b: Uint8Array): Uint8Array {
  const out = Buffer.from(b);
  switch (rng.int(4)) {
    case 0:
      for (let j = 0, n = 1 + rng.int(6); j < n; j++) out[rng.int(out.length)] = rng.int(256);
      return out;
    case 1: {
      const v = rng.pick([-1, 0x7fffffff, 0x80000000 | 0, rng.int(1 << 30), -rng.int(1 << 30)]);
      out.writeInt32LE(v, rng.int(Math.max(1, out.length - 4)));
      return out;
    }
    case 2:
      return out.subarray(0, rng.int(out.length));
    default: {
      const at = rng.int(out.length);
      return Buffer.concat([out.subarray(0, at), Buffer.from(Array.from({ length: 1 + rng.int(16) }, () => rng.int(256))), out.subarray(at)]);
    }
  }
}

// ---------------------------------------------------------------- obj36 TSV rows

function obj36Record(rng: Rng, id: string): Obj36Record {
  const n = rng.intIn(0, 6);
  const d = 4;
  const f = (len: number, scale: number) => Float32Array.from({ length: len }, () => Math.fround(rng.range(0, scale)));
  return {
    img_id: id, img_h: rng.intIn(1, 500), img_w: rng.intIn(1, 500), num_boxes: n,
    objects_id: Int32Array.from({ length: n }, () => rng.int(1600)), objects_conf: f(n, 1),
    attrs_id: Int32Array.from({ length: n }, () => rng.int(400)), attrs_conf: f(n, 1),
    boxes: f(4 * n, 400), features: f(n * d, 5),
  };
}

test("fuzz: malformed obj36 TSV rows are refused naming file, line and img_id", T, () => {
  const rng = new Rng(16_001);
  let refused = 0;
  let nonFinite = 0;
  for (let k = 0; k < 1500; k++) {
    const rec = obj36Record(rng, `img_${k}`);
    let line = encodeObj36Row(rec);
    const fields = line.split("\t");
    switch (rng.int(6)) {
      case 0: line = Buffer.from(damage(rng, Buffer.from(line))).toString("latin1"); break;
      case 1: fields[rng.int(fields.length)] = rng.pick(["", "-1", "1e400", "NaN", "b'AAAA'", "====", "AAA", "x".repeat(rng.int(50))]); line = fields.join("\t"); break;
      case 2: fields.splice(rng.int(fields.length), 1); line = fields.join("\t"); break;
      case 3: line = fields.join(rng.pick([" ", ",", "\t\t"])); break;
      case 4: {
        // a NaN or infinity somewhere in a float field: must be refused (it surfaced as a non-finite loss)
        const r = { ...rec, features: rec.features.slice(), boxes: rec.boxes.slice() };
        const a = rng.chance(0.5) || r.boxes.length === 0 ? r.features : r.boxes;
        if (a.length > 0) {
          a[rng.int(a.length)] = rng.pick([NaN, Infinity, -Infinity]);
          nonFinite++;
          assert.throws(() => parseObj36Row(encodeObj36Row(r), "fuzz.tsv: line 1"), /^Obj36Error: fuzz\.tsv: line 1 \(img_id img_\d+\): field (features|boxes) box \d+ (dim|coordinate) \d+ is (NaN|-?Infinity)$/);
        }
        line = encodeObj36Row(r);
        break;
      }
      default: fields[7] = String(rng.intIn(0, 1e9)); line = fields.join("\t"); break;
    }
    const where = `fuzz.tsv: line ${k + 1}`;
    const got = readsOrNames(where, () => parseObj36Row(line, where), `row ${k}`, (e) => e instanceof Obj36Error && e.message.startsWith(`${where} (img_id `));
    if (got === "refused") refused++;
  }
  assert.ok(refused > 1000, `${refused} of 1500 damaged rows refused`);
  assert.ok(nonFinite > 100, `${nonFinite} rows with a NaN or infinity`);
});

// ---------------------------------------------------------------- JSON records

/** A value of the wrong kind for any field. */
function junk(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 8 : 10)) {
    case 0: return null;
    case 1: return rng.pick([-1, 0, 1.5, 1e300, -0, 2 ** 53 + 2]);
    case 2: return rng.pick(["", "..", "../../etc/passwd", "/abs.jpg", "a\u0000b", "x".repeat(rng.int(300))]);
    case 3: return rng.chance(0.5);
    case 4: return {};
    case 5: return [];
    case 6: return "__proto__";
    case 7: return rng.pick(["yes", "train", "val", "restval", "a.jpg"]);
    case 8: return Array.from({ length: rng.int(4) }, () => junk(rng, depth + 1));
    default: return Object.fromEntries(Array.from({ length: rng.int(4) }, (_, i) => [rng.pick(["id", "image_id", "answer", "sentid", `k${i}`]), junk(rng, depth + 1)]));
  }
}

/** A valid record with one or two fields replaced, removed, or the whole record replaced. */
function mutate(rng: Rng, rec: Record<string, unknown>): unknown {
  if (rng.chance(0.05)) return junk(rng);
  const out: Record<string, unknown> = structuredClone(rec);
  const keys = Object.keys(out);
  for (let j = 0, n = 1 + rng.int(2); j < n; j++) {
    const k = rng.pick(keys);
    if (rng.chance(0.2)) delete out[k];
    else out[k] = junk(rng);
  }
  return out;
}

const karpathyImage = (i: number) => ({
  filename: `COCO_val2014_${i}.jpg`, filepath: "val2014", imgid: i, split: "train", sentids: [i],
  sentences: [{ raw: "A dog.", tokens: ["a", "dog"], imgid: i, sentid: i }], cocoid: i,
});
const cocoImage = (i: number) => ({ id: i, file_name: `COCO_val2014_${i}.jpg`, height: 480, width: 640 });
const vqaAnnotation = (i: number) => ({
  question_id: i, image_id: i, question_type: "what", answer_type: "other", multiple_choice_answer: "dog",
  answers: Array.from({ length: 10 }, (_, j) => ({ answer: "dog", answer_confidence: "yes", answer_id: j + 1 })),
});
const pretrainRecord = (i: number) => ({ img_id: `img${i}`, sentf: { mscoco: ["a dog"], vqa: ["what is it?"] }, labelf: { vqa: [{ dog: 1 }] } });

test("fuzz: malformed JSON records are refused naming the file (and the record)", T, () => {
  const rng = new Rng(16_002);
  const readers: [string, (i: number) => Record<string, unknown>, (records: unknown[]) => unknown, (p: string) => unknown][] = [
    ["dataset_coco.json", karpathyImage, (r) => ({ dataset: "coco", images: r }), (p) => readKarpathy(p)],
    ["captions_val2014.json", cocoImage, (r) => ({ images: r, annotations: [] }), (p) => readCocoCaptions(p)],
    ["v2_mscoco_val2014_annotations.json", vqaAnnotation, (r) => ({ annotations: r }), (p) => readVqaAnnotations(p)],
    ["mscoco_train.json", pretrainRecord, (r) => r, (p) => readPretrainExamples(p)],
  ];
  let refused = 0;
  let cases = 0;
  for (const [name, make, wrap, read] of readers) {
    for (let k = 0; k < 150; k++) {
      const dir = join(root, "json", String(cases++));
      mkdirSync(dir, { recursive: true });
      const path = join(dir, name);
      const records: unknown[] = Array.from({ length: 3 }, (_, i) => make(i));
      records[rng.int(3)] = mutate(rng, records[0] as Record<string, unknown>);
      let text = JSON.stringify(rng.chance(0.1) ? junk(rng) : wrap(records));
      if (rng.chance(0.15)) text = text.slice(0, rng.int(text.length)); // cut short
      writeFileSync(path, text);
      if (readsOrNames(`${path}: `, () => read(path), `${name} case ${k}`) === "refused") refused++;
    }
  }
  assert.ok(refused > 300, `${refused} of ${cases} damaged files refused`);
  // answer vocabularies: any damage is refused naming the path
  for (let k = 0; k < 100; k++) {
    const path = join(root, "json", `ans2label_${k}.json`);
    const vocab: Record<string, unknown> = { yes: 0, no: 1, two: 2 };
    vocab[rng.pick(["yes", "no", "two", "three"])] = junk(rng);
    writeFileSync(path, JSON.stringify(vocab).slice(0, rng.chance(0.3) ? rng.intIn(1, 20) : undefined));
    readsOrNames(`${path}: `, () => readAns2Label(path), `ans2label case ${k}`);
  }
});

// ---------------------------------------------------------------- images

test("fuzz: damaged and hostile images are refused naming the image, within the pixel cap and bounded memory", T, async () => {
  const rng = new Rng(16_003);
  const w = 24;
  const h = 16;
  const png = await encodePng(Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37) & 255), w, h);
  await bounded(200 * MB, async () => {
    for (let k = 0; k < 150; k++) {
      const bytes = k % 5 === 0
        // a bomb: up to 40000 x 40000 declared in 10-40 KB
        ? pngBomb(rng.intIn(4097, 40000), rng.intIn(4097, 20000))
        : k % 5 === 1 ? Uint8Array.from({ length: rng.int(2000) }, () => rng.int(256)) : damage(rng, png);
      const label = `fuzz_${k}.png`;
      try {
        const img = await decodeImage(bytes, label);
        assert.ok(img.width * img.height <= MAX_IMAGE_PIXELS, `${label}: decoded ${img.width}x${img.height}`);
        assert.equal(img.data.length, img.width * img.height * 3);
      } catch (e) {
        assert.match((e as Error).message, new RegExp(`^${label}: cannot decode image \\(`), `${label}`);
        if (k % 5 === 0) assert.match((e as Error).message, /pixels, more than the 16777216 \(4096x4096\) decoded/);
      }
    }
  });
});

// ---------------------------------------------------------------- Arrow tables

test("fuzz: damaged Arrow tables (file and stream format) are ArrowFormatErrors naming the file, with bounded memory", T, async () => {
  const rng = new Rng(16_004);
  const good = join(root, "vqa.arrow");
  const w = new VqaArrowWriter(good, { batchRows: 4 });
  for (let i = 0; i < 12; i++) {
    w.write({
      image: new Uint8Array(10 + i).fill(i), questions: [`q ${i}?`], answers: [["yes", "no"]], answer_labels: [[0, 1]],
      answer_scores: [[1, 0.3]], image_id: i, question_id: [i], split: "train",
    });
  }
  await w.close();
  const bytes = (await import("node:fs")).readFileSync(good);
  // the IPC stream flavour: the same messages after the 8-byte magic, without the footer
  const stream = bytes.subarray(8, bytes.length - 10 - bytes.readInt32LE(bytes.length - 10));
  const file = join(root, "damaged.arrow");
  let refused = 0;
  await bounded(200 * MB, () => {
    for (let k = 0; k < 800; k++) {
      writeFileSync(file, damage(rng, k % 2 ? bytes : stream));
      const got = readsOrNames(`${file}: `, () => {
        const r = VqaArrowReader.open(file);
        try {
          for (let i = 0; i < Math.min(r.numRows, 64); i++) {
            r.row(i);
            r.image(i);
          }
        } finally {
          r.close();
        }
      }, `arrow case ${k}`, (e) => e instanceof ArrowFormatError);
      if (got === "refused") refused++;
    }
  });
  assert.ok(refused > 400, `${refused} of 800 damaged tables refused`);
});

// ---------------------------------------------------------------- .pth and safetensors

test("fuzz: .pth files with hostile sizes, strides, zip directories and bytes are refused naming the file, with bounded memory", T, async () => {
  const rng = new Rng(16_005);
  const path = join(root, "fuzz.pth");
  let refused = 0;
  const big = () => rng.pick([0, 1, 2, 3, 4096, 1 << 20, 1 << 28, 0x7fffffff]);
  await bounded(200 * MB, () => {
    for (let k = 0; k < 600; k++) {
      const numel = rng.pick([1, 4, 16, 1 << 28]);
      const ndim = rng.int(4);
      const spec = { name: "w", storageNumel: numel, offset: rng.chance(0.2) ? big() : 0, size: Array.from({ length: ndim }, big), stride: Array.from({ length: ndim }, () => rng.pick([0, 1, 2, big()])) };
      const storage = new Uint8Array(4 * rng.pick([1, 4, 16]));
      let bytes: Uint8Array = pthZip([spec], storage, rng.chance(0.3) ? { deflate: true, claimSize: rng.chance(0.5) ? big() : undefined } : {});
      if (k % 3 === 0) bytes = damage(rng, bytes);
      if (k % 17 === 0) bytes = zipBytes([{ name: "archive/data.pkl", data: damage(rng, Buffer.from([0x80, 0x02, 0x7d, 0x2e])) }]);
      writeFileSync(path, bytes);
      if (readsOrNames(`${path}: `, () => loadPth(path), `pth case ${k}`) === "refused") refused++;
    }
  });
  assert.ok(refused > 300, `${refused} of 600 hostile .pth files refused`);
});

test("fuzz: safetensors headers with hostile lengths, dtypes, shapes and offsets are refused naming the file, with bounded memory", T, async () => {
  const rng = new Rng(16_006);
  const path = join(root, "fuzz.safetensors");
  const good = encodeSafetensors({ a: { dtype: "float32", shape: [2, 3], data: new Uint8Array(24) }, b: { dtype: "int64", shape: [2], data: new Uint8Array(16) } });
  let refused = 0;
  await bounded(200 * MB, () => {
    for (let k = 0; k < 600; k++) {
      let bytes: Uint8Array;
      if (k % 2 === 0) {
        const header: Record<string, unknown> = {
          a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
          b: { dtype: "I64", shape: [2], data_offsets: [24, 40] },
        };
        const t = header[rng.pick(["a", "b"])] as Record<string, unknown>;
        const field = rng.pick(["dtype", "shape", "data_offsets"]);
        t[field] = rng.chance(0.5) ? junk(rng) : field === "shape" ? [rng.pick([1 << 30, 2 ** 40, -1]), 4] : field === "data_offsets" ? [0, rng.pick([2 ** 40, 1 << 30, -5])] : "F8_E4M3";
        const json = Buffer.from(JSON.stringify(header));
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(rng.chance(0.2) ? BigInt(rng.pick([2 ** 40, 99_999_999, json.length + 7])) : BigInt(json.length));
        bytes = Buffer.concat([prefix, json, Buffer.alloc(40)]);
      } else {
        bytes = damage(rng, good);
      }
      writeFileSync(path, bytes);
      if (readsOrNames(`${path}: `, () => readSafetensors(path), `safetensors case ${k}`) === "refused") refused++;
    }
  });
  assert.ok(refused > 300, `${refused} of 600 hostile safetensors files refused`);
});

// ---------------------------------------------------------------- HTTP bodies

let app: import("fastify").FastifyInstance | undefined;

before(async () => {
  const { VLMoModel, vlmoConfig } = await import("../src/models/vlmo/index.ts");
  const { saveStateDict } = await import("../src/engine/checkpoint.ts");
  const { manualSeed } = await import("../src/engine/index.ts");
  const { loadServedModel } = await import("../src/serve/model.ts");
  const { buildServer } = await import("../src/serve/server.ts");
  const overrides = { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 };
  const dir = join(root, "pre");
  mkdirSync(dir, { recursive: true });
  manualSeed(3);
  const m = new VLMoModel(vlmoConfig("tiny", overrides));
  saveStateDict(join(dir, "model.safetensors"), m);
  m.dispose();
  writeFileSync(join(dir, "recipe.json"), JSON.stringify({ method: "vlmo", model: { preset: "tiny", overrides }, data: { world: "w" } }));
  app = await buildServer({ models: [await loadServedModel(dir)] });
});

after(async () => {
  await app?.close();
});

test("fuzz: malformed HTTP bodies get a 4xx with a message, never a 5xx, and the server stays healthy", T, async () => {
  const rng = new Rng(16_007);
  const png = (await encodePng(new Uint8Array(32 * 32 * 3).fill(90), 32, 32)).toString("base64");
  const routes = ["/embed", "/search", "/vqa", "/itm", "/attention"];
  const valid: Record<string, Record<string, unknown>> = {
    "/embed": { texts: ["a dog"], images: [png] },
    "/search": { text: "a dog", k: 3 },
    "/vqa": { image: png, question: "what?" },
    "/itm": { image: png, text: "a dog" },
    "/attention": { image: png, text: "a dog" },
  };
  const statuses = new Map<number, number>();
  await bounded(300 * MB, async () => {
    for (let k = 0; k < 250; k++) {
      const url = rng.pick(routes);
      let payload: string;
      let contentType = "application/json";
      switch (rng.int(5)) {
        case 0: payload = JSON.stringify(mutate(rng, valid[url])); break;
        case 1: payload = JSON.stringify(valid[url]).slice(0, rng.int(40)); break; // cut short
        case 2: payload = JSON.stringify({ ...valid[url], image: Buffer.from(damage(rng, Buffer.from(png, "base64"))).toString("base64"), images: [pngBomb(rng.intIn(5000, 30000), 5000).toString("base64")] }); break;
        case 3: payload = Buffer.from(Array.from({ length: rng.int(200) }, () => rng.int(256))).toString("latin1"); contentType = rng.pick(["application/json", "text/plain", "application/octet-stream"]); break;
        default: payload = JSON.stringify(junk(rng)); break;
      }
      const res = await app!.inject({ method: "POST", url, payload, headers: { "content-type": contentType } });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      assert.ok(res.statusCode < 500, `case ${k} ${url}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      if (res.statusCode >= 400) {
        const body = JSON.parse(res.body) as { error?: string; message?: string };
        assert.ok(typeof (body.error ?? body.message) === "string" && (body.error ?? body.message)!.length > 0, `case ${k} ${url}: no message: ${res.body.slice(0, 200)}`);
      }
    }
  });
  assert.ok([...statuses.keys()].some((s) => s >= 400), `statuses ${JSON.stringify([...statuses])}`);
  const health = await app!.inject({ method: "GET", url: "/health" });
  assert.equal(health.statusCode, 200);
});
