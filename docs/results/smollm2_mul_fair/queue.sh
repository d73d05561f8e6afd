#!/bin/bash
# The fair replication's sweeps, one after another, into one sweep directory. Each sweep is resumable:
# running this script again skips finished runs and reruns interrupted ones.
#
#   OUT=/path/to/sweep CODE=/path/to/a/checkout bash docs/results/smollm2_mul_fair/queue.sh
#
# CODE: the checkout whose code the runs use (default: this one). Run them from a clone pinned at one
# commit, so that editing this checkout while the sweeps run (hours) cannot change runs half-way.
# SPECS: which specs, in order (default below: RL, then SFT at matched visits, then SFT to convergence).
# The records kept in runs/ here (collect.sh) are copied into OUT first, so a new machine resumes where the
# last one stopped — when they were made with the same OUT (their run.json names OUT's data files).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
CODE=${CODE:-$(cd "$HERE/../../.." && pwd)}
OUT=${OUT:?set OUT to the sweep directory}
PY=${PY:-$CODE/.venv/bin/python}
for d in "$HERE"/runs/*/; do
  [ -d "$d" ] || continue
  dest="$OUT/runs/$(basename "$d")"
  [ -e "$dest/result.json" ] && continue
  if ! grep -q "\"$OUT/data/" "$d/run.json"; then
    echo "queue: $d was made with another OUT; not restored (the sweep reruns it)" >&2
    continue
  fi
  mkdir -p "$dest" && cp "$d/run.json" "$d/result.json" "$dest/"
done
for spec in ${SPECS:-rl sft_matched sft_converged}; do
  echo "== $(date -u +%FT%TZ) $spec" >> "$OUT.queue.log"
  (cd "$CODE" && PYTHONPATH=$CODE nice -n 5 "$PY" -m tinylora_verl.cli sweep --out "$OUT" \
    --spec "$HERE/$spec.yaml") >> "$OUT.$spec.log" 2>&1
  echo "== $(date -u +%FT%TZ) $spec exit $?" >> "$OUT.queue.log"
done
