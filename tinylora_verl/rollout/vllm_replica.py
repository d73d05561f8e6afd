"""The vLLM rollout replica whose engine workers use `TinyLoRAWorkerExtension`, and sleep as TinyLoRA needs.

verl picks the rollout replica class through `RolloutReplicaRegistry` ("vllm"), the replica starts
`vLLMHttpServer` actors, and each server names the worker extension class its vLLM workers inherit
(`_get_worker_extension_cls`). Our server changes three things:
* the worker extension (ours: CPU weight loading, the TinyLoRA stream receiver, verification dumps);
* the sleep level between rollouts: never deeper than `sleep_level` (sync/sleep.py: 1 for `vector`
  syncs, so the engine keeps the weights the v-only stream builds on; 2, verl's default, for `full`);
* after a level-2 sleep the workers are told their weights are gone (`tinylora_weights_discarded`), so
  their receiver refuses a partial stream instead of serving garbage.
The task runner registers it whenever a tinylora block is on (tinylora_verl/verl_seam/trainer.py), with
the run's sleep level; the CPU platform registers it too (CPU weight loading), with verl's level.
"""

from __future__ import annotations

import ray

EXTENSION = "tinylora_verl.rollout.vllm_worker.TinyLoRAWorkerExtension"


def tinylora_vllm_replica_class(sleep_level: int | None = None):
    """Our replica class; `sleep_level` caps the level verl would choose (None: verl's choice)."""
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

    class TinyLoRAvLLMHttpServer(vLLMHttpServer):
        tinylora_sleep_level = sleep_level

        def _get_worker_extension_cls(self) -> str:
            return EXTENSION

        def _resolve_sleep_level(self) -> int:
            level = super()._resolve_sleep_level()
            return level if self.tinylora_sleep_level is None else min(level, self.tinylora_sleep_level)

        async def _sleep_hybrid(self):
            await super()._sleep_hybrid()
            if self._resolve_sleep_level() >= 2:
                await self.engine.collective_rpc("tinylora_weights_discarded")

    class TinyLoRAvLLMReplica(vLLMReplica):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.server_class = ray.remote(TinyLoRAvLLMHttpServer)

    return TinyLoRAvLLMReplica


def register_tinylora_vllm_replica(sleep_level: int | None = None) -> None:
    """Make `RolloutReplicaRegistry.get("vllm")` return our replica in this process."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register("vllm", lambda: tinylora_vllm_replica_class(sleep_level))
