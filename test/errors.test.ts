// Errors that name the place (issue 16, item 5): a bad value deep in a data file, a damaged run
// file or a misuse is reported with the file, line/record and field it came from, not as a bare
// message from the engine or a library far from the cause.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeObj36Row, type Obj36Record } from "../src/data/formats/obj36.ts";
import { createBuilder } from "../src/pretrain/builder.ts";
import { answerCount } from "../src/pretrain/common.ts";
import { readAnswers } from "../src/tasks/data.ts";

const root = mkdtempSync(join(tmpdir(), "vlp-errors-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));

function record(id: string, objectIds: number[]): Obj36Record {
  const n = objectIds.length;
  return {
    img_id: id, img_h: 100, img_w: 100, num_boxes: n,
    objects_id: Int32Array.from(objectIds), objects_conf: new Float32Array(n).fill(0.5),
    attrs_id: new Int32Array(n).fill(3), attrs_conf: new Float32Array(n).fill(0.5),
    boxes: Float32Array.from({ length: 4 * n }, (_, i) => (i % 4 < 2 ? 0 : 50)), features: new Float32Array(n * 4).fill(1),
  };
}

test("a detector label outside the model's vocabulary names the region file, line and field", async () => {
  const tsv = join(root, "obj36.tsv");
  writeFileSync(tsv, [record("img0", [1, 2]), record("img1", [5, 1_000_000])].map(encodeObj36Row).join("\n") + "\n");
  const examples = join(root, "mscoco_train.json");
  writeFileSync(examples, JSON.stringify([{ img_id: "img0", sentf: { mscoco: ["a dog"] } }, { img_id: "img1", sentf: { mscoco: ["a cat"] } }]));
  const b = await createBuilder({ examples: [{ path: examples }], regions: tsv, maxTextLen: 8, maxBoxes: 4, seed: 1, labels: { objects: 1600, attrs: 400 } });
  assert.equal((await b.build([0], 0)).arrays.obj_labels.shape[1], 4, "labels in range pass");
  assert.throws(() => b.build([0, 1], 0), /obj36\.tsv: line 2 \(img_id img1\): field "objects_id"\[1\] = 1000000 is outside the model's 1600 object labels \(0\.\.1599, or -1 for none\)/);
});

test("a truncated or mismatched answer vocabulary names its path", () => {
  const cut = join(root, "trainval_ans2label.json");
  writeFileSync(cut, '{"yes": 0, "no": 1, "two"');
  assert.throws(() => answerCount(cut), /trainval_ans2label\.json: invalid JSON/);
  assert.throws(() => readAnswers(cut), /trainval_ans2label\.json: invalid JSON/);
  // a vocabulary cut to its first entries while the labels still count from the full one
  writeFileSync(cut, JSON.stringify({ yes: 0, no: 1, "3120 answers later": 3120 }));
  assert.throws(() => answerCount(cut), /trainval_ans2label\.json: answer "3120 answers later" has label 3120, not an integer in \[0, 3\) \(3 answers: a truncated or mismatched vocabulary\?\)/);
  writeFileSync(cut, JSON.stringify({ yes: 0, no: 0, two: 2 }));
  assert.throws(() => answerCount(cut), /answers "yes" and "no" both have label 0/);
  writeFileSync(cut, JSON.stringify({ yes: 0, no: 1 }));
  assert.equal(answerCount(cut), 2);
});

test("a corrupt recipe.json on --resume names its path", async () => {
  const { main } = await import("../src/cli/pretrain.ts");
  const run = join(root, "run");
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, "recipe.json"), '{"method": "semvlp", "model": {"pres');
  await assert.rejects(main(["--resume", run]), new RegExp(`${run}/recipe\\.json: invalid JSON`));
});

test("VLMo's image-text stage with batch size 1 explains that its negatives need a batch of 2", async () => {
  const { validateRecipe } = await import("../src/methods/index.ts");
  const { buildVLMo } = await import("../src/pretrain/vlmo.ts");
  const { sampleHardNegatives } = await import("../src/objectives/losses.ts");
  const { tensor, tidy } = await import("../src/engine/index.ts");
  const recipe = (train: Record<string, unknown>, vlmo: Record<string, unknown> = {}) =>
    validateRecipe({ method: "vlmo", model: { preset: "tiny" }, data: { world: join(root, "no-world") }, train, vlmo: { order: ["image-text"], ...vlmo } });
  assert.throws(() => buildVLMo(recipe({ batchSize: 1 })), /recipe\.train\.batchSize: the image-text stage needs a batch of at least 2, got 1: image-text matching pairs each image with another text of the batch \(a hard negative drawn/);
  assert.throws(() => buildVLMo(recipe({ batchSize: 8 }, { stages: { "image-text": { batchSize: 1 } } })), /recipe\.vlmo\.stages\.image-text\.batchSize: the image-text stage needs a batch of at least 2/);
  // a batch that shrinks to one row on the way (a last partial batch) gets the same explanation
  tidy(() => assert.throws(() => sampleHardNegatives(tensor([[0.5]]), 0), /hard negatives need a batch of at least 2 \(each row's negative is another item of the batch\); this batch has 1/));
});

test("`vlp data synth --help` prints its options (it was 'Unknown option --help')", async () => {
  const { spawnSync } = await import("node:child_process");
  const repo = join(import.meta.dirname, "..");
  const vlp = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", join(repo, "src/cli/vlp.ts"), ...args], { cwd: repo, encoding: "utf8" });
  for (const args of [["data", "synth", "--help"], ["data", "synth", "-h"], ["data", "emoji", "--help"]]) {
    const r = vlp(...args);
    assert.equal(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage: vlp data ${args[1]} --out DIR`), args.join(" "));
  }
  assert.match(vlp("data", "synth", "--help").stdout, /--code-dim K .*\n\s+\(the tiny recipes expect --code-dim 32\)/);
  const none = vlp("data", "synth");
  assert.equal(none.status, 2);
  assert.match(none.stderr, /--out DIR is required\nusage: vlp data synth/);
});

test("a full disk (ENOSPC) names the file being written", { skip: process.platform !== "linux" && "needs /dev/full" }, async () => {
  const { Obj36Writer } = await import("../src/data/formats/obj36.ts");
  const { writeJson } = await import("../src/data/formats/util.ts");
  const { writingTo } = await import("../src/engine/serialize/atomic.ts");
  const { appendFileSync } = await import("node:fs");
  // /dev/full accepts opens and fails every write with ENOSPC, like a full disk
  const full = /^(Error: )?\/dev\/full: cannot write: no space left on the device \(ENOSPC\)$/;
  const w = new Obj36Writer("/dev/full");
  assert.throws(() => w.write(record("img0", [1])), (e: Error & { code?: string }) => full.test(e.message) && e.code === "ENOSPC");
  await w.close();
  assert.throws(() => writeJson("/dev/full", { big: "x".repeat(100_000) }), full);
  // the trainer's metrics.jsonl and changes.jsonl appends go through writingTo
  assert.throws(() => writingTo("/dev/full", () => appendFileSync("/dev/full", "{}\n")), full);
});
