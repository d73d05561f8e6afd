"""Rollout side of `sync_mode: vector`: keep the base weights and factors, rebuild merged weights from v.

One `VectorSyncReceiver` lives in each vLLM worker (tinylora_verl/rollout/vllm_worker.py). For every
sync the worker calls `begin()`, feeds each received bucket to `consume()` (which returns the tensors
to load unchanged and keeps the TinyLoRA ones), then loads what `finish()` returns.

* setup stream: the adapted modules' pristine base weights (and their fused siblings') are kept on the
  host — in bfloat16 when that is lossless, as it is for a bf16 checkpoint — with U, S, V, P;
* vector stream: only v arrives; `finish()` recomputes dtype(W_base + ΔW(v)) for every adapted module
  with the trainer's own function (`adapter.functional.merged_weight`, same inputs, same dtype), so the
  result is bit-identical to what `sync_mode: full` sends. Full HF tensors are produced and vLLM's own
  weight loaders shard them, so tensor-parallel workers each keep the slice they own. `finish()` checks
  everything first, then yields one merged module at a time: the caller loads each before the next is
  built, so the extra memory is one module's merge, not the model's (bench/receiver_memory.py).

It also guards the engine's weights across vLLM's sleep: after a level-2 sleep (which discards every
weight; `weights_discarded()` is called by the server or the CPU sleep emulation) a partial stream
(`delta`, `vector`) is refused — only a complete one (`full`, `setup`, or a plain verl stream) may follow.
"""

from __future__ import annotations

import logging
import time

import torch

from ..adapter.functional import merged_weight
from . import wire

logger = logging.getLogger(__name__)


def compact(t: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """A host copy of t, in bfloat16 when that round-trips exactly; with the dtype to restore."""
    host = t.detach().to("cpu", copy=True)
    if host.dtype == torch.float32:
        small = host.to(torch.bfloat16)
        if torch.equal(small.to(torch.float32), host):
            return small, torch.float32
    return host, host.dtype


class VectorSyncReceiver:
    def __init__(self):
        self.modules: list[tuple[str, int, float]] = []  # (module, group, alpha), model order
        self.siblings: list[str] = []
        self.base: dict[str, tuple[torch.Tensor, torch.dtype]] = {}
        self.factors: dict[str, dict[str, torch.Tensor]] = {}
        self._meta: dict | None = None
        self._v: torch.Tensor | None = None
        self._kept_names: set[str] = set()
        self.last: dict = {}
        self.discarded = False  # a level-2 sleep discarded the engine's weights; no complete sync since

    @property
    def ready(self) -> bool:
        return bool(self.modules) and all(f"{m}.weight" in self.base for m, _, _ in self.modules)

    def begin(self) -> None:
        self._meta, self._v = None, None

    def weights_discarded(self) -> None:
        """The engine's weights were discarded (vLLM level-2 sleep): only a complete stream may load next."""
        self.discarded = True

    def consume(self, bucket) -> list[tuple[str, torch.Tensor]]:
        """Keep the TinyLoRA tensors of one received bucket; return the others (to be loaded as they are)."""
        passthrough = []
        for name, tensor in bucket:
            if name == wire.META:
                self._start(wire.decode_meta(tensor))
            elif name == wire.VECTOR:
                self._v = tensor.detach().to("cpu", torch.float32, copy=True)
            elif name.startswith(wire.PREFIX):
                if not name.startswith(wire.FACTOR) or not self._is_setup:
                    raise ValueError(
                        f"unexpected TinyLoRA control tensor {name!r} in a "
                        f"{(self._meta or {}).get('kind', 'plain')} stream"
                    )
                module, factor = wire.split_factor_name(name)
                self.factors.setdefault(module, {})[factor] = tensor.detach().to("cpu", copy=True)
            elif self._is_setup and name in self._kept_names:
                self.base[name] = compact(tensor)
            else:
                passthrough.append((name, tensor))
        return passthrough

    @property
    def kind(self) -> str | None:
        """The current stream's kind (None for a plain verl stream)."""
        return (self._meta or {}).get("kind")

    @property
    def _is_setup(self) -> bool:
        return self._meta is not None and self._meta["kind"] == "setup"

    def _start(self, meta: dict) -> None:
        self._meta = meta
        if meta["kind"] in wire.PARTIAL_KINDS and self.discarded:
            raise RuntimeError(
                f"TinyLoRA {meta['kind']} sync refused: this rollout engine's weights were discarded "
                "by a level-2 sleep, and a partial stream would leave every other weight as garbage. "
                "The trainer must send a complete stream (full/setup) after a level-2 sleep, or the "
                "engine must sleep at level 1 (tinylora_verl/sync/sleep.py)"
            )
        if meta["kind"] == "setup":
            self.modules = [(m, int(g), float(a)) for m, g, a in meta["modules"]]
            self.siblings = list(meta["siblings"])
            self.base, self.factors = {}, {}
            self._kept_names = {f"{m}.weight" for m, _, _ in self.modules} | {
                f"{s}.weight" for s in self.siblings
            }
        elif meta["kind"] == "vector" and not self.ready:
            raise RuntimeError(
                "TinyLoRA vector sync: this rollout worker holds no base weights/factors (it was "
                "restarted or never received a setup sync); restart the job from its checkpoint, "
                "which sends a setup sync first"
            )

    def finish(self, device: torch.device | str = "cpu"):
        """The tensors still to load for this sync, as an iterator (one module built at a time): for a vector
        stream the merged adapted weights and their siblings' base weights; empty for other streams.

        Every check runs here, before anything is yielded; a complete stream clears `discarded`.
        """
        kind = (self._meta or {}).get("kind")
        if kind in (None, *wire.COMPLETE_KINDS):
            self.discarded = False  # a plain verl stream, like full/setup, rewrites every weight
        if kind is None:
            return iter(())
        if self._v is None and kind in ("setup", "vector"):
            raise ValueError("TinyLoRA sync stream ended without tinylora_sync.v")
        if kind not in ("setup", "vector"):
            if kind != "verify":
                self.last = {"kind": kind, "sync": self._meta.get("sync")}
            return iter(())
        missing = [
            m
            for m, _, _ in self.modules
            if f"{m}.weight" not in self.base or len(self.factors.get(m, {})) != 4
        ]
        if missing:
            raise ValueError(
                f"TinyLoRA setup stream incomplete: no base weight or factors for {missing[:3]} "
                f"({len(missing)} modules)"
            )
        groups, u = self._v.shape
        for module, group, _alpha in self.modules:
            if not 0 <= group < groups or self.factors[module]["P"].shape[0] != u:
                raise ValueError(
                    f"v has shape {tuple(self._v.shape)} but module {module} expects group {group} "
                    f"and u={self.factors[module]['P'].shape[0]}"
                )
        return self._rebuild(device, kind)

    @torch.no_grad()
    def _rebuild(self, device, kind: str):
        start = time.perf_counter()
        for module, group, alpha in self.modules:
            stored, dtype = self.base[f"{module}.weight"]  # stored may be the lossless bf16 of a float32 W
            f = self.factors[module]
            merged = merged_weight(
                stored.to(device), f["U"], f["S"], f["V"], f["P"], self._v[group], alpha, out_dtype=dtype
            )
            yield f"{module}.weight", merged
            del merged
        for sibling in self.siblings:
            stored, dtype = self.base[f"{sibling}.weight"]
            yield f"{sibling}.weight", stored.to(device).to(dtype)
        self.last = {
            "kind": kind,
            "sync": self._meta.get("sync"),
            "modules": len(self.modules),
            "merge_s": time.perf_counter() - start,
        }
