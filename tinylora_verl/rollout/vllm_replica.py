"""The vLLM rollout replica whose engine workers use `TinyLoRAWorkerExtension` (CPU weight loading).

verl picks the rollout replica class through `RolloutReplicaRegistry` ("vllm"), the replica starts
`vLLMHttpServer` actors, and each server names the worker extension class its vLLM workers inherit
(`_get_worker_extension_cls`). Overriding that one method is all that changes; the CPU platform
(`tinylora_verl.cpu_platform`) registers this replica for "vllm" when `VERL_PLATFORM=cpu`.
"""

from __future__ import annotations

import ray

EXTENSION = "tinylora_verl.rollout.vllm_worker.TinyLoRAWorkerExtension"


def cpu_vllm_replica_class():
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

    class TinyLoRAvLLMHttpServer(vLLMHttpServer):
        def _get_worker_extension_cls(self) -> str:
            return EXTENSION

    class TinyLoRAvLLMReplica(vLLMReplica):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.server_class = ray.remote(TinyLoRAvLLMHttpServer)

    return TinyLoRAvLLMReplica
