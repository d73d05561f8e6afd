"""The vLLM rollout replica whose engine workers use `TinyLoRAWorkerExtension`, and sleep as TinyLoRA needs.

verl picks the rollout replica class through `RolloutReplicaRegistry` ("vllm"), the replica starts
`vLLMHttpServer` actors, and each server names the worker extension class its vLLM workers inherit
(`_get_worker_extension_cls`). Our server changes three things:
* the worker extension (ours: CPU weight loading, the TinyLoRA stream receiver, verification dumps);
* the sleep level between rollouts: never deeper than `sleep_level` (sync/sleep.py: 1 for `vector`
  syncs, so the engine keeps the weights the v-only stream builds on; 2, verl's default, for `full`);
* after a level-2 sleep the workers are told their weights are gone (`tinylora_weights_discarded`), so
  their receiver refuses a partial stream instead of serving garbage;
* with `tinylora.reproducible=true` (`seeded`), every request gets its own sampling seed, a hash of (rollout.seed, replica rank, the step of the weights it is
  served with, its prompt, how many requests for that prompt came before it at that step). Without it,
  vLLM draws unseeded requests' noise from the engine's one random stream (on CPU:
  `TopKTopPSampler.forward_cpu`, `torch.randint` per decode step), which restarts from `seed` with each
  engine: a run resumed from a checkpoint then samples step k+1 from a fresh stream, the uninterrupted run
  from the stream after k steps of rollouts, and the two diverge. verl's own `rollout.full_determinism`
  gives every request the same seed (`vLLMHttpServer.generate`), so the n samples of a GRPO group would
  be identical. Off by default: on GPU vLLM samples seeded requests one row at a time.
The task runner registers it whenever a tinylora block is on (tinylora_verl/verl_seam/trainer.py), with
the run's sleep level; the CPU platform registers it too (CPU weight loading), with verl's level.
"""

from __future__ import annotations

import hashlib
import json

import ray

EXTENSION = "tinylora_verl.rollout.vllm_worker.TinyLoRAWorkerExtension"


class RequestSeeds:
    """Per-request sampling seeds that depend only on what the request is, not on when it arrives: the
    k-th request for a prompt at a weights step gets hash(seed, replica, step, prompt, k)."""

    def __init__(self, seed: int, replica_rank: int):
        self.base = [int(seed), int(replica_rank)]
        self.step = None
        self.seen: dict[tuple[int, ...], int] = {}

    def __call__(self, step, prompt_ids) -> int:
        if step != self.step:  # a new weights version: counts start again
            self.step, self.seen = step, {}
        key = tuple(int(t) for t in prompt_ids)
        k = self.seen.get(key, 0)
        self.seen[key] = k + 1
        digest = hashlib.sha256(json.dumps([*self.base, step, k, list(key)]).encode()).digest()
        return int.from_bytes(digest[:8], "little") % 2**31


def tinylora_vllm_replica_class(sleep_level: int | None = None, seeded: bool = False):
    """Our replica class; `sleep_level` caps the level verl would choose (None: verl's choice); `seeded`:
    per-request sampling seeds (RequestSeeds)."""
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

    class TinyLoRAvLLMHttpServer(vLLMHttpServer):
        tinylora_sleep_level = sleep_level
        tinylora_seeded = seeded

        def _get_worker_extension_cls(self) -> str:
            return EXTENSION

        def _resolve_sleep_level(self) -> int:
            level = super()._resolve_sleep_level()
            return level if self.tinylora_sleep_level is None else min(level, self.tinylora_sleep_level)

        async def generate(self, prompt_ids, sampling_params, request_id, **kwargs):
            if self.tinylora_seeded and "seed" not in sampling_params:
                if getattr(self, "_tinylora_seeds", None) is None:
                    self._tinylora_seeds = RequestSeeds(self.config.seed, self.replica_rank)
                seed = self._tinylora_seeds(self.global_steps, prompt_ids)
                sampling_params = {**sampling_params, "seed": seed}
            return await super().generate(
                prompt_ids=prompt_ids, sampling_params=sampling_params, request_id=request_id, **kwargs
            )

        async def _sleep_hybrid(self):
            await super()._sleep_hybrid()
            if self._resolve_sleep_level() >= 2:
                await self.engine.collective_rpc("tinylora_weights_discarded")

    class TinyLoRAvLLMReplica(vLLMReplica):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.server_class = ray.remote(TinyLoRAvLLMHttpServer)

    return TinyLoRAvLLMReplica


def register_tinylora_vllm_replica(sleep_level: int | None = None, seeded: bool = False) -> None:
    """Make `RolloutReplicaRegistry.get("vllm")` return our replica in this process."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register("vllm", lambda: tinylora_vllm_replica_class(sleep_level, seeded))
