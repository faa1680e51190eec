// `vlp serve`: every route over real (small, untrained) VLMo checkpoints and a real index on
// loopback; bad inputs answered with the right 4xx and the server healthy after each; request
// work frees its tensors; the dashboard only reaches runs found under its folder.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, symlinkSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:http";
import { spawnSync } from "node:child_process";
import sharp from "sharp";
import type { FastifyInstance } from "fastify";
import { VLMoModel, vlmoConfig } from "../src/models/vlmo/index.ts";
import { saveStateDict } from "../src/engine/checkpoint.ts";
import { manualSeed, liveTensors, tidy } from "../src/engine/index.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { loadServedModel, Inference, prepareImage, type ServedModel } from "../src/serve/model.ts";
import { buildIndex, resolveCollection } from "../src/serve/build.ts";
import { VectorIndex } from "../src/serve/vindex.ts";
import { buildServer } from "../src/serve/server.ts";
import { PixelBudget } from "../src/serve/guard.ts";
import { RequestError } from "../src/serve/model.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-serve-"));
const T = { timeout: 120_000 };
const OVERRIDES = { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1 };
const LABELS = ["yes", "no", "red", "blue", "2", "3", "ball"];

function writeCheckpoint(dir: string, vqaLabels: number): void {
  mkdirSync(dir, { recursive: true });
  const m = new VLMoModel(vlmoConfig("tiny", { ...OVERRIDES, heads: { vqaLabels } }));
  saveStateDict(join(dir, "model.safetensors"), m);
  m.dispose();
  if (vqaLabels > 0) writeFileSync(join(dir, "finetune.json"), JSON.stringify({ kind: "finetune", task: "vqa", method: "vlmo", model: { preset: "tiny", overrides: OVERRIDES }, world: "w", labels: LABELS.slice(0, vqaLabels) }));
  else writeFileSync(join(dir, "recipe.json"), JSON.stringify({ method: "vlmo", model: { preset: "tiny", overrides: OVERRIDES }, data: { world: "w" } }));
}

let world = "";
let pre: ServedModel, vqa: ServedModel;
let index: VectorIndex;
let app: FastifyInstance, bare: FastifyInstance;
let base = "", bareBase = "";
let png = "", pngBytes: Buffer;
const files: string[] = [];

before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 20, seed: 2, out: world, size: 64, featDim: 32, boxes: 8 });
  manualSeed(7);
  writeCheckpoint(join(root, "pre"), 0);
  writeCheckpoint(join(root, "vqa"), LABELS.length);
  pre = await loadServedModel(join(root, "pre"));
  vqa = await loadServedModel(join(root, "vqa"));
  const col = resolveCollection(world);
  await buildIndex(pre, col, { out: join(root, "index") });
  index = VectorIndex.open(join(root, "index"));
  files.push(...col.images);
  pngBytes = readFileSync(join(col.root, files[0]));
  png = pngBytes.toString("base64");
  // a runs folder with one run in the trainer's metrics.jsonl format (two stages, a val line)
  const run = join(root, "runs", "demo", "msp-x");
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, "recipe.json"), JSON.stringify({ method: "msp" }));
  const lines = [];
  for (let s = 1; s <= 6; s++) lines.push({ step: s, stage: s <= 3 ? "token" : "sentence", stage_step: s <= 3 ? s : s - 3, source: s <= 3 ? "token" : "sentence", lr: 1e-4, loss: 5 - s * 0.3, grad_norm: 1, time: 0, mlm_acc: s / 10 });
  lines.push({ step: 6, stage: "sentence", stage_step: 3, source: "val", time: 0, val_loss: 3.1 });
  writeFileSync(join(run, "metrics.jsonl"), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  writeFileSync(join(root, "secret.txt"), "must not be served");

  app = await buildServer({ models: [pre, vqa], index, runsRoot: join(root, "runs"), imagesRoot: root });
  base = await app.listen({ host: "127.0.0.1", port: 0 });
  bare = await buildServer({ models: [pre] });
  bareBase = await bare.listen({ host: "127.0.0.1", port: 0 });
});

after(async () => {
  await app?.close();
  await bare?.close();
  index?.dispose();
});

async function post(path: string, body: unknown, at = base) {
  const r = await fetch(at + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as any };
}

