#!/bin/bash
# Disk, while queue.sh runs (one RL run leaves 0.5-2.5 GB): delete the bulky weights of finished runs —
# verl's optimizer shards everywhere, the TinyLoRA runs' model shards (their adapter is kept) and the bf16
# merged copies of LoRA / full runs. Their float32 model shards stay (the update's size is measured from
# them). The records, metrics, eval samples and adapters stay. Loops until killed.
#
#   OUT=/path/to/sweep bash docs/results/smollm2_mul_fair/prune.sh &
set -u
OUT=${OUT:?set OUT to the sweep directory}
while true; do
  for d in "$OUT"/runs/*/; do
    grep -q '"status": "finished"' "$d/result.json" 2>/dev/null || continue
    rm -f "$d"/verl/global_step_*/actor/optim_world_size_*.pt "$d"/model/*.safetensors
    case "$(basename "$d")" in
      *-tinylora*) rm -f "$d"/verl/global_step_*/actor/model_world_size_*.pt ;;
    esac
  done
  sleep 300
done
