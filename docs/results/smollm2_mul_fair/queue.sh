#!/bin/bash
# The fair replication's sweeps, one after another, into one sweep directory. Each sweep is resumable:
# running this script again skips finished runs and reruns interrupted ones.
#
#   OUT=/path/to/sweep CODE=/path/to/a/checkout bash docs/results/smollm2_mul_fair/queue.sh
#
# CODE: the checkout whose code the runs use (default: this one). Run them from a clone pinned at one
# commit, so that editing this checkout while the sweeps run (hours) cannot change runs half-way.
# SPECS: which specs, in order (default below: the RL baselines' seed 0 first, to see their LR grids early).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
CODE=${CODE:-$(cd "$HERE/../../.." && pwd)}
OUT=${OUT:?set OUT to the sweep directory}
PY=${PY:-$CODE/.venv/bin/python}
for spec in ${SPECS:-rl_1b rl_1 sft_matched sft_converged rl_2}; do
  echo "== $(date -u +%FT%TZ) $spec" >> "$OUT.queue.log"
  (cd "$CODE" && PYTHONPATH=$CODE nice -n 5 "$PY" -m tinylora_verl.cli sweep --out "$OUT" \
    --spec "$HERE/$spec.yaml") >> "$OUT.$spec.log" 2>&1
  echo "== $(date -u +%FT%TZ) $spec exit $?" >> "$OUT.queue.log"
done