/** A raw HTTP request (no URL normalisation by the client); resolves with the response even if the server stops reading the body. */
function raw(path: string, o: { method?: string; headers?: Record<string, string | number>; body?: Buffer } = {}): Promise<{ status: number; json: any }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ host: url.hostname, port: url.port, path, method: o.method ?? "GET", headers: o.headers }, (res) => {
      answered = true;
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, json: text.startsWith("{") ? JSON.parse(text) : text }));
    });
    req.on("error", (e) => { if (!answered) reject(e); });
    if (o.body) req.end(o.body);
    else req.end();
  });
}

async function healthy(): Promise<void> {
  const r = await fetch(base + "/health");
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as any).status, "ok");
}

test("GET /health lists the checkpoints, heads and the index", T, async () => {
  const r = await fetch(base + "/health");
  const h = (await r.json()) as any;
  assert.deepEqual(h.checkpoints.map((c: any) => [c.name, c.itc, c.itm, c.vqa, c.vqaAnswers]), [["pre", true, true, false, 0], ["vqa", true, true, true, LABELS.length]]);
  assert.equal(h.index.images, files.length);
  assert.equal(h.index.texts, files.length * 5);
  assert.equal(h.index.dim, 32);
});

test("POST /embed: unit vectors equal to the encoders' own, for texts and images", T, async () => {
  const r = await post("/embed", { texts: ["a red ball", "two blue stars"], images: [png, `data:image/png;base64,${png}`] });
  assert.equal(r.status, 200);
  assert.equal(r.json.dim, 32);
  for (const v of [...r.json.texts, ...r.json.images]) assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-4);
  const inf = new Inference(pre);
  const direct = inf.embedTexts(["a red ball"])[0];
  r.json.texts[0].forEach((x: number, i: number) => assert.ok(Math.abs(x - direct[i]) < 1e-5));
  const img = inf.embedImages([await prepareImage(pngBytes, inf.imageSize, "t")])[0];
  r.json.images[1].forEach((x: number, i: number) => assert.ok(Math.abs(x - img[i]) < 1e-5));
  assert.notDeepEqual(r.json.texts[0], r.json.texts[1]);
});

test("POST /search: text -> images and image -> captions, ranked by the dot product of the embeddings", T, async () => {
  const q = "There is only one red ball in the image.";
  const r = await post("/search", { text: q, k: 5 });
  assert.equal(r.status, 200);
  assert.equal(r.json.target, "images");
  assert.equal(r.json.results.length, 5);
  const qv = new Inference(pre).embedTexts([q])[0];
  const part = index.part("image")!;
  const m = tidy(() => part.matrix()!.toFloat32Array());
  const score = new Map(part.ids.map((id, i) => [id, qv.reduce((acc, x, j) => acc + x * m[i * 32 + j], 0)]));
  // each returned score is the dot product of the embeddings, the list is sorted, and no image left out scores higher
  const got = r.json.results as { id: string; score: number; url: string }[];
  got.forEach((x, i) => {
    assert.ok(Math.abs(x.score - score.get(x.id)!) < 1e-5, `${x.id}: ${x.score} vs ${score.get(x.id)}`);
    if (i > 0) assert.ok(x.score <= got[i - 1].score);
  });
  const outside = Math.max(...[...score].filter(([id]) => !got.some((x) => x.id === id)).map(([, v]) => v));
  assert.ok(got[got.length - 1].score >= outside - 1e-6);
  assert.equal(got[0].url, `/images/${got[0].id}`);
  const img = await fetch(base + r.json.results[0].url);
  assert.equal(img.status, 200);
  assert.equal(img.headers.get("content-type"), "image/png");
  // an image finds captions; the default k is 10
  const c = await post("/search", { image: png });
  assert.equal(c.status, 200);
  assert.equal(c.json.target, "captions");
  assert.equal(c.json.results.length, 10);
  for (const x of c.json.results) {
    assert.equal(typeof x.text, "string");
    assert.ok(files.includes(x.image));
  }
  const same = await post("/search", { image: png, target: "images", k: 1 });
  assert.equal(same.json.results[0].id, files[0], "an indexed image finds itself first");
  assert.ok(Math.abs(same.json.results[0].score - 1) < 1e-4);
});

