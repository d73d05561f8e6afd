"""Trainer side of the weight sync: the streams of (name, tensor) that go to the rollout engines.

`SyncSender(handle, module, mode)` holds the sync state of one trainer (sync count, whether the rollout
already holds a complete set of weights, the last stream's size) and builds every stream from the
adapter (`handle`) and the module it wraps. Pure torch: the verl engine calls it from its
`get_per_tensor_param` hook (verl_seam/engine.py), and benchmarks and tests use it on a plain module.

`stream(weights)` is the next sync, where `weights()` gives every weight under the module's own names
(verl's FSDP stream in the engine, the state dict on a plain module); it is called only when the sync
must carry every weight:

* mode `full`: the first sync (kind "full") is every weight under its HF name, `.base_layer.` removed,
  the v container dropped and each adapted weight replaced by W_base + ΔW(v); every later sync (kind
  "delta") only the adapted weights plus the unadapted members of the vLLM layers they are fused into
  (q/k/v -> qkv_proj, gate/up -> gate_up_proj), each computed out of place from the untouched base.
* mode `vector`: the first sync (kind "setup") is the pristine weights, the frozen factors and v; every
  later one (kind "vector") only v and the sync number. The rollout workers rebuild the merged weights
  (receiver.py).
* `resend_all`: the rollout engines discard their weights between syncs (vLLM level-2 sleep, sleep.py),
  so every sync is the complete stream of its mode. `resend()` makes only the next one complete (after
  a checkpoint load the rollout may hold other weights).

Every stream starts with a meta tensor naming its kind and sync number (the receiver's guard; wire.py)
and is counted as it is consumed (`last`: mode, kind, sync, tensors, bytes). Under FSDP2, v and each base
weight are all-gathered (`full`) in the same order on every rank: consume the stream on every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch.distributed.tensor import DTensor

from ..adapter.functional import merged_weight
from ..adapter.model import CONTAINER
from . import check_sync_mode, wire

# vLLM fuses these HF projections into one layer; a layer must be reloaded with all of its parts.
FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

Weights = Iterable[tuple[str, torch.Tensor]]


def full(t: torch.Tensor, device=None) -> torch.Tensor:
    """The whole tensor: all-gathers a DTensor (a collective: call it on every rank in the same order).

    The shard moves to `device` (the compute device) first, as verl's own stream does: with FSDP2 CPU
    offload the shards live on the host, and NCCL cannot gather host tensors."""
    if isinstance(t, DTensor):
        return (t.to(device) if device is not None else t).full_tensor()
    return t


def _hf_weights(weights: Weights) -> Iterator[tuple[str, torch.Tensor]]:
    """The module's weights under their HF names: `.base_layer.` removed, the v container dropped."""
    for name, tensor in weights:
        if name.startswith(CONTAINER + ".") or f".{CONTAINER}." in name:
            continue
        yield name.replace(".base_layer.", "."), tensor


