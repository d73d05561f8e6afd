"""vLLM's sleep mode on CPU, with the GPU's semantics: level 1 keeps the weights, level 2 discards them.

On GPU, `Worker.sleep(level)` frees the engine's device memory through the CuMem allocator: level 1
offloads the weights to host memory and restores them on `wake_up`; level 2 discards them (their memory
holds whatever the allocator hands out on wake-up) and restores only the model's buffers, so the next
weight sync must rewrite every weight. vLLM's CPU worker ignores sleep ("not supported on CPU"), and
its config refuses `enable_sleep_mode`, so a CPU run used to keep every weight — and a sync that
rewrote only some of them looked correct on CPU while it served garbage on GPU.

This module is a vLLM general plugin (entry point group `vllm.general_plugins`, loaded by vLLM in every
process that builds an engine config or a worker), gated like the verl CPU platform on
`VERL_PLATFORM=cpu`. It
* lets the CPU platform accept `enable_sleep_mode` (vLLM's `ModelConfig` check);
* gives `CPUWorker` a `sleep`/`wake_up` with the GPU worker's semantics:
  - level 1: weights kept (the GPU offloads and restores them bit for bit);
  - level 2: the buffers are saved (as the GPU worker does) and **every weight is overwritten with
    NaN** through vLLM's own `reload_weights` (so packed CPU kernels see it too); `wake_up` restores
    the buffers and nothing else. A sync that does not rewrite every weight then generates NaN.
  The KV cache is not overwritten: on GPU its memory is also uninitialised after wake-up, but vLLM
  never reads a block before writing it and the prefix cache is reset on wake-up (docs/gpu.md).
  The worker's TinyLoRA receiver (if any) is told that the weights were discarded, so a partial sync
  on top of them is refused (tinylora_verl/sync/receiver.py).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

LEVELS = (1, 2)


def enabled() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def register() -> None:
    """vLLM general-plugin entry: patch the CPU platform and worker (idempotent, gated)."""
    if not enabled():
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.platforms.cpu import CpuPlatform
    from vllm.v1.worker.cpu_worker import CPUWorker

    if getattr(CPUWorker, "_tinylora_sleep", False):
        return
    CpuPlatform.is_sleep_mode_available = lambda self: True
    CPUWorker.sleep = sleep
    CPUWorker.wake_up = wake_up
    CPUWorker._tinylora_sleep = True


def sleep(self, level: int = 1) -> None:
    """CPUWorker.sleep with GPU semantics (see the module docstring)."""
    import torch

    if level not in LEVELS:
        raise ValueError(f"vLLM sleep level {level!r}: levels are {LEVELS}")
    model = self.model_runner.model
    if level == 2:
        self._sleep_saved_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        discard_weights(self)
    sleeps = getattr(self, "tinylora_sleeps", None) or {}
    sleeps[str(level)] = sleeps.get(str(level), 0) + 1
    self.tinylora_sleeps = sleeps  # read by the tests through tinylora_receiver_state
    receiver = getattr(self, "tinylora_receiver", None)
    if receiver is not None and level == 2:
        receiver.weights_discarded()
    logger.info(
        "cpu sleep emulation: level %d (%s)",
        level,
        "weights overwritten with NaN" if level == 2 else "weights kept",
    )
    torch.cpu.synchronize()


def wake_up(self, tags: list[str] | None = None) -> None:
    """CPUWorker.wake_up: level 2 restores the saved buffers (as the GPU worker does), never the weights."""
    if tags is None or "weights" in tags:
        saved = getattr(self, "_sleep_saved_buffers", None) or {}
        if saved:
            for name, buffer in self.model_runner.model.named_buffers():
                if name in saved:
                    buffer.data.copy_(saved[name])
            self._sleep_saved_buffers = {}


def discard_weights(worker) -> int:
    """Overwrite every checkpoint tensor of the worker's model with NaN, through `reload_weights`."""
    import torch

    from .vllm_weights import weight_specs

    specs = weight_specs(worker.model_runner.model)
    nan = ((name, torch.full(shape, float("nan"), dtype=dtype)) for name, shape, dtype in specs)
    worker.reload_weights(weights_iterator=nan, is_checkpoint_format=True)
    return len(specs)
