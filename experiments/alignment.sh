#!/usr/bin/env bash
# The alignment experiments of README "Pre-training that learns": what was tried to get the fusion
# models' ITM off the chance plateau and VLMo's ITC out of collapse. Each run is one `vlp pretrain`
# with `--set` overrides of a tiny/small recipe; curves: node --import tsx experiments/curves.ts DIR.
# Worlds: data/world-tiny (1,000 images, pixel features), data/world-tiny-code (the same with the
# detector code, --code-dim 32), data/world-small (5,000 images, --code-dim 32). Resumable: a run whose
# directory has model.safetensors is skipped. About 3-17 min per run on an idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/runs/alignment}
mkdir -p "$OUT"
vlp() { node --import tsx src/cli/vlp.ts "$@"; }
[ -f data/world-tiny/meta.json ] || vlp data synth --images 1000 --seed 0 --out data/world-tiny
[ -f data/world-tiny-code/meta.json ] || vlp data synth --images 1000 --seed 0 --code-dim 32 --out data/world-tiny-code
[ -f data/world-small/meta.json ] || vlp data synth --images 5000 --seed 0 --code-dim 32 --out data/world-small
[ -f data/world-demo/meta.json ] || vlp data synth --images 5000 --seed 0 --code-dim 32 --out data/world-demo
run() { # NAME RECIPE SETS...
  local n=$1 r=$2; shift 2
  [ -f "$OUT/$n/model.safetensors" ] && { echo "skip $n"; return; }
  rm -rf "${OUT:?}/$n"
  VLP_NUM_THREADS=${VLP_NUM_THREADS:-1} vlp pretrain --recipe "$r" --out "$OUT/$n" --quiet "$@"
}
# The SemVLP-tiny recipe as it was before these experiments (paper settings, pixel features, lr 5e-4),
# then one lever after another. `model.overrides` and `semvlp` are set whole, so each run is explicit.
SEM0=(--set data.world=data/world-tiny --set train.lr=0.0005 --set train.steps=1500 --set train.evalEvery=250 --set train.checkpointEvery=0)
ov() { echo "model.overrides={$1}"; }
sv() { echo "semvlp={\"singleRatio\":0.5,\"visualWeighting\":\"mask\"$1}"; }
CAPS=',"qa":false,"textSources":["mscoco"],"losses":{"itc":1}'
CODE='"visualFeatDim":96'
run X0-paper recipes/semvlp-tiny.json "${SEM0[@]}" --set "$(ov '')" --set "$(sv ',"qa":true')"
run X1-itm-captions-itc-cls recipes/semvlp-tiny.json "${SEM0[@]}" --set "$(ov '')" --set "$(sv ',"qa":true,"itmSources":["mscoco"],"losses":{"itc":1}')"
run X4-captions-itc-cls recipes/semvlp-tiny.json "${SEM0[@]}" --set "$(ov '')" --set "$(sv "$CAPS")"
run X6-itc-mean recipes/semvlp-tiny.json "${SEM0[@]}" --set "$(ov '"itcPool":"mean"')" --set "$(sv "$CAPS")"
run X8-pool-mean-code recipes/semvlp-tiny.json "${SEM0[@]}" --set data.world=data/world-tiny-code --set "$(ov "$CODE"',"itcPool":"mean","pool":"mean"')" --set "$(sv "$CAPS")"
run X9-init008-code recipes/semvlp-tiny.json "${SEM0[@]}" --set data.world=data/world-tiny-code --set "$(ov "$CODE"',"itcPool":"mean","pool":"mean","initializerRange":0.08')" --set "$(sv "$CAPS")"
run X10-lr2e-3-code recipes/semvlp-tiny.json "${SEM0[@]}" --set data.world=data/world-tiny-code --set train.lr=0.002 --set "$(ov "$CODE"',"itcPool":"mean","pool":"mean"')" --set "$(sv "$CAPS")"
# the 5,000-image world: paired ITM, init 0.05, no dropout, lr 1e-3 (recipes/semvlp-small.json), then
# with a text-only warm-up (W1), and with the product ITM read-out (P1; L1 = the recipe as shipped, 4,000 steps), and P1 with questions + QA (P2)
run S1-semvlp-small recipes/semvlp-small.json --set model.overrides.itmRead=pooled --set train.steps=1000
run W1-text-warmup recipes/semvlp-small.json --set model.overrides.itmRead=pooled --set semvlp.textWarmup.steps=1500 --set train.steps=500
run P1-itm-prod recipes/semvlp-small.json --set model.overrides.itmRead=prod --set train.steps=2000 --set train.evalEvery=250
run L1-semvlp-small-4000 recipes/semvlp-small.json --set semvlp.losses.itm=1
# session 4: the ITM loss x4 (S4 = recipes/semvlp-small.json as shipped)
run S4-semvlp-small-itm4 recipes/semvlp-small.json
run P2-itm-prod-qa recipes/semvlp-small.json --set model.overrides.itmRead=prod --set train.steps=800 --set train.evalEvery=200 --set semvlp.qa=true --set 'semvlp.textSources=["mscoco","vqa","gqa"]' --set 'semvlp.itmSources=["mscoco"]'
# MSP: the paper's product pooler on sequence means (M1), plus a quarter of hard negatives (M2)
# (recipes/msp-small.json now ships session 4's levers: M1/M2 switch them off)
MSP0=(--set model.overrides.itmRead=pooled --set msp.itc=0 --set msp.itmPaired=false --set msp.stages.sentence.losses.itm=1)
run M1-msp-pool-mean recipes/msp-small.json "${MSP0[@]}" --set model.overrides.pool=mean --set train.evalEvery=250 --set msp.stages.token.steps=500 --set msp.stages.phrase.steps=500 --set msp.stages.sentence.steps=750
run M2-msp-hard-quarter recipes/msp-small.json "${MSP0[@]}" --set model.overrides.pool=mean --set msp.hardFraction=0.25 --set msp.stages.token.steps=300 --set msp.stages.phrase.steps=300 --set msp.stages.sentence.steps=1500 --set train.evalEvery=250
# session 4: the product ITM read-out + ITC on the cross layers run one stream at a time + paired ITM (M3),
# with the ITM loss x4 (M5), 3,000 sentence steps (M6 = recipes/msp-small.json as shipped), the tiny recipe (M4)
run M3-msp-prod-itc-paired recipes/msp-small.json --set msp.stages.sentence.losses.itm=1 --set msp.stages.sentence.steps=1500
run M5-msp-small-1500 recipes/msp-small.json --set msp.stages.sentence.steps=1500
run M6-msp-small recipes/msp-small.json
run M4-msp-tiny recipes/msp-tiny.json
# session 5: seed 1 of the two small recipes (S4 and M6 are seed 0)
run S4-semvlp-small-itm4-seed1 recipes/semvlp-small.json --set train.seed=1
run M6-msp-small-seed1 recipes/msp-small.json --set train.seed=1
# VLMo, image-text stage only: [CLS] ITC as official (V1), mean ITC (V3), + product ITM and 8-px patches (V6)
run V1-vlmo-64px-p8-cls recipes/vlmo-tiny.json --set data.world=data/world-tiny --set train.lr=0.0005 --set 'model.overrides={"imageSize":64,"patchSize":8}' --set 'vlmo.order=["image-text"]' --set vlmo.stages.image-text.steps=1000 --set train.evalEvery=250
run V3-vlmo-small-itc-mean recipes/vlmo-small.json --set 'vlmo.order=["image-text"]'
run V6-vlmo-itm-prod-p8 recipes/vlmo-small.json --set model.overrides.itmRead=prod --set model.overrides.patchSize=8 --set train.evalEvery=250 --set 'vlmo.order=["image-text"]'
# session 4: 128-px input through all three stages (V7; stopped after 400 image-text steps in the README's row)
run V7-vlmo-128px recipes/vlmo-small.json --set model.overrides.imageSize=128 --set model.overrides.itmRead=prod --set vlmo.stages.image.steps=300 --set vlmo.stages.text.steps=300 --set vlmo.stages.image-text.steps=1500
# session 5: the recipe as it stands, with held-out batches of distinct images (V8)
run V8-vlmo-small recipes/vlmo-small.json --set train.evalEvery=250
# session 5: the ITC-only probe with held-out batches of distinct images, four image encoders and the region-feature side
for img in vit cnn stem linear region; do STEPS=1500 IMG=$img VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1; done
STEPS=1500 SETS=model.overrides.imageSize=128 VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
for img in vit cnn; do STEPS=1500 BOW=1 IMG=$img VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1; done
# session 4 (before the held-out order fix, so capped near 1/5): the ITC-only probe, 600 steps each, and the recipe's model for 3,000
for v in "" "model.overrides.layerScaleInit=1" "model.overrides.patchSize=8" "model.overrides.imageSize=128" "model.overrides.itcPool=cls" "model.preset=small"; do
  STEPS=600 SETS="$v" VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
