#!/usr/bin/env bash
# What VQA fine-tuning learns (README "What VQA fine-tuning learns"): the question-attention baseline,
# the "is there a ..." questions alone (where every fine-tune from scratch answers one constant), and
# VQA and NLVR2 transfer from the small runs S4 (SemVLP) and M8 (MSP) of experiments/alignment.sh
# (S4=DIR, M8=DIR, ... where they are elsewhere). Resumable: a run whose folder has
# its test metrics is skipped. About 2-4 min per 1,000 fine-tuning steps of a tiny model, 1 thread.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/runs/vqa}
M8=${M8:-experiments/runs/alignment/M8-msp-small-9000}
S4=${S4:-experiments/runs/alignment/S4-semvlp-small-itm4}
S4B=${S4B:-experiments/runs/alignment/S4-semvlp-small-itm4-seed1}
M6=${M6:-experiments/runs/alignment/M6-msp-small}
M6B=${M6B:-experiments/runs/alignment/M6-msp-small-seed1}
mkdir -p "$OUT"
export VLP_NUM_THREADS=${VLP_NUM_THREADS:-1}
vlp() { node --import tsx src/cli/vlp.ts "$@"; }
# 1. the baselines, 3 seeds (VQA: official accuracy; NLVR2: accuracy; val, test, test_comp in metrics.json)
for s in 0 1 2; do
  [ -f "$OUT/baseline-world-demo-s$s/metrics.json" ] || vlp baseline vqa --world data/world-demo --seed $s --quiet --out "$OUT/baseline-world-demo-s$s"
  [ -f "$OUT/baseline-nlvr2-s$s/metrics.json" ] || vlp baseline nlvr2 --world data/world-demo --seed $s --quiet --out "$OUT/baseline-nlvr2-s$s"
done
# 2. existence questions only
for w in world-demo world-small; do
  [ -f "$OUT/$w-exist/meta.json" ] || node --import tsx experiments/vqa_subset.ts --world data/$w --types "is there a" --out "$OUT/$w-exist"
done
[ -f "$OUT/baseline-exist/metrics.json" ] || vlp baseline vqa --world "$OUT/world-demo-exist" --quiet --out "$OUT/baseline-exist"
ftask() { # TASK NAME WORLD STEPS ARGS...: one fine-tune (the task's tiny recipe) and its test / test_comp metrics
  local t=$1 n=$2 w=$3 steps=$4; shift 4
  [ -f "$OUT/$n-test_comp.json" ] && { echo "skip $n"; return; }
  [ -f "$OUT/$n/eval.json" ] || vlp finetune "$t" --recipe "recipes/finetune/$t-tiny.json" --quiet --set data.world="$w" --set train.steps="$steps" --set train.evalEvery=250 "$@" --out "$OUT/$n"
  for sp in test test_comp; do vlp eval "$t" --checkpoint "$OUT/$n" --split $sp --quiet --metrics "$OUT/$n-$sp.json"; done
}
ft() { ftask vqa "$@"; }
SEM='{"preset":"tiny","overrides":{"visualFeatDim":96,"itcPool":"mean","pool":"mean","itmRead":"prod","initializerRange":0.05,"hiddenDropoutProb":0,"attentionProbsDropoutProb":0}}'
E=$OUT/world-demo-exist
ft exist-semvlp-scratch "$E" 1000 --scratch --set method=semvlp --set "model=$SEM"
ft exist-semvlp-scratch-3000 "$E" 3000 --scratch --set method=semvlp --set "model=$SEM"
ft exist-semvlp-scratch-cls "$E" 1000 --scratch --set method=semvlp --set "model=${SEM/\"pool\":\"mean\"/\"pool\":\"cls\"}"
ft exist-semvlp-scratch-init02 "$E" 1000 --scratch --set method=semvlp --set "model=${SEM/0.05/0.2}"
[ -d experiments/runs/pretrain/semvlp-both ] && ft exist-semvlp-both "$E" 1000 --from experiments/runs/pretrain/semvlp-both
# 3. transfer: VQA (3,000 steps) and NLVR2 (1,000) from a small run against the same model from scratch,
#    2 seeds each. SemVLP-small (S4: the tiny model, 4,000 steps, held-out ITM 0.854; its scratch VQA runs
#    are group A's of experiments/RESULTS-vqa3000.md) and MSP-small (M8; data/world-small is the same
#    world as data/world-demo).
transfer() { # TAG RUN SCRATCH_NAME METHOD MODEL
  local tag=$1 run=$2 scratch=$3 method=$4 model=$5 s
  for s in 0 1; do
    ft "$tag-s$s" data/world-small 3000 --from "$run" --set train.seed=$s
    ft "$scratch-s$s" data/world-small 3000 --scratch --set method="$method" --set "model=$model" --set train.seed=$s
    ftask nlvr2 "nlvr2-$tag-s$s" data/world-small 1000 --from "$run" --set train.seed=$s
    ftask nlvr2 "nlvr2-$scratch-s$s" data/world-small 1000 --scratch --set method="$method" --set "model=$model" --set train.seed=$s
  done
}
ES=$OUT/world-small-exist
if [ -f "$S4/model.safetensors" ]; then
  ft exist-s4 "$ES" 1000 --from "$S4"
  transfer s4 "$S4" semvlp-scratch semvlp "$SEM"
fi
if [ -f "$M8/model.safetensors" ]; then
  MSP=$(node -e "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync('$M8/recipe.json','utf8')).model))")
  ft exist-m8 "$ES" 1000 --from "$M8"
  ft exist-m8-lr1e-4 "$ES" 1000 --from "$M8" --set train.lr=1e-4
  ft exist-msp-scratch "$ES" 1000 --scratch --set method=msp --set "model=$MSP"
  transfer m8 "$M8" msp-scratch msp "$MSP"
fi
# 4. other pre-training runs, VQA fine-tuned once (seed 0): S4's recipe with pre-training seed 1, and
#    recipes/msp-small.json as shipped (M6: 3,000 sentence steps) with pre-training seeds 0 and 1
for r in "s4b:$S4B" "m6:$M6" "m6b:$M6B"; do
  if [ -f "${r#*:}/model.safetensors" ]; then ft "${r%%:*}-s0" data/world-small 3000 --from "${r#*:}" --set train.seed=0; fi
done
