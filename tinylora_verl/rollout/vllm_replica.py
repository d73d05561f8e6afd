"""The vLLM rollout replica whose engine workers use `TinyLoRAWorkerExtension`.

verl picks the rollout replica class through `RolloutReplicaRegistry` ("vllm"), the replica starts
`vLLMHttpServer` actors, and each server names the worker extension class its vLLM workers inherit
(`_get_worker_extension_cls`). Overriding that one method is all that changes. Two callers register it:
the CPU platform (`tinylora_verl.cpu_platform`, CPU weight loading: always) and, on GPU platforms, the
task runner when `tinylora.sync_mode: vector` (the workers must understand the vector stream);
`register_tinylora_vllm_replica()` does it.
"""

from __future__ import annotations

import ray

EXTENSION = "tinylora_verl.rollout.vllm_worker.TinyLoRAWorkerExtension"


def tinylora_vllm_replica_class():
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

    class TinyLoRAvLLMHttpServer(vLLMHttpServer):
        def _get_worker_extension_cls(self) -> str:
            return EXTENSION

    class TinyLoRAvLLMReplica(vLLMReplica):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.server_class = ray.remote(TinyLoRAvLLMHttpServer)

    return TinyLoRAvLLMReplica


def register_tinylora_vllm_replica() -> None:
    """Make `RolloutReplicaRegistry.get("vllm")` return our replica in this process."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry
    RolloutReplicaRegistry.register("vllm", tinylora_vllm_replica_class)