test("POST /vqa uses the VQA checkpoint's labels; POST /itm and /attention use the fusion encoder", T, async () => {
  const v = await post("/vqa", { image: png, question: "What color is the ball?", k: 3 });
  assert.equal(v.status, 200);
  assert.equal(v.json.checkpoint, "vqa");
  assert.equal(v.json.answers.length, 3);
  for (const a of v.json.answers) assert.ok(LABELS.includes(a.answer) && a.score > 0 && a.score < 1);
  assert.ok(v.json.answers[0].score >= v.json.answers[1].score);
  const i = await post("/itm", { image: png, texts: ["a red ball", "a blue star"] });
  assert.equal(i.status, 200);
  assert.equal(i.json.scores.length, 2);
  for (const s of i.json.scores) assert.ok(s.match > 0 && s.match < 1);
  const a = await post("/attention", { image: png, text: "a red ball", layers: 2 });
  assert.equal(a.status, 200);
  assert.deepEqual(a.json.tokens, ["[CLS]", "a", "red", "ball", "[SEP]"]);
  assert.equal(a.json.grid, 4);
  assert.equal(a.json.layers, 2);
  for (const m of a.json.maps) {
    assert.equal(m.length, 16);
    assert.ok(Math.abs(m.reduce((x: number, y: number) => x + y, 0) - 1) < 1e-4);
  }
  for (const s of a.json.imageShare) assert.ok(s > 0 && s < 1);
});

test("request work frees its native tensors", T, async () => {
  // the first round fills the model's kept caches (relative-position indices per text length)
  let before = 0;
  for (let n = 0; n < 4; n++) {
    if (n === 1) before = liveTensors();
    await post("/search", { text: "a small red ball", k: 3 });
    await post("/attention", { image: png, text: "a red ball" });
    await post("/vqa", { image: png, question: "how many?" });
    await post("/search", { text: "bad", k: 0 });
  }
  // (a GC finalizer may free an unrelated handle of an earlier test meanwhile: the count must not grow)
  assert.ok(liveTensors() <= before, `live tensors ${before} -> ${liveTensors()}`);
});

test("bad inputs get the right 4xx with a message, and the server stays healthy", T, async () => {
  const cases: [string, () => Promise<{ status: number; json: any }>, number, RegExp][] = [
    ["wrong content type", () => raw("/search", { method: "POST", headers: { "content-type": "text/plain" }, body: Buffer.from("a red ball") }), 415, /unsupported content type "text\/plain"/],
    ["form content type", () => raw("/embed", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: Buffer.from("texts=a") }), 415, /send application\/json/],
    ["50 MB body", () => raw("/search", { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.concat([Buffer.from('{"text":"'), Buffer.alloc(50 * 1024 * 1024, 97), Buffer.from('"}')]) }), 413, /larger than the 16 MiB/],
    ["truncated PNG", () => post("/itm", { image: pngBytes.subarray(0, Math.floor(pngBytes.length / 2)).toString("base64"), text: "x" }), 400, /body\.image: cannot decode image/],
    ["not an image", () => post("/embed", { images: [Buffer.from("GIF89a-not-really").toString("base64")] }), 415, /body\.images\[0\]: not a PNG, JPEG or WebP/],
    ["not base64", () => post("/vqa", { image: "%%%%", question: "q" }), 400, /body\.image: not base64/],
    ["path with ..", () => raw("/images/../../secret.txt"), 400, /"\.\." segment/],
    ["encoded ..", () => raw("/images/%2e%2e/%2e%2e/secret.txt"), 400, /"\.\." segment/],
    ["unknown checkpoint", () => post("/embed", { texts: ["x"], checkpoint: "nope" }), 404, /unknown checkpoint "nope" \(served: pre, vqa\)/],
    ["checkpoint as a path", () => post("/vqa", { image: png, question: "q", checkpoint: "../pre" }), 400, /body\.checkpoint must match pattern/],
    ["unknown field", () => post("/search", { text: "x", kk: 3 }), 400, /body must NOT have additional properties \("kk"\)/],
    ["wrong type", () => post("/search", { text: "x", k: "5" }), 400, /body\.k must be integer/],
    ["k too large", () => post("/search", { text: "x", k: 1000 }), 400, /body\.k must be <= 100/],
    ["both text and image", () => post("/search", { text: "x", image: png }), 400, /exactly one of text and image/],
    ["too many texts", () => post("/embed", { texts: Array(65).fill("x") }), 400, /body\.texts must NOT have more than 64 items/],
    ["text too long", () => post("/itm", { image: png, text: "x".repeat(1001) }), 400, /body\.text must NOT have more than 1000 characters/],
    ["malformed JSON", () => raw("/search", { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.from('{"text":') }), 400, /body is not valid JSON/],
    ["missing field", () => post("/vqa", { image: png }), 400, /body must have required property 'question'/],
    ["unknown route", () => raw("/nope"), 404, /no route GET \/nope/],
    ["unknown run", () => raw("/api/runs/metrics?run=..%2F..%2Fsecret"), 404, /unknown run/],
  ];
  for (const [name, call, status, message] of cases) {
    const r = await call();
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.json).slice(0, 300)}`);
    assert.match(r.json.error, message, name);
    await healthy();
  }
  // a decompression bomb is refused from its header, before decoding
  const huge = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: "#808080" } }).png({ compressionLevel: 9 }).toBuffer();
  const r = await post("/embed", { images: [huge.toString("base64")] });
  assert.equal(r.status, 413);
  assert.match(r.json.error, /5000x5000 pixels/);
  await healthy();
});

test("without a VQA head or an index: 409 saying how to get one", T, async () => {
  const v = await post("/vqa", { image: png, question: "q" }, bareBase);
  assert.equal(v.status, 409);
  assert.match(v.json.error, /no served checkpoint has a VQA head; fine-tune one with `vlp finetune vqa --from .*pre/);
  const s = await post("/search", { text: "q" }, bareBase);
  assert.equal(s.status, 409);
  assert.match(s.json.error, /no index is loaded/);
  const n = await post("/vqa", { image: png, question: "q", checkpoint: "pre" });
  assert.equal(n.status, 409);
  assert.match(n.json.error, /checkpoint pre has no VQA head/);
});

