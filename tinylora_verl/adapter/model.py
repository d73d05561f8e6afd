"""Injection: wrap a model's target Linear layers with TinyLoRA and return a handle to drive it.

    handle = apply_tinylora(model, TinyLoRAConfig(budget=13))
    handle.trainable_parameters()   # the v's, the only parameters with requires_grad
    handle.iter_merged_weights()    # (HF name, dtype(W_base + Delta W)) for every adapted weight
    with handle.disabled(): ...     # reference policy = adapter off
    handle.save_adapter(dir)        # safetensors v + JSON metadata (checkpoint.py)

Order of work in apply_tinylora: find the target modules (model order) -> plan the tying -> SVD each
full, unsharded weight (float32, sign-canonical, optionally cached) -> P from (seed, module name) ->
replace each Linear by a TinyLoRALinear -> freeze everything but v. It must run before any sharding
(FSDP), on the full weights. Where only one process holds them (verl builds untied-embedding models on
the meta device on ranks > 0), the others pass compute_factors=False: their layers get factor buffers of
the right shape and dtype but no values, which the caller fills with the factors of the process that
computed them (verl_seam/engine.py: verl's FSDP2 load broadcasts every buffer from rank 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from . import digests
from .config import TinyLoRAConfig
from .errors import TinyLoRAError
from .functional import delta_weight
from .layer import TinyLoRALinear, TinyLoRAVectors
from .planner import Plan
from .prepare import CONTAINER, Prepared, compute_factors_for, find_target_modules, prepare

__all__ = ["CONTAINER", "TinyLoRAError", "TinyLoRAHandle", "apply_tinylora", "find_target_modules", "install"]


@dataclass
class TinyLoRAHandle:
    model: nn.Module
    config: TinyLoRAConfig
    plan: Plan
    layers: dict[str, TinyLoRALinear]  # module name -> wrapped layer, model order
    vectors: TinyLoRAVectors

    # ---- training -------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.vectors.v)

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.vectors.v)

    def get_vectors(self) -> list[torch.Tensor]:
        """Detached copies of v, one [u] tensor per group."""
        return [p.detach().clone() for p in self.vectors.v]

    @torch.no_grad()
    def set_vectors(self, values) -> None:
        values = list(values)
        if len(values) != self.plan.num_groups:
            raise TinyLoRAError(f"got {len(values)} vectors for {self.plan.num_groups} groups")
        for g, (p, val) in enumerate(zip(self.vectors.v, values)):
            val = torch.as_tensor(val)
            if val.shape != p.shape:
                raise TinyLoRAError(
                    f"vector for group {g} has shape {tuple(val.shape)}, expected {tuple(p.shape)}"
                )
            p.copy_(val.to(p.dtype))

    @contextlib.contextmanager
    def disabled(self):
        """Run the base model: every TinyLoRA layer returns base(x) inside this block."""
        previous = self.vectors.enabled
        self.vectors.enabled = False
        try:
            yield self.model
        finally:
            self.vectors.enabled = previous

    # ---- merged weights (what a rollout engine needs) -------------------------------------------
    def iter_merged_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF parameter name, dtype(W_base + Delta W(v))) for every adapted weight, computed out of place."""
        for name, layer in self.layers.items():
            yield f"{name}.weight", layer.merged_weight()

    def iter_delta_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF parameter name, Delta W(v) in float32) for every adapted weight."""
        for name, layer in self.layers.items():
            yield (
                f"{name}.weight",
                delta_weight(
                    layer.tinylora_U,
                    layer.tinylora_S,
                    layer.tinylora_V,
                    layer.tinylora_P,
                    layer.v().detach(),
                    layer.alpha,
                ),
            )

    def base_state_dict(self, merged: bool = False) -> dict[str, torch.Tensor]:
        """The model's state dict under the original HF names (no `base_layer.`, no adapter entries).

        merged=True substitutes W_base + Delta W for every adapted weight.
        """
        out = {}
        for key, value in self.model.state_dict().items():
            if key.startswith(CONTAINER + ".") or f".{CONTAINER}." in key:
                continue
            out[key.replace(".base_layer.", ".")] = value
        if merged:
            out.update(dict(self.iter_merged_weights()))
        return out

    # ---- identity of the base model and the factors ---------------------------------------------
    def base_fingerprint(self) -> str:
        """digests.base_fingerprint of the adapted weights (name, shape, strided bf16 sample)."""
        return digests.base_fingerprint((n, layer.base_layer.weight) for n, layer in self.layers.items())

    def factor_hash(self) -> str:
        """sha256 of all frozen factors (U, S, V, P) in float32, module order."""
        return digests.factor_hash(
            (n, (layer.tinylora_U, layer.tinylora_S, layer.tinylora_V, layer.tinylora_P))
            for n, layer in self.layers.items()
        )

    def projection_hash(self) -> str:
        """sha256 of every module's P (exact on every platform: P is a pure function of seed and name)."""
        return digests.projection_hash((n, layer.tinylora_P) for n, layer in self.layers.items())

    # ---- persistence (see checkpoint.py / export.py) --------------------------------------------
    def save_adapter(self, directory) -> None:
        from .checkpoint import save_adapter

        save_adapter(self, directory)

    def export_peft_lora(self, directory) -> None:
        from .export import export_peft_lora

        export_peft_lora(self, directory)

    def export_merged(self, directory) -> None:
        from .export import export_merged

        export_merged(self, directory)


