#!/usr/bin/env bash
# Runs the comparison groups in order of importance (each resumes what is already done): every group
# with the first seed, then group A's second seed; then writes the combined table
# (experiments/RESULTS.md). Usage: bash experiments/run-all.sh [--jobs N]
set -euo pipefail
cd "$(dirname "$0")/.."
for g in A D C B; do node --import tsx experiments/compare.ts --world data/world-demo --pretrain-scale 4 --groups "$g" --seeds 0 --table "/tmp/vlp-compare-$g.md" "$@"; done
node --import tsx experiments/compare.ts --world data/world-demo --pretrain-scale 4 --groups A --seeds 0,1 --table /tmp/vlp-compare-A2.md "$@"
node --import tsx experiments/compare.ts --world data/world-demo --pretrain-scale 4 --groups A,B,C,D --seeds 0,1 "$@"