test("dashboard API: runs found by scanning, curves with stages; the web app and OpenAPI document are served", T, async () => {
  const runs = (await (await fetch(base + "/api/runs")).json()) as any;
  assert.deepEqual(runs.runs.map((r: any) => [r.name, r.method, r.steps, r.stages]), [["demo/msp-x", "msp", 6, ["token", "sentence"]]]);
  const m = (await (await fetch(base + "/api/runs/metrics?run=demo%2Fmsp-x")).json()) as any;
  assert.deepEqual(m.stages, [{ name: "token", start: 1, end: 3 }, { name: "sentence", start: 4, end: 6 }]);
  assert.deepEqual(m.sources, ["token", "sentence"]);
  assert.ok(m.metrics.includes("loss") && m.metrics.includes("mlm_acc") && m.metrics.includes("val_loss"));
  assert.equal(m.rows.length, 7);
  const page = await fetch(base + "/");
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>vlpkit<\/title>/);
  for (const f of readdirSync(new URL("../src/serve/web/", import.meta.url))) assert.equal((await fetch(`${base}/${f}`)).status, 200, f);
  const doc = (await (await fetch(base + "/openapi.json")).json()) as any;
  assert.equal(doc.openapi, "3.0.3");
  for (const p of ["/embed", "/search", "/vqa", "/itm", "/attention"]) assert.ok(doc.paths[p].post.requestBody, p);
  assert.ok(doc.paths["/health"].get);
});

test("vlp serve refuses an unknown checkpoint or a non-VQA --vqa at startup, naming it", T, () => {
  const cli = new URL("../src/cli/vlp.ts", import.meta.url).pathname;
  const run = (args: string[]) => spawnSync(process.execPath, ["--import", "tsx", cli, "serve", ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, VLP_NUM_THREADS: "1" } });
  const a = run(["--checkpoint", join(root, "missing"), "--port", "0"]);
  assert.equal(a.status, 1);
  assert.match(a.stderr, /missing: checkpoint directory not found/);
  const b = run(["--checkpoint", join(root, "pre"), "--vqa", join(root, "pre"), "--port", "0"]);
  assert.equal(b.status, 1);
  assert.match(b.stderr, /--vqa .*pre: this checkpoint has no VQA head/);
});

/** A raw GET to another server of this file, with chosen headers. */
async function getAt(at: string, path: string, headers: Record<string, string> = {}) {
  const r = await fetch(at + path, { headers });
  const text = await r.text();
  return { status: r.status, headers: r.headers, json: text.startsWith("{") ? JSON.parse(text) : text };
}

