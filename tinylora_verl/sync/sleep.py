"""Which vLLM sleep level a TinyLoRA run uses, and whether each sync must then rewrite every weight.

verl's sync trainer puts the rollout engines to sleep after every rollout (`free_cache_engine`, with
vLLM's sleep mode) and wakes them for the next weight sync. vLLM's level 2 *discards* every weight
(verl's default: `vLLMHttpServer._resolve_sleep_level`), level 1 offloads them to host memory and
restores them. A partial stream (only the adapted weights, or only v) is correct only on an engine that
kept its weights. The rule, per sync mode:

* `full`: level 2 (verl's default: nothing of the engine stays in device or host memory) and every sync
  is a complete stream (all weights, adapted ones merged). At Qwen2.5-7B in bf16 that is 15.2 GB a step
  instead of the 13.1 GB of the adapted weights and their fused siblings (docs/gpu.md, "Sleep").
* `vector`: level 1: the engine keeps its weights (vLLM offloads them to host memory while asleep), so
  a step's sync stays v alone (~100 bytes); the price is a host copy of the weights (15.2 GB for
  Qwen2.5-7B) and a device<->host copy of them around every sleep.

Our vLLM server (tinylora_verl/rollout/vllm_replica.py) sleeps at `sleep_level(sync_mode)` (or lower, when
verl's own rule asks for level 1) and tells its workers when a level-2 sleep discarded their weights; the
workers' receiver refuses a partial stream after that (sync/receiver.py).
"""

from __future__ import annotations

from . import check_sync_mode


def sleep_level(sync_mode: str) -> int:
    """The vLLM sleep level our rollout servers use between rollouts for this sync mode."""
    return 1 if check_sync_mode(sync_mode) == "vector" else 2


def rollout_discards_weights(rollout_config, sync_mode: str) -> bool:
    """True when the rollout engines lose their weights between syncs (so every sync must be complete)."""
    sleeps = bool(rollout_config.get("enable_sleep_mode", True)) and bool(
        rollout_config.get("free_cache_engine", False)
    )
    return sleeps and sleep_level(sync_mode) >= 2