def apply_tinylora(
    model: nn.Module, config: TinyLoRAConfig | None = None, *, compute_factors: bool = True
) -> TinyLoRAHandle:
    """Wrap `model`'s target Linear layers with TinyLoRA (in place) and return the handle.

    Atomic: every check (config, target modules, ranks, plan, P cost, cache directory) runs first, then
    the SVDs (the model is only read), then the layers are swapped in; any refusal or error leaves the
    model exactly as it was (modules, requires_grad flags, no container).

    compute_factors=False does not read the weights (they may be on the meta device): U, S, V are
    uninitialised tensors of the right shape and dtype on the weights' device, to be overwritten with the
    factors another process computed from the full weights; P (a pure function of seed and name) and
    the zero v are set as usual. Until then the handle's factor_hash / base_fingerprint mean nothing.
    """
    prepared = prepare(model, config, compute_factors)
    factors = compute_factors_for(prepared, compute_factors)
    return install(model, prepared, factors)


def install(model: nn.Module, prepared: Prepared, factors: dict) -> TinyLoRAHandle:
    """Swap the prepared layers in and freeze the base; on any error restore the model as it was."""
    config, plan = prepared.config, prepared.plan
    device = prepared.found[0][1].weight.device
    flags = [(p, p.requires_grad) for p in model.parameters()]
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        vectors = TinyLoRAVectors(plan.num_groups, plan.projection_dim).to(device)
        layers: dict[str, TinyLoRALinear] = {}
        for name, module in prepared.found:
            f = factors[name]
            layer = TinyLoRALinear(
                module,
                f.U,
                f.S,
                f.V,
                prepared.projections[name].to(device=module.weight.device, dtype=f.U.dtype),
                plan.group_of[name],
                vectors,
                config.scale(plan.projection_dim),
            )
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer)
            swapped.append((parent, child, module))
            layers[name] = layer
        for p, _ in flags:
            p.requires_grad_(False)
        model.add_module(CONTAINER, vectors)
        for p in vectors.v:
            p.requires_grad_(True)
    except BaseException:
        for parent, child, module in reversed(swapped):
            setattr(parent, child, module)
        for p, flag in flags:
            p.requires_grad_(flag)
        if CONTAINER in model._modules:
            del model._modules[CONTAINER]
        raise
    return TinyLoRAHandle(model=model, config=config, plan=plan, layers=layers, vectors=vectors)
