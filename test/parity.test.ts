// Pre-training parity with the official code (microsoft/unilm vlmo, airsplay/lxmert):
//   - VLMo ITC = mean of the [CLS]-projection loss and the VL-FFN branch's loss (compute_itc),
//   - VLMo image-text MLM weighted 0.25 (compute_mlm),
//   - MLM random replacement within the model's vocabulary, special ids from the tokenizer,
//   - LXMERT applies MLM and visual losses to mismatched pairs (only QA is masked): MSP's default;
//     SemVLP's rule skips them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { Tensor, tensor, randn, randint, ones, zeros, cat, tidy, noGrad, manualSeed, Generator } from "../src/engine/index.ts";
import { generateWorld } from "../src/data/synth/world.ts";
import { type Recipe } from "../src/pretrain/recipe.ts";
import { validateRecipe } from "../src/methods/index.ts";
import { buildVLMo, vlmoItc, VLMO_MLM_WEIGHT } from "../src/pretrain/vlmo.ts";
import type { ImageTextBatch } from "../src/pretrain/imagetext.ts";
import type { RegionTextBatch } from "../src/pretrain/builder.ts";
import { readMetrics } from "../src/train/trainer.ts";
import { mspInputs, MSP_DEFAULTS } from "../src/pretrain/msp.ts";
import { semvlpInputs } from "../src/pretrain/semvlp.ts";
import { maskText, mlmVocab, topicTargets } from "../src/pretrain/common.ts";
import { computeObjectPrediction } from "../src/objectives/losses.ts";
import { IGNORE } from "../src/objectives/masking.ts";
import { Rng } from "../src/engine/rng.ts";
import { BertTokenizer } from "../src/text/tokenizer.ts";
import { TorchRef, PYTHON } from "./torchref.ts";

const hasTorch = existsSync(PYTHON) && spawnSync(PYTHON, ["-c", "import torch"]).status === 0;
const skip = hasTorch ? false : `PyTorch not found at ${PYTHON}`;

/** A vocabulary much smaller than bert-base-uncased's 30,522 (the specials 0/100-103 stay inside it). */
const SMALL_VOCAB = 200;
const root = mkdtempSync(join(tmpdir(), "vlp-parity-"));
let world = "";

before(async () => {
  world = join(root, "world");
  await generateWorld({ images: 6, seed: 2, out: world, size: 48, featDim: 8, boxes: 4 });
});
after(() => rmSync(root, { recursive: true, force: true }));

function vlmoRecipe(vlmo: Record<string, unknown> = {}): Recipe {
  return validateRecipe({
    method: "vlmo",
    model: { preset: "tiny", overrides: { hiddenSize: 32, numLayers: 2, numHeads: 2, vlffnStartLayer: 1, vocabSize: SMALL_VOCAB, dropPathRate: 0, textDropout: 0 } },
    data: { world },
    train: { seed: 1, batchSize: 4, lr: 1e-3, steps: 1, workers: 0 },
    vlmo: { order: ["text", "image-text"], ...vlmo },
  });
}

/** A hand-made image-text batch with ids inside the small vocabulary: [CLS] w.. [SEP] [PAD].. */
function pairBatch(b: number, t: number): ImageTextBatch<"pair"> {
  const tok = BertTokenizer.load();
  const ids: number[][] = [], mask: number[][] = [], words: number[][] = [];
  for (let i = 0; i < b; i++) {
    const len = t - (i % 3);
    const row: number[] = [tok.clsId], m: number[] = [1], w: number[] = [-1];
    for (let j = 1; j < len - 1; j++) { row.push(110 + ((i * 7 + j * 13) % (SMALL_VOCAB - 110))); m.push(1); w.push(j - 1); }
    row.push(tok.sepId); m.push(1); w.push(-1);
    while (row.length < t) { row.push(tok.padId); m.push(0); w.push(-1); }
    ids.push(row); mask.push(m); words.push(w);
  }
  return {
    input_ids: tensor(ids, { dtype: "int64" }),
    attention_mask: tensor(mask, { dtype: "int64" }),
    word_ids: tensor(words, { dtype: "int64" }),
    pixels: randn([b, 3, 32, 32]),
  };
}