class SyncSender:
    def __init__(
        self, handle, module: torch.nn.Module, mode: str = "full", resend_all: bool = False, device=None
    ):
        self.handle = handle  # TinyLoRAHandle: its layers, factors and v
        self.module = module  # the wrapped model (sharded by FSDP2 in the engine)
        self.mode = check_sync_mode(mode)
        self.resend_all = resend_all
        # where shards are gathered and merges computed (the engine's device; the module's on a plain one)
        self.device = torch.device(device) if device is not None else next(module.parameters()).device
        self.count = 0  # syncs started, sent in each stream's meta
        self.complete_sent = False  # the rollout holds a complete set of weights from this sender
        self.last: dict = {}  # the last stream: mode, kind, sync, tensors, bytes (as consumed)

    # ---- what the streams are made of ----------------------------------------------------------
    def vectors(self) -> list[torch.Tensor]:
        """v of every group, unsharded, detached (collective under FSDP2)."""
        return [full(p.detach(), self.device).clone() for p in self.handle.vectors.v]

    def merged(self, name: str, vectors: list[torch.Tensor]) -> torch.Tensor:
        """dtype(W_base + ΔW(v)) of the adapted module `name`, out of place, from `vectors` (= vectors())."""
        layer = self.handle.layers[name]
        return merged_weight(
            full(layer.base_layer.weight.detach(), self.device),
            layer.tinylora_U,
            layer.tinylora_S,
            layer.tinylora_V,
            layer.tinylora_P,
            vectors[layer.group],
            layer.alpha,
        )

    def delta_modules(self) -> list[str]:
        """Adapted modules plus unadapted members of the fused vLLM layers they sit in, model order."""
        wanted = set(self.handle.layers)
        for name in list(wanted):
            prefix, _, leaf = name.rpartition(".")
            for group in FUSED_SIBLINGS:
                if leaf in group:
                    wanted.update(f"{prefix}.{s}" for s in group)
        return [n for n, _ in self.module.named_modules() if n in wanted]

    # ---- the next sync -------------------------------------------------------------------------
    def stream(self, weights: Callable[[], Weights] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The next sync's stream; `weights()` (every weight, the module's names; default: the module's
        state dict, right for a plain module) is read only for a complete one. Counted in `last` as it
        is consumed."""
        weights = weights or self._state_dict
        self.count += 1
        if not self.complete_sent or self.resend_all:
            self.complete_sent = True
            kind = "setup" if self.mode == "vector" else "full"
            body = self._setup(weights()) if kind == "setup" else self._complete(weights())
        elif self.mode == "vector":
            kind, body = "vector", self._vector()
        else:
            kind, body = "delta", self._delta()
        return self._counted(body, kind)

    def resend(self) -> None:
        """The next sync is complete again (the rollout engines may hold other weights, e.g. after a
        checkpoint load)."""
        self.complete_sent = False

    def verify_stream(self, weights: Weights | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """What the rollout engines should hold now, as a *verify* stream (compared there, never loaded):
        every weight (`weights`, default the module's state dict), adapted ones merged. Not counted;
        does not advance the sync."""
        weights = self._state_dict() if weights is None else weights
        yield wire.META, wire.encode_meta({"kind": "verify", "sync": self.count})
        yield from self._merged_weights(weights)

    # ---- the streams -----------------------------------------------------------------------------
    def _state_dict(self) -> Weights:
        return self.module.state_dict().items()

    def _meta(self, kind: str, **extra) -> tuple[str, torch.Tensor]:
        return wire.META, wire.encode_meta({"kind": kind, "sync": self.count, **extra})

    def _merged_weights(self, weights: Weights):
        """Every weight under its HF name, adapted ones merged."""
        vectors = self.vectors()
        for name, tensor in _hf_weights(weights):
            module = name.rsplit(".", 1)[0]
            if module in self.handle.layers and name.endswith(".weight"):
                tensor = self.merged(module, vectors)
            yield name, tensor

    def _complete(self, weights: Weights):
        yield self._meta("full")
        yield from self._merged_weights(weights)

    def _delta(self):
        vectors = self.vectors()
        yield self._meta("delta")
        for name in self.delta_modules():
            if name in self.handle.layers:
                yield f"{name}.weight", self.merged(name, vectors)
            else:
                yield f"{name}.weight", full(self.module.get_submodule(name).weight.detach(), self.device)

    def _setup(self, weights: Weights):
        """vector mode, complete: meta, factors, every weight (adapted ones = pristine base), then v."""
        vectors = self.vectors()
        layers = self.handle.layers
        yield self._meta(
            "setup",
            groups=len(vectors),
            u=vectors[0].numel(),
            modules=[[name, layer.group, layer.alpha] for name, layer in layers.items()],
            siblings=[n for n in self.delta_modules() if n not in layers],
        )
        for name, layer in layers.items():
            for f in wire.FACTOR_NAMES:
                yield wire.factor_name(name, f), getattr(layer, f"tinylora_{f}")
        yield from _hf_weights(weights)
        yield wire.VECTOR, torch.stack(vectors)

    def _vector(self):
        """vector mode, every later sync: the sync number and v, nothing else."""
        yield self._meta("vector")
        yield wire.VECTOR, torch.stack(self.vectors())

    def _counted(self, stream, kind: str):
        stats = {"mode": self.mode, "kind": kind, "sync": self.count, "tensors": 0, "bytes": 0}
        self.last = stats
        for name, tensor in stream:
            stats["tensors"] += 1
            stats["bytes"] += tensor.numel() * tensor.element_size()
            yield name, tensor
