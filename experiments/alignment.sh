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
run() { # NAME RECIPE SETS...
  local n=$1 r=$2; shift 2
  [ -f "$OUT/$n/model.safetensors" ] && { echo "skip $n"; return; }
  rm -rf "${OUT:?}/$n"
  VLP_NUM_THREADS=${VLP_NUM_THREADS:-1} vlp pretrain --recipe "$r" --out "$OUT/$n" --quiet --set train.checkpointEvery=0 "$@"
}
CODE=(--set data.world=data/world-tiny-code --set model.overrides.visualFeatDim=96)
CAP=(--set 'semvlp.textSources=["mscoco"]' --set semvlp.qa=false --set semvlp.losses.itc=1)
T=(--set train.steps=1500 --set train.evalEvery=250)
run X1-itm-captions-itc-cls recipes/semvlp-tiny.json "${T[@]}" --set 'semvlp.itmSources=["mscoco"]' --set semvlp.losses.itc=1
run X3-captions-itc-cls-code recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" "${CODE[@]}"
run X4-captions-itc-cls recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}"
run X5-itc-mean-code recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" "${CODE[@]}" --set model.overrides.itcPool=mean
run X6-itc-mean recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" --set model.overrides.itcPool=mean
run X8-pool-mean-code recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" "${CODE[@]}" --set model.overrides.itcPool=mean --set model.overrides.pool=mean
run X9-init008-code recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" "${CODE[@]}" --set model.overrides.itcPool=mean --set model.overrides.pool=mean --set model.overrides.initializerRange=0.08
run X10-lr2e-3-code recipes/semvlp-tiny.json "${T[@]}" "${CAP[@]}" "${CODE[@]}" --set model.overrides.itcPool=mean --set model.overrides.pool=mean --set train.lr=0.002
run S1-semvlp-small recipes/semvlp-small.json
run V1-vlmo-64px-p8-cls recipes/vlmo-tiny.json --set model.overrides.imageSize=64 --set model.overrides.patchSize=8 --set 'vlmo.order=["image-text"]' --set vlmo.stages.image-text.steps=1000 --set train.evalEvery=250
run V3-vlmo-small-itc-mean recipes/vlmo-small.json --set 'vlmo.order=["image-text"]'
for d in "$OUT"/*/; do node --import tsx experiments/curves.ts "$d"; done
