// VLMo: parity of every pass (outputs and parameter gradients) with an independent PyTorch
// implementation (test/fixtures/vlmo_reference.py, run on Debian's PyTorch) loading the same
// torch.save'd weights; official checkpoint names; expert routing; the shared relative position
// table; the standard-Transformer ablation; parameter counts; the retrieval scorer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  Tensor, fromBytes, tidy, noGrad, randn, randint, ones, liveTensors, manualSeed, type DType,
} from "../src/engine/index.ts";
import {
  VLMoModel, vlmoConfig, vlmoParameterCount, relativePositionIndex, relativePositionLayout,
  convertOfficialStateDict, loadOfficialCheckpoint, type VLMoConfig,
} from "../src/models/vlmo/index.ts";
import { itcScores, rerankWithItm } from "../src/models/vlmo/heads.ts";
import { loadPthStateDict } from "../src/engine/serialize/pth.ts";
import { StateDictError } from "../src/engine/nn.ts";

const PYTHON = process.env.VLP_TORCH_PYTHON ?? "/usr/bin/python3";
const REF = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "vlmo_reference.py");
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ["-c", "import torch"]).status === 0;
const skip = hasTorch ? false : `PyTorch not found at ${PYTHON}`;

/** Relative tolerance: max |ours - torch| / max |torch| per tensor. */
const RTOL = 1e-5;

function testConfig(over: Partial<VLMoConfig> = {}): VLMoConfig {
  return vlmoConfig("tiny", {
    vocabSize: 1000, maxTextLen: 16, dropPathRate: 0, textDropout: 0, ...over,
    heads: { mlm: true, itm: true, itc: true, itcVl: true, vqaLabels: 7, nlvr2: true },
  });
}

// ---- io.bin (see vlmo_reference.py) ----

function readBin(file: string): Map<string, Tensor> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as { tensors: { name: string; dtype: DType; shape: number[]; offset: number; nbytes: number }[] };
  const base = 8 + n;
  const out = new Map<string, Tensor>();
  for (const e of header.tensors) {
    out.set(e.name, fromBytes(new Uint8Array(buf.buffer, buf.byteOffset + base + e.offset, e.nbytes), e.dtype, e.shape).keep());
  }
  return out;
}

function runReference(dir: string, cfg: VLMoConfig): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg));
  const r = spawnSync(PYTHON, [REF, "parity", dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`vlmo_reference.py failed:\n${r.stderr}`);
}

function relErr(ours: Tensor, ref: Tensor): number {
  return noGrad(() => tidy(() => {
    assert.deepEqual(ours.shape, ref.shape);
    const scale = Math.max(ref.abs().max().item(), 1e-30);
    return ours.sub(ref).abs().max().item() / scale;
  }));
}

function weighted(io: Map<string, Tensor>, key: string, t: Tensor): Tensor {
  const w = io.get(`w.${key}`);
  assert.ok(w, `missing loss weight ${key}`);
  return t.mul(w).sum();
}

let dir = "";
let io = new Map<string, Tensor>();
let model: VLMoModel;
const cfg = testConfig();

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vlmo-test-"));
  if (!hasTorch) return;
  runReference(path.join(dir, "mome"), cfg);
  io = readBin(path.join(dir, "mome", "io.bin"));
  model = new VLMoModel(cfg).eval();
  loadOfficialCheckpoint(model, path.join(dir, "mome", "model.pth"));
});