test("MLM masking: random replacement ids stay inside the model's vocabulary; special ids come from the tokenizer", () => {
  tidy(() => {
    const tok = BertTokenizer.load();
    const v = mlmVocab(SMALL_VOCAB);
    assert.deepEqual([v.padId, v.clsId, v.sepId, v.maskId], [tok.padId, tok.clsId, tok.sepId, tok.maskId]);
    const batch = pairBatch(64, 40);
    const g = new Generator(3);
    const { inputIds, labels } = maskText(batch, g, v, { wholeWord: false });
    assert.ok(inputIds.max().item() < SMALL_VOCAB, `a replacement id ${inputIds.max().item()} >= vocab ${SMALL_VOCAB}`);
    // random replacements did happen (changed, not [MASK]), and no special token was ever a target
    const replaced = inputIds.ne(batch.input_ids).logicalAnd(inputIds.ne(v.maskId)).sum().item();
    assert.ok(replaced > 10, `random replacements: ${replaced}`);
    const ids = batch.input_ids;
    const special = ids.eq(tok.padId).logicalOr(ids.eq(tok.clsId)).logicalOr(ids.eq(tok.sepId));
    assert.equal(labels.ne(IGNORE).logicalAnd(special).sum().item(), 0);
    // the multi-hot topic targets have one column per vocabulary entry of the model
    assert.deepEqual(topicTargets(tensor([[5, 199, -1]], { dtype: "int64" }), SMALL_VOCAB).shape, [1, SMALL_VOCAB]);
    assert.throws(() => mlmVocab(50), /\[MASK\] id 103 is outside the model's vocabulary of 50/);
  });
});

test("VLMo ITC is the mean of the [CLS]-projection and VL-FFN-branch losses (official compute_itc), gradients included", { skip }, () => {
  manualSeed(4);
  const { model } = buildVLMo(vlmoRecipe());
  model.eval();
  const batch = pairBatch(6, 12);
  const txt = model.inferText(batch.input_ids, batch.attention_mask, { vlBranch: true });
  const img = model.inferImage(batch.pixels, { vlBranch: true });
  const ours = vlmoItc(model, img, txt);
  model.zeroGrad();
  ours.loss.backward();
  const ref = new TorchRef();
  try {
    ref.put("itc/ti", txt.itc!.detach()); ref.put("itc/ii", img.itc!.detach());
    ref.put("itc/tv", txt.itcVl!.detach()); ref.put("itc/iv", img.itcVl!.detach());
    ref.put("itc/s", model.logit_scale!.detach()); ref.put("itc/sv", model.logit_vl_scale!.detach());
    ref.add("itc", `
s = I['s'].clone().requires_grad_(True); sv = I['sv'].clone().requires_grad_(True)
def clip(img, txt, scale):
    li = scale.exp().mean() * img @ txt.t()
    gt = torch.arange(li.size(0))
    return (F.cross_entropy(li.float(), gt) + F.cross_entropy(li.t().float(), gt)) / 2, li
l_cls, li = clip(I['ii'], I['ti'], s)
l_vl, lv = clip(I['iv'], I['tv'], sv)
total = (l_cls + l_vl) * 0.5
total.backward()
O['loss'] = total.item(); O['cls'] = l_cls.item(); O['vl'] = l_vl.item()
O['gs'] = s.grad.item(); O['gsv'] = sv.grad.item()
gt = torch.arange(li.size(0))
O['i2t'] = (li.argmax(-1) == gt).float().mean().item(); O['vl_i2t'] = (lv.argmax(-1) == gt).float().mean().item()
O['vl_t2i'] = (lv.t().argmax(-1) == gt).float().mean().item()
`);
    ref.run();
    const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ours ${a}, torch ${b}`);
    close(ours.loss.item(), ref.scalar("itc", "loss") as number, "itc loss");
    close(ours.metrics.itc_loss.item(), ref.scalar("itc", "loss") as number, "metric itc_loss");
    close(ours.metrics.itc_cls_loss.item(), ref.scalar("itc", "cls") as number, "metric itc_cls_loss");
    close(ours.metrics.itc_vl_loss.item(), ref.scalar("itc", "vl") as number, "metric itc_vl_loss");
    // accuracy metrics: the main branch under the old names, the VL branch with the itc_vl_ prefix
    close(ours.metrics.itc_i2t_acc.item(), ref.scalar("itc", "i2t") as number, "itc_i2t_acc");
    close(ours.metrics.itc_vl_i2t_acc.item(), ref.scalar("itc", "vl_i2t") as number, "itc_vl_i2t_acc");
    close(ours.metrics.itc_vl_t2i_acc.item(), ref.scalar("itc", "vl_t2i") as number, "itc_vl_t2i_acc");
    close(ours.metrics.logit_vl_scale.item(), Math.exp(model.logit_vl_scale!.item()), "logit_vl_scale");
    close(model.logit_scale!.grad!.item(), ref.scalar("itc", "gs") as number, "d loss / d logit_scale");
    close(model.logit_vl_scale!.grad!.item(), ref.scalar("itc", "gsv") as number, "d loss / d logit_vl_scale");
    // the VL-branch projections are trained
    for (const p of [model.itc_vl_text_proj!, model.itc_vl_image_proj!]) assert.ok(p.parameters()[0].grad!.abs().sum().item() > 0);
  } finally {
    ref.cleanup();
    model.dispose();
  }
});

test("VLMo image-text step: trains the VL-branch ITC heads; loss = ITC + ITM + 0.25 x MLM (official); text-stage MLM unweighted", () => {
  assert.equal(VLMO_MLM_WEIGHT, 0.25);
  manualSeed(5);
  const { model, stages } = buildVLMo(vlmoRecipe());
  try {
    const ctx = { rng: new Rng(7), generator: new Generator(7), step: 0 };
    const pair = stages.find((s) => s.name === "image-text")!.sources[0];
    const batch = pairBatch(6, 12);
    const r = pair.step(batch, {}, ctx);
    const m = readMetrics(r.metrics);
    for (const k of ["itc_loss", "itc_cls_loss", "itc_vl_loss", "itc_i2t_acc", "itc_t2i_acc", "itc_vl_i2t_acc", "itc_vl_t2i_acc", "logit_vl_scale", "itm_loss", "mlm_loss"]) {
      assert.ok(Number.isFinite(m[k]), `metric ${k}`);
    }
    const expected = m.itc_loss + m.itm_loss + 0.25 * m.mlm_loss;
    assert.ok(Math.abs(r.loss.item() - expected) < 1e-5 * expected, `step loss ${r.loss.item()} vs itc + itm + 0.25 mlm = ${expected}`);
    assert.ok(Math.abs(m.itc_loss - (m.itc_cls_loss + m.itc_vl_loss) / 2) < 1e-6, "itc_loss is the mean of both branches");
    model.zeroGrad();
    r.loss.backward();
    for (const name of ["logit_vl_scale", "itc_vl_text_proj.fc.weight", "itc_vl_image_proj.fc.weight"]) {
      const p = model.namedParameters().find(([n]) => n === name)?.[1];
      assert.ok(p, `parameter ${name}`);
      assert.ok(p.grad && p.grad.abs().sum().item() > 0, `${name} gets a gradient`);
    }
    // the text-only stage's MLM (official compute_textonly_mlm) is not weighted
    const text = stages.find((s) => s.name === "text")!.sources[0].step(batch, {}, ctx);
    assert.ok(Math.abs(text.loss.item() - readMetrics(text.metrics).text_mlm_loss) < 1e-6);
    // recipes can still choose another weight
    const { stages: s1, model: m1 } = buildVLMo(vlmoRecipe({ mlmWeight: 1 }));
    const r1 = s1.find((s) => s.name === "image-text")!.sources[0].step(batch, {}, { rng: new Rng(7), generator: new Generator(7), step: 0 });
    const m1m = readMetrics(r1.metrics);
    const e1 = m1m.itc_loss + m1m.itm_loss + m1m.mlm_loss;
    assert.ok(Math.abs(r1.loss.item() - e1) < 1e-5 * e1);
    m1.dispose();
  } finally {
    model.dispose();
  }
});

/** A region-text batch: 4 pairs, pairs 1 and 3 mismatched (ITM negatives), 40 tokens, 24 regions. */
/** The region-text batch fields these tests read (a partial RegionTextBatch). */
function regionBatch(): RegionTextBatch {
  const b = 4, n = 24, d = 8;
  const pair = pairBatch(b, 40);
  return {
    input_ids: pair.input_ids,
    attention_mask: pair.attention_mask,
    feats: randn([b, n, d]),
    region_valid: ones([b, n], { dtype: "bool" }),
    matched: tensor([true, false, true, false], { dtype: "bool" }),
    obj_labels: randint(0, 5, [b, n]),
    obj_conf: ones([b, n]),
    attr_labels: randint(0, 3, [b, n]),
    attr_conf: ones([b, n]),
  } as unknown as RegionTextBatch;
}

/** MLM targets per pair, and the feature loss of a prediction that is exact except on the mismatched pairs. */
function targetsOnPairs(batch: RegionTextBatch, text: { labels: Tensor }, visMask: Tensor, matched: Tensor | undefined) {
  return noGrad(() => {
    const perPair = text.labels.ne(IGNORE).sum(1).toArray() as number[];
    const off = cat([zeros([1, 1, 1]), ones([1, 1, 1]), zeros([1, 1, 1]), ones([1, 1, 1])], 0);
    const maskedPerPair = visMask.sum(1).toArray() as number[];
    const loss = computeObjectPrediction({ feat: batch.feats.add(off) }, {
      feats: batch.feats, objLabels: batch.obj_labels, objConf: batch.obj_conf, attrLabels: batch.attr_labels, attrConf: batch.attr_conf, mask: visMask, matched,
    }).metrics.mrfr_loss.item();
    return { perPair, maskedPerPair, featLoss: loss };
  });
}

test("LXMERT rule: MSP puts MLM and visual targets on mismatched pairs by default; lossesOnMismatched=false and SemVLP do not", () => {
  tidy(() => {
    assert.equal(MSP_DEFAULTS.lossesOnMismatched, true);
    const vocab = mlmVocab(30522);
    const batch = regionBatch();
    // MSP default (official LXMERT: only QA is masked on mismatched pairs)
    const d = mspInputs("sentence", batch, new Generator(11), vocab);
    assert.equal(d.matched, undefined);
    const dt = targetsOnPairs(batch, d.text, d.vis.mask, d.matched);
    assert.ok(dt.maskedPerPair[1] > 0 && dt.maskedPerPair[3] > 0, `regions masked on the mismatched pairs: ${dt.maskedPerPair}`);
    assert.ok(dt.perPair[1] > 0 && dt.perPair[3] > 0, `MLM targets on mismatched pairs: ${dt.perPair}`);
    assert.ok(dt.featLoss > 0, "the feature loss sees the mismatched pairs");
    // the option off: SemVLP's rule
    const off = mspInputs("sentence", batch, new Generator(11), vocab, false);
    const ot = targetsOnPairs(batch, off.text, off.vis.mask, off.matched);
    assert.deepEqual([ot.perPair[1], ot.perPair[3]], [0, 0]);
    assert.ok(ot.perPair[0] > 0 && ot.perPair[2] > 0, "matched pairs keep their MLM targets");
    assert.equal(ot.featLoss, 0);
    // SemVLP: no MLM/visual targets on mismatched pairs
    const s = semvlpInputs(batch, new Generator(11), vocab);
    const st = targetsOnPairs(batch, s.text, s.vis.mask, s.matched);
    assert.deepEqual([st.perPair[1], st.perPair[3]], [0, 0]);
    assert.equal(st.featLoss, 0);
    // the recipe option is validated
    const base = { method: "msp", model: { preset: "lxmertSTiny" }, data: { world } };
    assert.equal((validateRecipe({ ...base, msp: { lossesOnMismatched: false } }).msp as { lossesOnMismatched: boolean }).lossesOnMismatched, false);
    assert.throws(() => validateRecipe({ ...base, msp: { lossesOnMismatched: "no" } }), /recipe\.msp\.lossesOnMismatched: expected a boolean/);
  });
});

test("VLMo ITM options: the loss weight (vlmo.itmWeight) and the random-then-hard curriculum (vlmo.itmRandomSteps)", () => {
  manualSeed(6);
  const batch = pairBatch(6, 12);
  // hard negatives are drawn with the step's libtorch generator, random ones with its Rng: the generator's
  // state after a step tells which kind the step drew
  const stateAfter = (vlmo: Record<string, unknown>, step: number): { state: number[]; metrics: Record<string, number>; loss: number } => {
    manualSeed(6);
    const { model, stages } = buildVLMo(vlmoRecipe(vlmo));
    try {
      const g = new Generator(7);
      const r = stages.find((s) => s.name === "image-text")!.sources[0].step(batch, {}, { rng: new Rng(7), generator: g, step });
      return { state: g.getState().toArray() as number[], metrics: readMetrics(r.metrics), loss: r.loss.item() };
    } finally {
      model.dispose();
    }
  };
  // text stage = 1 step (train.steps), so with itmRandomSteps 3 the global steps 2..4 draw random negatives
  const random = stateAfter({ itmRandomSteps: 3 }, 3);
  const hardLater = stateAfter({ itmRandomSteps: 3 }, 5);
  const hard = stateAfter({}, 3);
  const randomAlways = stateAfter({ itmHardNegatives: false }, 5);
  assert.deepEqual(hardLater.state, hard.state, "after the curriculum's random steps the paper's hard negatives are drawn");
  assert.deepEqual(random.state, randomAlways.state, "during the curriculum negatives are random");
  assert.notDeepEqual(random.state, hard.state, "hard negatives draw from the generator");
  const w = stateAfter({ itmWeight: 4 }, 3);
  const e = w.metrics.itc_loss + 4 * w.metrics.itm_loss + 0.25 * w.metrics.mlm_loss;
  assert.ok(Math.abs(w.loss - e) < 1e-5 * e, `loss ${w.loss} vs itc + 4 itm + 0.25 mlm = ${e}`);
  assert.throws(() => buildVLMo(vlmoRecipe({ itmRandomSteps: -1 })), /itmRandomSteps/);
});