test("/images/ serves image files inside the image folder only, after resolving symlinks; its root must lie inside --images", T, async () => {
  const col = resolveCollection(world);
  const ok = await getAt(base, `/images/${files[0]}`);
  assert.equal(ok.status, 200);
  symlinkSync("/etc", join(col.root, "etc"));
  symlinkSync(join(root, "secret.txt"), join(col.root, "leak.png"));
  symlinkSync("/etc/passwd", join(col.root, "passwd.png"));
  for (const path of ["/images/etc/passwd", "/images/leak.png", "/images/passwd.png", "/images/etc/hostname"]) {
    const r = await getAt(base, path);
    assert.equal(r.status, 404, `${path}: ${String(r.json).slice(0, 80)}`);
    assert.match(r.json.error, /no image .* in the served image folder/);
  }
  // the operator names the folder images may come from: an index whose images lie elsewhere is refused
  await assert.rejects(buildServer({ models: [pre], index, imagesRoot: join(root, "runs") }), /the index's images are under .*, outside the folder allowed by --images/);
  const none = await buildServer({ models: [pre], index });
  const at = await none.listen({ host: "127.0.0.1", port: 0 });
  try {
    assert.equal((await getAt(at, `/images/${files[0]}`)).status, 404, "no --images: no image file is served");
  } finally {
    await none.close();
  }
});

/** A PNG of width x height that is only a header (and an empty image stream): tiny bytes, a huge claimed size. */
function pngHeader(width: number, height: number): Buffer {
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const td = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(td.length + 8);
    out.writeUInt32BE(data.length, 0);
    td.copy(out, 4);
    out.writeUInt32BE(crc(td), td.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(64))), chunk("IEND", Buffer.alloc(0))]);
}

test("decoded pixels are bounded: a 100000x100000 header is 413, so is a request over the per-request cap; over the in-flight cap is 503 + Retry-After", T, async () => {
  const huge = await post("/embed", { images: [pngHeader(100000, 100000).toString("base64")] });
  assert.equal(huge.status, 413, JSON.stringify(huge.json));
  assert.match(huge.json.error, /body\.images\[0\]: 100000x100000 pixels, more than the 16777216 accepted/);
  // 16 images of 4096x4096 in one /embed: refused from their headers (today's cap: 2 x 4096 x 4096 per request)
  const big = (await sharp({ create: { width: 4096, height: 4096, channels: 3, background: "#808080" } }).png({ compressionLevel: 9 }).toBuffer()).toString("base64");
  const rss = process.memoryUsage().rss;
  const r = await post("/embed", { images: Array(16).fill(big) });
  assert.equal(r.status, 413, JSON.stringify(r.json).slice(0, 200));
  assert.match(r.json.error, /268435456 pixels in one request, more than the 33554432 accepted/);
  assert.ok(process.memoryUsage().rss - rss < 200e6, `rss grew by ${(process.memoryUsage().rss - rss) / 1e6} MB`);
  // across requests: a reservation that does not fit next to those in flight is a 503 with Retry-After
  const b = new PixelBudget(100, 150);
  let release!: () => void;
  const held = b.with(100, "a", () => new Promise<void>((res) => (release = res)));
  await assert.rejects(b.with(60, "b", async () => {}), (e: RequestError) => e.status === 503 && e.headers["retry-after"] === "1" && /busy/.test(e.message));
  await assert.rejects(b.with(101, "c", async () => {}), (e: RequestError) => e.status === 413);
  release();
  await held;
  assert.equal(b.inFlight, 0);
  await b.with(100, "d", async () => {});
  // and through a server whose in-flight cap is one small image: concurrent requests get 503 with Retry-After
  const tight = await buildServer({ models: [pre], maxRequestPixels: 64 * 64, maxInflightPixels: 64 * 64 });
  const at = await tight.listen({ host: "127.0.0.1", port: 0 });
  try {
    const answers = await Promise.all(Array.from({ length: 8 }, () => post("/embed", { images: [png] }, at)));
    const busy = answers.filter((a) => a.status === 503);
    assert.ok(answers.some((a) => a.status === 200), "one at a time gets through");
    assert.ok(busy.every((a) => /busy: .* try again shortly/.test(a.json.error)));
    const h = await fetch(at + "/embed", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ images: [png, png] }) });
    assert.equal(h.status, 413);
  } finally {
    await tight.close();
  }
  await healthy();
});

test("GET /api/index/images takes offset and limit from the query string", T, async () => {
  const r = await getAt(base, "/api/index/images?offset=2&limit=3");
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual(r.json.images.map((x: { id: string }) => x.id), index.part("image")!.ids.slice(2, 5));
  assert.equal(r.json.total, index.part("image")!.count);
  assert.equal((await getAt(base, "/api/index/images?limit=500")).status, 400);
  assert.equal((await getAt(base, "/api/index/images?offset=-1")).status, 400);
  assert.equal((await getAt(base, "/api/index/images?offset=abc")).status, 400);
});