after(() => {
  for (const t of io.values()) t.dispose();
  model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Compares outputs and then every parameter gradient of one pass with the reference. */
function checkPass(t: { diagnostic(m: string): void }, pass: string, outputs: Record<string, Tensor | undefined>, loss: Tensor): void {
  let worst = 0;
  for (const [k, v] of Object.entries(outputs)) {
    const ref = io.get(`out.${pass}.${k}`);
    assert.ok(ref, `reference has no out.${pass}.${k}`);
    assert.ok(v, `we produced no ${pass}.${k}`);
    const e = relErr(v, ref);
    worst = Math.max(worst, e);
    assert.ok(e <= RTOL, `${pass}.${k}: relative error ${e.toExponential(2)} > ${RTOL}`);
  }
  model.zeroGrad();
  loss.backward();
  let gworst = 0;
  let n = 0;
  for (const [name, p] of model.namedParameters()) {
    const g = p.grad;
    const ref = io.get(`grad.${pass}.${name}`);
    assert.equal(g !== null, ref !== undefined, `${pass}: gradient presence of ${name} (ours ${g !== null}, torch ${ref !== undefined})`);
    if (g && ref) {
      const e = relErr(g, ref);
      gworst = Math.max(gworst, e);
      assert.ok(e <= RTOL, `${pass}: grad ${name} relative error ${e.toExponential(2)} > ${RTOL}`);
      g.dispose();
      n++;
    }
  }
  model.zeroGrad();
  assert.ok(n > 10, `${pass}: only ${n} gradients compared`);
  t.diagnostic(`${pass}: worst output rel. error ${worst.toExponential(2)}, worst gradient rel. error ${gworst.toExponential(2)} over ${n} parameters`);
}

const inputs = () => ({ ids: io.get("in.ids")!, mask: io.get("in.mask")!, px: io.get("in.pixels")!, px2: io.get("in.pixels2")! });

// ---- parity ----

test("text-only pass: outputs, VL branch and gradients match PyTorch", { skip }, (t) => {
  tidy(() => {
    const { ids, mask } = inputs();
    const o = model.inferText(ids, mask, { outputHiddenStates: true, outputAttentions: true });
    const loss = weighted(io, "text.hidden", o.hidden).add(weighted(io, "text.itc", o.itc!)).add(weighted(io, "text.itc_vl", o.itcVl!));
    const outs: Record<string, Tensor | undefined> = { hidden: o.hidden, itc: o.itc, vl_hidden: o.vlHidden, itc_vl: o.itcVl, probs0: o.attentions![0] };
    o.hiddenStates!.forEach((s, i) => { outs[`state${i}`] = s; });
    checkPass(t, "text", outs, loss);
  });
});

test("image-only pass: outputs, VL branch and gradients match PyTorch", { skip }, (t) => {
  tidy(() => {
    const o = model.inferImage(inputs().px, { outputHiddenStates: true, outputAttentions: true });
    const loss = weighted(io, "image.hidden", o.hidden).add(weighted(io, "image.itc", o.itc!)).add(weighted(io, "image.itc_vl", o.itcVl!));
    const outs: Record<string, Tensor | undefined> = { hidden: o.hidden, itc: o.itc, vl_hidden: o.vlHidden, itc_vl: o.itcVl, probs0: o.attentions![0] };
    o.hiddenStates!.forEach((s, i) => { outs[`state${i}`] = s; });
    checkPass(t, "image", outs, loss);
  });
});

test("fusion pass with ITM, MLM and VQA heads: outputs and gradients match PyTorch", { skip }, (t) => {
  tidy(() => {
    const { ids, mask, px } = inputs();
    const o = model.inferFusion(ids, mask, px, { outputHiddenStates: true, outputAttentions: true });
    const itm = model.itmLogits(o);
    const mlm = model.mlmLogits(o.textFeats);
    const vqa = model.vqaLogits(o);
    const loss = weighted(io, "fusion.hidden", o.hidden).add(weighted(io, "fusion.itm", itm)).add(weighted(io, "fusion.mlm", mlm)).add(weighted(io, "fusion.vqa", vqa));
    const outs: Record<string, Tensor | undefined> = { hidden: o.hidden, pooled: o.pooled, itm, mlm, vqa, probs0: o.attentions![0] };
    o.hiddenStates!.forEach((s, i) => { outs[`state${i}`] = s; });
    checkPass(t, "fusion", outs, loss);
    // padded keys get no attention at all
    const p = o.attentions![0];
    assert.equal(p.select(0, 2).narrow(2, 7, 16 - 7).abs().max().item(), 0);
    assert.ok(p.select(0, 0).narrow(2, 7, 16 - 7).abs().max().item() > 0);
  });
});

test("raw_cls_feats: after the final norm in the fusion pass, before it in the unimodal passes (official infer / infer_text / infer_image)", { skip }, () => {
  tidy(() => noGrad(() => {
    const { ids, mask, px } = inputs();
    const L = cfg.numLayers;
    // official infer: x = transformer.norm(x); raw_cls_feats = x[:, 0]
    const fusion = model.inferFusion(ids, mask, px);
    const e = relErr(fusion.rawCls, io.get("out.fusion.hidden")!.select(1, 0));
    assert.ok(e <= RTOL, `fusion rawCls vs torch's normed hidden[:, 0]: relative error ${e.toExponential(2)}`);
    // official infer_text / infer_image: raw_cls_feats = x[:, 0] of the last block, un-normed
    const text = model.inferText(ids, mask);
    const image = model.inferImage(px);
    for (const [pass, o] of [["text", text], ["image", image]] as const) {
      const ref = io.get(`out.${pass}.state${L - 1}`)!.select(1, 0);
      const err = relErr(o.rawCls, ref);
      assert.ok(err <= RTOL, `${pass} rawCls vs torch's last block output [:, 0]: relative error ${err.toExponential(2)}`);
      assert.ok(relErr(o.rawCls, o.hidden.select(1, 0)) > 1e-3, `${pass} rawCls must not be the normed [CLS]`);
    }
  }));
});

test("NLVR2 (two passes, image types 1 and 2): logits and gradients match PyTorch", { skip }, (t) => {
  tidy(() => {
    const { ids, mask, px, px2 } = inputs();
    const logits = model.nlvr2Logits(ids, mask, px, px2);
    checkPass(t, "nlvr2", { logits }, weighted(io, "nlvr2.logits", logits));
  });
});

/** Runs the reference on config `c` in `dir/name`, loads its weights into a VLMoModel and hands both to `fn`; disposes them after. */
function withReferenceModel(name: string, c: VLMoConfig, fn: (m: VLMoModel, ref: Map<string, Tensor>) => void): void {
  const d = path.join(dir, name);
  runReference(d, c);
  const ref = readBin(path.join(d, "io.bin"));
  const m = new VLMoModel(c).eval();
  try {
    loadOfficialCheckpoint(m, path.join(d, "model.pth"));
    fn(m, ref);
  } finally {
    m.dispose();
    for (const v of ref.values()) v.dispose();
  }
}

test("the standard-Transformer ablation matches PyTorch too", { skip }, (t) => {
  withReferenceModel("standard", testConfig({ standard: true }), (m, ref) => {
    tidy(() => {
      const [ids, mask, px] = [ref.get("in.ids")!, ref.get("in.mask")!, ref.get("in.pixels")!];
      const pairs: [string, Tensor][] = [
        ["text.hidden", m.inferText(ids, mask).hidden],
        ["image.hidden", m.inferImage(px).hidden],
        ["fusion.hidden", m.inferFusion(ids, mask, px).hidden],
      ];
      for (const [k, v] of pairs) {
        const e = relErr(v, ref.get(`out.${k}`)!);
        t.diagnostic(`standard ${k}: ${e.toExponential(2)}`);
        assert.ok(e <= RTOL, `standard ${k}: ${e}`);
      }
    });
  });
});

test("the convolutional stem (patchStem \"conv\", a named departure) matches PyTorch: image pass and stem gradients", { skip }, (t) => {
  const c = testConfig({ patchStem: "conv" });
  withReferenceModel("stem", c, (m, ref) => {
    const names = m.namedParameters().map(([n]) => n).filter((n) => n.includes("patch_embed"));
    // tiny: 32-px images in 8-px patches = three stages (16, 32, 64 channels), then a 1x1 projection
    assert.deepEqual(names, [0, 1, 2].flatMap((i) => [`transformer.patch_embed.stem.${i}.conv.weight`, `transformer.patch_embed.stem.${i}.norm.weight`, `transformer.patch_embed.stem.${i}.norm.bias`])
      .concat(["transformer.patch_embed.proj.weight", "transformer.patch_embed.proj.bias"]));
    assert.equal(m.numParameters(), vlmoParameterCount(c).total);
    tidy(() => {
      const o = m.inferImage(ref.get("in.pixels")!);
      const e = relErr(o.hidden, ref.get("out.image.hidden")!);
      t.diagnostic(`stem image.hidden: ${e.toExponential(2)}`);
      assert.ok(e <= RTOL, `stem image.hidden: ${e}`);
      m.zeroGrad();
      weighted(ref, "image.hidden", o.hidden).add(weighted(ref, "image.itc", o.itc!)).add(weighted(ref, "image.itc_vl", o.itcVl!)).backward();
      for (const [name, p] of m.namedParameters()) {
        if (!name.includes("patch_embed")) continue;
        const g = relErr(p.grad!, ref.get(`grad.image.${name}`)!);
        assert.ok(g <= 1e-4, `stem grad ${name}: ${g}`);
      }
    });
  });
  assert.throws(() => vlmoConfig("tiny", { patchStem: "conv", imageSize: 36, patchSize: 12 }), /power-of-two patchSize, got 12/);
});

// ---- checkpoints ----

test("a torch.save'd state_dict with the official names loads strict, with identical names and shapes", { skip }, () => {
  const raw = loadPthStateDict(path.join(dir, "mome", "model.pth"));
  const ours = model.stateDict();
  assert.deepEqual([...raw.keys()].sort(), [...ours.keys()].sort());
  for (const [k, r] of raw) assert.deepEqual(r.shape, ours.get(k)!.shape, k);
  for (const k of [
    "transformer.blocks.0.attn.qkv.weight", "transformer.blocks.0.attn.q_bias", "transformer.blocks.0.attn.v_bias",
    "transformer.blocks.0.mlp_text.fc1.weight", "transformer.blocks.0.mlp_imag.fc2.bias", "transformer.blocks.0.norm2_text.weight",
    "transformer.blocks.0.norm2_imag.bias", "transformer.blocks.3.mlp_vl.fc1.weight", "transformer.blocks.3.norm2_vl.weight",
    "transformer.blocks.0.gamma_1", "transformer.blocks.0.gamma_2", "relative_position_bias_table",
    "text_embeddings.word_embeddings.weight", "text_embeddings.position_embeddings.weight", "text_embeddings.token_type_embeddings.weight",
    "text_embeddings.LayerNorm.weight", "token_type_embeddings.weight", "transformer.patch_embed.proj.weight", "transformer.cls_token",
    "transformer.norm.weight", "pooler.dense.weight", "itc_text_proj.fc.weight", "itc_image_proj.fc.weight", "itc_vl_text_proj.fc.weight",
    "itc_vl_image_proj.fc.weight", "logit_scale", "logit_vl_scale", "itm_score.fc.weight", "mlm_score.transform.dense.weight",
    "mlm_score.transform.LayerNorm.weight", "mlm_score.decoder.weight", "mlm_score.bias", "vqa_classifier.0.weight",
    "vqa_classifier.1.weight", "vqa_classifier.3.weight", "nlvr2_classifier.0.weight", "nlvr2_classifier.3.bias",
  ]) assert.ok(ours.has(k), `missing ${k}`);
  // no k bias, no VL-FFN below the VL layers, no absolute image position (official base/large)
  assert.ok(![...ours.keys()].some((k) => k.includes("k_bias") || k.includes("qkv.bias") || k === "transformer.pos_embed"));
  assert.ok(!ours.has("transformer.blocks.1.mlp_vl.fc1.weight") && ours.has("transformer.blocks.2.mlp_vl.fc1.weight"));
  // the loaded values are the file's
  const q = raw.get("transformer.blocks.1.attn.q_bias")!;
  assert.deepEqual(Array.from(new Float32Array(q.data.slice().buffer)), model.stateDict().get("transformer.blocks.1.attn.q_bias")!.toArray());
});

test("an older official checkpoint (DeepSpeed wrapper, position_ids buffer, 2 modality types) loads through the name map", { skip }, () => {
  const file = path.join(dir, "mome", "model_legacy.pth");
  const m = new VLMoModel(cfg).eval();
  try {
    // without the map, strict loading reports the differences
    const raw = loadPthStateDict(file);
    const plain = new Map([...raw].map(([k, r]) => [k, fromBytes(r.data, r.dtype as DType, r.shape)]));
    assert.throws(() => m.loadStateDict(plain), StateDictError);
    const mapped = convertOfficialStateDict(plain, m);
    assert.ok(!mapped.has("text_embeddings.position_ids") && mapped.has("transformer.cls_token"));
    assert.deepEqual(mapped.get("token_type_embeddings.weight")!.shape, [3, cfg.hiddenSize]);
    loadOfficialCheckpoint(m, file);
    tidy(() => {
      const tt = m.token_type_embeddings.weight;
      assert.ok(tt.select(0, 2).equal(tt.select(0, 1)), "NLVR2 type 2 starts as a copy of the image type");
      const { ids, mask, px } = inputs();
      // everything else equals the reference weights: the type-1 fusion output is the reference's
      assert.ok(relErr(m.inferFusion(ids, mask, px).hidden, io.get("out.fusion.hidden")!) <= RTOL);
    });
    for (const t of plain.values()) t.dispose();
  } finally {
    m.dispose();
  }
});

// ---- routing ----

/** Adds noise to one expert's fc2 in every layer that has it; returns an undo function. */
function perturb(m: VLMoModel, expert: "mlp_text" | "mlp_imag" | "mlp_vl"): () => void {
  const saved: [Tensor, Tensor][] = [];
  noGrad(() => {
    for (const b of m.blocks) {
      const e = b[expert];
      if (!e) continue;
      saved.push([e.fc2.weight, e.fc2.weight.clone().keep()]);
      e.fc2.weight.add_(randn(e.fc2.weight.shape).mul(0.5));
    }
  });
  return () => noGrad(() => { for (const [p, v] of saved) { p.copy_(v); v.dispose(); } });
}

test("routing: each expert only touches its modality (perturbation test)", () => {
  manualSeed(7);
  const c = testConfig();
  const m = new VLMoModel(c).eval();
  const S = c.vlffnStartLayer;
  const T = 16;
  try {
    tidy(() => noGrad(() => {
      const ids = randint(1, 1000, [2, T]);
      const mask = ones([2, T], { dtype: "int64" });
      const px = randn([2, 3, 32, 32]);
      const run = () => ({
        text: m.inferText(ids, mask, { vlBranch: true }),
        image: m.inferImage(px, { vlBranch: true }),
        fusion: m.inferFusion(ids, mask, px, { outputHiddenStates: true }),
      });
      const base = run();
      const same = (a: Tensor, b: Tensor) => a.equal(b);
      const fusionText = (o: typeof base, l: number) => o.fusion.hiddenStates![l].narrow(1, 0, T);
      const fusionImage = (o: typeof base, l: number) => o.fusion.hiddenStates![l].narrow(1, T, 17);

      let undo = perturb(m, "mlp_imag");
      let p = run();
      assert.ok(same(p.text.hidden, base.text.hidden), "V-FFN changed a text-only output");
      assert.ok(!same(p.image.hidden, base.image.hidden), "V-FFN did not change the image-only output");
      assert.ok(same(fusionText(p, 0), fusionText(base, 0)) && !same(fusionImage(p, 0), fusionImage(base, 0)), "fusion layer 0: V-FFN must change image positions only");
      undo();

      undo = perturb(m, "mlp_text");
      p = run();
      assert.ok(same(p.image.hidden, base.image.hidden), "L-FFN changed an image-only output");
      assert.ok(!same(p.text.hidden, base.text.hidden), "L-FFN did not change the text-only output");
      assert.ok(!same(fusionText(p, 0), fusionText(base, 0)) && same(fusionImage(p, 0), fusionImage(base, 0)), "fusion layer 0: L-FFN must change text positions only");
      undo();

      undo = perturb(m, "mlp_vl");
      p = run();
      assert.ok(same(p.text.hidden, base.text.hidden) && same(p.image.hidden, base.image.hidden), "VL-FFN changed a unimodal (L/V-FFN) output");
      assert.ok(!same(p.text.vlHidden!, base.text.vlHidden!) && !same(p.image.vlHidden!, base.image.vlHidden!), "VL-FFN did not change the VL branch");
      assert.ok(same(p.fusion.hiddenStates![S - 1], base.fusion.hiddenStates![S - 1]), "VL-FFN changed fusion layers below vlffnStartLayer");
      assert.ok(!same(fusionText(p, S), fusionText(base, S)) && !same(fusionImage(p, S), fusionImage(base, S)), "VL-FFN must change every position from vlffnStartLayer on");
      undo();

      assert.ok(same(run().fusion.hidden, base.fusion.hidden), "undo restored the weights");
      assert.deepEqual(m.blocks[0].expertsFor("vl"), ["mlp_text", "mlp_imag"]);
      assert.deepEqual(m.blocks[S].expertsFor("vl"), ["mlp_vl"]);
      assert.deepEqual(m.blocks[S].expertsFor("image"), ["mlp_imag"]);
    }));
  } finally {
    m.dispose();
  }
});

// ---- relative position bias ----

test("relative position bias: one table for all layers, official row layout", () => {
  manualSeed(3);
  const c = testConfig();
  const m = new VLMoModel(c).eval();
  try {
    const names = [...m.stateDict().keys()].filter((k) => k.includes("relative_position"));
    assert.deepEqual(names, ["relative_position_bias_table"], "exactly one relative-position parameter, owned by the model (no block has one)");
    const grid = 4;
    const lay = relativePositionLayout(grid, 196);
    assert.equal(lay.imageRel, 7 * 7 + 3);
    assert.equal(lay.total, 52 + 2 * 196 + 2);
    assert.deepEqual(m.relative_position_bias_table!.shape, [lay.total, c.numHeads * c.numLayers]);
    tidy(() => {
      const img = relativePositionIndex("image", grid, 196, 0);
      assert.deepEqual(img.shape, [17, 17]);
      const at = (t: Tensor, i: number, j: number) => t.select(0, i).select(0, j).item();
      assert.equal(at(img, 0, 0), 51); assert.equal(at(img, 0, 5), 49); assert.equal(at(img, 5, 0), 50);
      assert.equal(at(img, 1, 1), 3 * 7 + 3); // zero offset = centre of the 7x7 grid
      assert.equal(at(img, 1, 2), 3 * 7 + 2); // key one column right: column offset -1
      assert.equal(at(img, 1, 5), 2 * 7 + 3); // key one row down
      const txt = relativePositionIndex("text", grid, 196, 16);
      assert.equal(at(txt, 0, 0), lay.total - 1); assert.equal(at(txt, 0, 3), lay.total - 3); assert.equal(at(txt, 3, 0), lay.total - 2);
      assert.equal(at(txt, 2, 5), 52 + 196 + 3); assert.equal(at(txt, 5, 2), 52 + 196 - 3);
      const vl = relativePositionIndex("vl", grid, 196, 16);
      assert.deepEqual(vl.shape, [33, 33]);
      assert.equal(at(vl, 3, 20), 52); assert.equal(at(vl, 20, 3), 53);
      assert.ok(vl.narrow(0, 0, 16).narrow(1, 0, 16).equal(txt) && vl.narrow(0, 16, 17).narrow(1, 16, 17).equal(img));

      // every layer's bias is its head slice of ONE gather from the same table
      noGrad(() => m.relative_position_bias_table!.normal_());
      const biases = m.relativePositionBias("vl", 16);
      const gathered = m.relative_position_bias_table!.index([vl]);
      biases.forEach((b, l) => assert.ok(b!.equal(gathered.narrow(2, l * c.numHeads, c.numHeads).permute(2, 0, 1)), `layer ${l}`));

      // changing layer 2's columns changes layer >= 2 only
      const ids = randint(1, 1000, [1, 16]);
      const px = randn([1, 3, 32, 32]);
      const before = noGrad(() => m.inferFusion(ids, null, px, { outputHiddenStates: true }).hiddenStates!);
      noGrad(() => m.relative_position_bias_table!.narrow(1, 2 * c.numHeads, c.numHeads).add_(1));
      const afterS = noGrad(() => m.inferFusion(ids, null, px, { outputHiddenStates: true }).hiddenStates!);
      assert.ok(before[1].equal(afterS[1]) && !before[2].equal(afterS[2]));
    });
  } finally {
    m.dispose();
  }
});

// ---- ablation, parameter counts ----

test("standard ablation: one FFN per block; MoME adds the experts", () => {
  const std = new VLMoModel(testConfig({ standard: true }));
  const mome = new VLMoModel(testConfig());
  try {
    const keys = [...std.stateDict().keys()];
    assert.ok(keys.includes("transformer.blocks.0.mlp.fc1.weight") && keys.includes("transformer.blocks.0.norm2.weight"));
    assert.ok(!keys.some((k) => /mlp_(text|imag|vl)|norm2_/.test(k)));
    for (const b of std.blocks) assert.deepEqual([b.expertsFor("text"), b.expertsFor("image"), b.expertsFor("vl")], [["mlp"], ["mlp"], ["mlp"]]);
    assert.equal(std.itc_vl_text_proj, null);
    const h = 64, f = 256, ffn = 2 * h * f + f + h + 2 * h;
    // MoME: 2 experts per layer + a VL expert in the top 2 layers; standard: 1; minus the VL ITC heads
    assert.equal(mome.numParameters() - std.numParameters(), 4 * ffn + 2 * ffn + 2 * h * h + 1);
    for (const m of [std, mome]) assert.equal(m.numParameters(), vlmoParameterCount(m.config).total);
  } finally {
    std.dispose();
    mome.dispose();
  }
});

test("parameter counts: base and large presets against the published sizes", (t) => {
  const base = vlmoParameterCount(vlmoConfig("base"));
  const large = vlmoParameterCount(vlmoConfig("large"));
  t.diagnostic(`VLMo-base: backbone incl. text embeddings ${(base.backbone / 1e6).toFixed(1)}M (attention ${(base.attention / 1e6).toFixed(1)}M, V-FFN ${(base.experts.image / 1e6).toFixed(1)}M, L-FFN ${(base.experts.text / 1e6).toFixed(1)}M, VL-FFN ${(base.experts.vl / 1e6).toFixed(1)}M, embeddings ${(base.embeddings / 1e6).toFixed(1)}M); pre-training heads ${(base.heads / 1e6).toFixed(1)}M`);
  t.diagnostic(`VLMo-large: backbone ${(large.backbone / 1e6).toFixed(1)}M, heads ${(large.heads / 1e6).toFixed(1)}M`);
  // 175M is the commonly quoted VLMo-base size, 562M VLMo-large: both are the backbone with the
  // text embeddings and without task heads.
  assert.ok(Math.abs(base.backbone - 175e6) < 1e6, `base backbone ${base.backbone}`);
  assert.ok(Math.abs(large.backbone - 562e6) < 1.5e6, `large backbone ${large.backbone}`);
  // the count is the model's: checked on a tiny build with every head
  const c = testConfig();
  const m = new VLMoModel(c);
  try { assert.equal(m.numParameters(), vlmoParameterCount(c).total); } finally { m.dispose(); }
});

// ---- retrieval ----

test("retrieval scorer: ITC dot products and ITM re-ranking of the top k", () => {
  manualSeed(11);
  const m = new VLMoModel(testConfig()).eval();
  try {
    tidy(() => noGrad(() => {
      const ids = randint(1, 1000, [5, 16]);
      const mask = ones([5, 16], { dtype: "int64" });
      const px = randn([3, 3, 32, 32]);
      const img = m.inferImage(px).itc!;
      const txt = m.inferText(ids, mask).itc!;
      assert.ok(img.norm(2, -1).sub(1).abs().max().item() < 1e-5, "ITC embeddings are unit vectors");
      const s = itcScores(img, txt);
      assert.deepEqual(s.shape, [3, 5]);
      assert.ok(Math.abs(s.select(0, 1).select(0, 2).item() - img.select(0, 1).mul(txt.select(0, 2)).sum().item()) < 1e-6);
      const k = 2;
      const r = rerankWithItm(m, s, px, ids, mask, k);
      // image 0: its top-2 texts get ITC + ITM logit, the others ITC - 100
      const [, top] = s.select(0, 0).topk(k);
      const topIds = top.toArray();
      for (let j = 0; j < 5; j++) {
        const got = r.i2t.select(0, 0).select(0, j).item();
        const itc = s.select(0, 0).select(0, j).item();
        if (topIds.includes(j)) {
          const itm = m.itmLogits(m.inferFusion(ids.narrow(0, j, 1), mask.narrow(0, j, 1), px.narrow(0, 0, 1))).select(1, 1).item();
          assert.ok(Math.abs(got - (itc + itm)) < 1e-4, `i2t[0,${j}]`);
        } else assert.ok(Math.abs(got - (itc - 100)) < 1e-4);
      }
      assert.deepEqual(r.t2i.shape, [5, 3]);
      assert.equal(r.t2i.gt(-50).sum().item(), 5 * k);
    }));
  } finally {
    m.dispose();
  }
});

test("a forward + backward inside tidy leaves no tensors behind", () => {
  const m = new VLMoModel(testConfig()).train();
  try {
    const run = () => tidy(() => {
      const ids = randint(1, 1000, [2, 16]);
      const mask = ones([2, 16], { dtype: "int64" });
      const o = m.inferFusion(ids, mask, randn([2, 3, 32, 32]));
      o.hidden.pow(2).mean().add(m.inferText(ids, mask).itcVl!.sum()).backward();
    });
    run();
    m.zeroGrad();
    const n0 = liveTensors();
    run();
    m.zeroGrad();
    assert.equal(liveTensors(), n0);
  } finally {
    m.dispose();
  }
});

test("eval() turns off every dropout and stochastic depth (the presets train with 0.1 of each)", () => {
  tidy(() => noGrad(() => {
    manualSeed(3);
    const m = new VLMoModel(vlmoConfig("tiny"));
    assert.ok(m.config.dropPathRate > 0 && m.config.textDropout > 0, "the tiny preset has dropout to turn off");
    const ids = randint(1000, 2000, [2, 8]);
    const pixels = randn([2, 3, 32, 32]);
    const run = () => m.inferFusion(ids, null, pixels).pooled;
    m.train();
    assert.ok(run().sub(run()).abs().max().item() > 1e-4, "in training mode two passes differ");
    m.eval();
    assert.equal(run().sub(run()).abs().max().item(), 0, "in eval mode two passes are identical");
    m.dispose();
  }));
});