done
STEPS=600 LR=3e-3 VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
STEPS=600 BOW=1 VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
STEPS=3000 VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts
# session 6 (held-out batches mixing the kinds of caption): the probe again, P6-*
for img in vit linear; do STEPS=1500 IMG=$img VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1; done
for v in "model.preset=small" "model.overrides.patchSize=8" "model.overrides.layerScaleInit=1;model.overrides.dropPathRate=0;model.overrides.textDropout=0"; do
  STEPS=1500 SETS="$v" VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
done
STEPS=1500 LR=3e-3 SETS="model.overrides.dropPathRate=0;model.overrides.textDropout=0" VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
for img in vit cnn; do STEPS=1500 BOW=1 IMG=$img VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1; done
# session 7: which side limits? the region side with the bag-of-words and with VLMo's text transformer,
# the CNN max-pooled; then the supervised pixel probe (no captions: can a CNN name the shapes at all?)
for img in region cnnmax; do STEPS=1500 BOW=1 IMG=$img VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1; done
STEPS=1500 IMG=region VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
STEPS=1500 VLP_NUM_THREADS=1 node --import tsx experiments/pixel_probe.ts | tail -1
STEPS=1500 INIT=kaiming VLP_NUM_THREADS=1 node --import tsx experiments/pixel_probe.ts | tail -1
STEPS=6000 INIT=kaiming VLP_NUM_THREADS=1 node --import tsx experiments/pixel_probe.ts | tail -1
# session 6: long image-only stages (pixels, HOG), then the probe from their weights
run S1P-vlmo-mim-pixels-4000 recipes/vlmo-small.json --set 'vlmo.order=["image"]' --set vlmo.stages.image.steps=4000 --set train.evalEvery=1000
run S1H-vlmo-mim-hog-2000 recipes/vlmo-small.json --set 'vlmo.order=["image"]' --set vlmo.stages.image.steps=2000 --set vlmo.mimTarget=hog --set train.evalEvery=500
STEPS=1500 INIT="$OUT"/S1P-vlmo-mim-pixels-4000/model.safetensors VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
STEPS=1500 SETS=vlmo.mimTarget=hog INIT="$OUT"/S1H-vlmo-mim-hog-2000/model.safetensors VLP_NUM_THREADS=1 node --import tsx experiments/itc_probe.ts | tail -1
# session 6: VLMo's ITM with the product read-out x4, hard negatives (V9) and random ones (V10)
run V9-vlmo-itm-prod-x4 recipes/vlmo-small.json --set model.overrides.itmRead=prod --set vlmo.itmWeight=4 --set train.evalEvery=250
run V10-vlmo-itm-random-neg recipes/vlmo-small.json --set 'vlmo.order=["image-text"]' --set vlmo.stages.image-text.steps=1200 --set vlmo.itmHardNegatives=false --set model.overrides.itmRead=prod --set vlmo.itmWeight=4 --set train.evalEvery=300
run V11-vlmo-itm-curriculum recipes/vlmo-small.json --set 'vlmo.order=["image-text"]' --set vlmo.stages.image-text.steps=1500 --set vlmo.itmRandomSteps=500 --set model.overrides.itmRead=prod --set vlmo.itmWeight=4 --set train.evalEvery=250
# session 6: the small SemVLP recipe in bf16 (issue 13: against the float32 seeds 0-1)
run S4-semvlp-small-bf16 recipes/semvlp-small.json --set train.precision=bf16
# real images: Noto + OpenMoji for training, Twemoji held out (vlp data emoji --out data/emoji)
[ -f data/emoji/meta.json ] || vlp data emoji --out data/emoji
run E1-vlmo-emoji recipes/vlmo-small.json --set data.world=data/emoji --set data.karpathy=karpathy/dataset_emoji.json --set vlmo.stages.image.steps=200 --set vlmo.stages.text.steps=200 --set vlmo.stages.image-text.steps=1200 --set train.evalEvery=300 --set model.overrides.itmRead=prod
# session 7: the paper's image augmentation (vlmo.augment: the official crop + flip + RandAugment) on and off, 2,400 image-text steps
EMO=(--set data.world=data/emoji --set data.karpathy=karpathy/dataset_emoji.json --set vlmo.stages.image.steps=200 --set vlmo.stages.text.steps=200 --set vlmo.stages.image-text.steps=2400 --set train.evalEvery=400 --set train.checkpointEvery=400 --set model.overrides.itmRead=prod)
run E2-vlmo-emoji-aug recipes/vlmo-small.json "${EMO[@]}" --set vlmo.augment=true
run E3-vlmo-emoji-noaug recipes/vlmo-small.json "${EMO[@]}" --set vlmo.augment=false
run E4-vlmo-emoji-4800 recipes/vlmo-small.json "${EMO[@]}" --set vlmo.augment=false --set vlmo.stages.image-text.steps=4800 --set train.evalEvery=800 --set train.checkpointEvery=800
run E5-vlmo-emoji-8000 recipes/vlmo-small.json "${EMO[@]}" --set vlmo.augment=false --set vlmo.stages.image-text.steps=8000 --set train.evalEvery=2000 --set train.checkpointEvery=2000
# session 8: recipes/vlmo-emoji.json (batch 64, the paper's augmentation, 3,600 image-text steps): the emoji target
run E6-vlmo-emoji recipes/vlmo-emoji.json
# session 8: MSP-small with 6,000 sentence steps (twice the recipe's)
run M7-msp-small-6000 recipes/msp-small.json --set msp.stages.sentence.steps=6000 --set train.evalEvery=1000
# session 9: 9,000 sentence steps (held-out ITM 0.877, ITM_HS 0.779, IR R@1 0.378: above the bag of words)
run M8-msp-small-9000 recipes/msp-small.json --set msp.stages.sentence.steps=9000 --set train.evalEvery=1000
# session 17: VLMo-tiny's image-only stage on Visual Genome's labels (vlmo.imageTask; the demo's world),
# 600 image-text steps as in the main job; held out on all 250 test images (the last line) and on 100
V17=(--set data.world=data/world-demo --set vlmo.stages.image-text.steps=600)
run V17a-vlmo-tiny-labels recipes/vlmo-tiny.json "${V17[@]}"
run V17b-vlmo-tiny-labels-seed1 recipes/vlmo-tiny.json "${V17[@]}" --set train.seed=1
run V17c-vlmo-tiny-labels-linear recipes/vlmo-tiny.json "${V17[@]}" --set model.overrides.patchStem=linear
run V17d-vlmo-tiny-objects recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.imageTask=vg-objects --set vlmo.stages.image.steps=2000
run V17e-vlmo-tiny-labels-1000 recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.stages.image.steps=1000
run V17f-vlmo-tiny-labels-1000-400 recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.stages.image.steps=1000 --set vlmo.stages.image-text.steps=400
run V17g-vlmo-tiny-labels-randneg recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.itmHardNegatives=false
run V17h-vlmo-tiny-objects-randneg recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.imageTask=vg-objects --set vlmo.stages.image.steps=2000 --set vlmo.itmHardNegatives=false
run V17i-vlmo-tiny-labels-randneg-itm4 recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.itmHardNegatives=false --set vlmo.itmWeight=4
run V17j-vlmo-tiny-labels-randneg-itm4-1000 recipes/vlmo-tiny.json "${V17[@]}" --set vlmo.itmHardNegatives=false --set vlmo.itmWeight=4 --set vlmo.stages.image-text.steps=1000
# session 18: MSP-small with M16's settings (no dropout, lr 2e-3) and the 3,300 sentence steps that fit in
# 20 minutes once the visual head runs on the masked regions only (18.6 min alone on the 2-core Zen 3)
M18=(--set model.overrides.hiddenDropoutProb=0 --set model.overrides.attentionProbsDropoutProb=0 --set train.lr=0.002 --set msp.stages.sentence.steps=3300)
run M18-msp-small-3300 recipes/msp-small.json "${M18[@]}"
run M18b-msp-small-3300-seed1 recipes/msp-small.json "${M18[@]}" --set train.seed=1
for d in "$OUT"/*/; do node --import tsx experiments/curves.ts "$d"; done
node --import tsx experiments/heldout.ts --limit 100 "$OUT"/S1-semvlp-small "$OUT"/P1-itm-prod "$OUT"/L1-semvlp-small-4000 "$OUT"/S4-semvlp-small-itm4 "$OUT"/P2-itm-prod-qa "$OUT"/M2-msp-hard-quarter "$OUT"/V6-vlmo-itm-prod-p8 \
  "$OUT"/M3-msp-prod-itc-paired "$OUT"/M5-msp-small-1500 "$OUT"/M6-msp-small "$OUT"/M4-msp-tiny "$OUT"/V7-vlmo-128px "$OUT"/V8-vlmo-small "$OUT"/S4-semvlp-small-itm4-seed1 "$OUT"/M6-msp-small-seed1 "$OUT"/S4-semvlp-small-bf16 "$OUT"/M7-msp-small-6000 "$OUT"/M8-msp-small-9000
node --import tsx experiments/heldout.ts "$OUT"/E1-vlmo-emoji "$OUT"/E2-vlmo-emoji-aug "$OUT"/E3-vlmo-emoji-noaug "$OUT"/E4-vlmo-emoji-4800 "$OUT"/E5-vlmo-emoji-8000 "$OUT"/E6-vlmo-emoji
node --import tsx experiments/heldout.ts --limit 100 "$OUT"/V17a-vlmo-tiny-labels "$OUT"/V17b-vlmo-tiny-labels-seed1 "$OUT"/M18-msp-small-3300 "$OUT"/M18b-msp-small-3300-seed1
node --import tsx experiments/heldout.ts "$OUT"/V17?-*
