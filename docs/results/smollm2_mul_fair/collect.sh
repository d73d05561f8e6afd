#!/bin/bash
# Copy the records of the sweep's finished runs into runs/ here (the repository keeps them; the sweep
# directory, with its checkpoints, does not survive the machine): run.json, result.json, the training
# metrics and the evaluation summary. Safe to run at any time, as often as needed.
#
#   OUT=/work/fair/sweep bash docs/results/smollm2_mul_fair/collect.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:?set OUT to the sweep directory}
n=0
for d in "$OUT"/runs/*/; do
  grep -q '"status": "finished"' "$d/result.json" 2>/dev/null || continue
  name=$(basename "$d")
  dest="$HERE/runs/$name"
  mkdir -p "$dest"
  cp "$d/run.json" "$d/result.json" "$dest/"
  for f in sft_metrics.jsonl verl/tinylora_metrics.jsonl eval/summary.csv; do
    [ -f "$d/$f" ] && cp "$d/$f" "$dest/$(basename "$f")"
  done
  n=$((n + 1))
done
echo "collect: $n finished runs copied to $HERE/runs"