test("--token: every route but the web app's files needs the bearer token (or the web app's cookie); a Host allow-list answers others 421", T, async () => {
  const token = "s3cret-token-0123456789";
  const locked = await buildServer({ models: [pre], index, imagesRoot: root, token, allowedHosts: ["vlp.example", "127.0.0.1"] });
  const at = await locked.listen({ host: "127.0.0.1", port: 0 });
  try {
    const no = await getAt(at, "/health");
    assert.equal(no.status, 401);
    assert.equal(no.headers.get("www-authenticate"), "Bearer");
    assert.equal((await getAt(at, "/health", { authorization: "Bearer wrong" })).status, 401);
    assert.equal((await getAt(at, "/health", { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await getAt(at, `/images/${files[0]}`, { cookie: `a=b; vlp_token=${token}` })).status, 200);
    assert.equal((await getAt(at, `/images/${files[0]}`)).status, 401);
    assert.equal((await getAt(at, "/api/runs")).status, 401);
    assert.equal((await getAt(at, "/")).status, 200, "the web app itself holds no data");
    assert.equal((await getAt(at, "/app.js")).status, 200);
    // DNS rebinding: a page on another name that resolves here is answered 421
    const port = new URL(at).port;
    const other = await new Promise<number>((res) => request({ host: "127.0.0.1", port, path: "/health", headers: { host: `evil.example:${port}`, authorization: `Bearer ${token}` } }, (r) => res(r.statusCode!)).end());
    assert.equal(other, 421);
    const named = await new Promise<number>((res) => request({ host: "127.0.0.1", port, path: "/health", headers: { host: `vlp.example:${port}`, authorization: `Bearer ${token}` } }, (r) => res(r.statusCode!)).end());
    assert.equal(named, 200);
  } finally {
    await locked.close();
  }
});

test("--precision bf16: every pass runs under autocast inside the request only; answers agree with float32", T, async () => {
  const { autocastState } = await import("../src/engine/precision.ts");
  const f32 = new Inference(vqa);
  const b16 = new Inference(vqa, "bfloat16");
  const img = await prepareImage(pngBytes, f32.imageSize, "t");
  const texts = ["a red ball", "two blue stars"];
  const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);
  const [e32, e16] = [f32.embedTexts(texts), b16.embedTexts(texts)];
  const [i32, i16] = [f32.embedImages([img]), b16.embedImages([img])];
  for (const [a, b] of [...e32.map((e, i) => [e, e16[i]]), [i32[0], i16[0]]]) {
    assert.ok(cos(a, b) > 0.99, `bf16 embedding drifts from float32: cosine ${cos(a, b)}`);
    assert.ok(a.some((x, i) => x !== b[i]), "the bf16 pass computed in float32 (no autocast)");
  }
  const [m32, m16] = [f32.itm(img, texts), b16.itm(img, texts)];
  m32.forEach((m, i) => assert.ok(Math.abs(m.match - m16[i].match) < 0.02, `ITM ${m.match} vs ${m16[i].match}`));
  assert.deepEqual(b16.vqa(img, "What color is the ball?", 3).map((a) => a.answer).length, 3);
  assert.equal(autocastState("cpu").enabled, false, "the autocast scope leaked out of a request");
  const srv = await buildServer({ models: [pre], precision: "bfloat16" });
  try {
    const r = await srv.inject({ method: "POST", url: "/embed", payload: { texts } });
    assert.equal(r.statusCode, 200);
    const got = (JSON.parse(r.body).texts as number[][]).map((v) => Float32Array.from(v));
    const want16 = new Inference(pre, "bfloat16").embedTexts(texts), want32 = new Inference(pre).embedTexts(texts);
    got.forEach((v, i) => {
      assert.ok(v.every((x, j) => Math.abs(x - want16[i][j]) < 1e-6), "the server's /embed is not the bf16 pass");
      assert.ok(v.some((x, j) => x !== want32[i][j]), "the server computed in float32");
    });
  } finally {
    await srv.close();
  }
  assert.throws(() => spawnSyncServe(["--precision", "fp8"]), /--precision: expected fp32, bf16, fp16, got "fp8"/);
});

function spawnSyncServe(args: string[]): void {
  const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli/vlp.ts", "serve", "--checkpoint", join(root, "pre"), ...args], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
}
