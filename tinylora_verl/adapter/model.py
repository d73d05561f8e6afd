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
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import TinyLoRAConfig
from .functional import delta_weight, random_projections
from .layer import TinyLoRALinear, TinyLoRAVectors
from .planner import Plan, plan_tying
from .svd import FactorCache, empty_factors, svd_factors

logger = logging.getLogger(__name__)

CONTAINER = "tinylora"  # attribute name of the TinyLoRAVectors container on the model


class TinyLoRAError(ValueError):
    """A TinyLoRA request that cannot be carried out; the message says what is wrong and what to do."""


def find_target_modules(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """(name, Linear) for every nn.Linear whose last name component is in `targets`, in model order."""
    found = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear):
            found.append((name, module))
    return found


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


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
        """sha256 over each adapted weight's name, shape and a strided bf16 sample of its values.

        bf16 makes it independent of the dtype the model was loaded in; the sample keeps it cheap for
        7B models while any fine-tune (which moves every entry) changes it.
        """
        h = hashlib.sha256()
        for name, layer in self.layers.items():
            w = layer.base_layer.weight.detach().reshape(-1)
            stride = max(1, w.numel() // 65536)
            sample = w[::stride].to(torch.bfloat16).cpu().contiguous()
            h.update(f"{name}|{tuple(layer.base_layer.weight.shape)}|".encode())
            h.update(sample.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def factor_hash(self) -> str:
        """sha256 of all frozen factors (U, S, V, P) in float32, module order."""
        h = hashlib.sha256()
        for name, layer in self.layers.items():
            h.update(name.encode())
            for t in (layer.tinylora_U, layer.tinylora_S, layer.tinylora_V, layer.tinylora_P):
                h.update(t.detach().to(torch.float32).cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

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

    compute_factors=False does not read the weights (they may be on the meta device): U, S, V are
    uninitialised tensors of the right shape and dtype on the weights' device, to be overwritten with the
    factors another process computed from the full weights; P (a pure function of seed and name) and
    the zero v are set as usual. Until then the handle's factor_hash / base_fingerprint mean nothing.
    """
    config = config or TinyLoRAConfig()
    if hasattr(model, CONTAINER):
        raise TinyLoRAError(
            "this model already has TinyLoRA applied; use the handle you got, or load the base model again"
        )
    found = find_target_modules(model, config.target_modules)
    if not found:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise TinyLoRAError(
            f"no nn.Linear named {list(config.target_modules)} in this model; its Linear layers "
            f"are named {linear}: set target_modules to some of those"
        )
    for name, module in found:
        if compute_factors and module.weight.device.type == "meta":
            raise TinyLoRAError(
                f"{name}.weight is on the meta device: apply TinyLoRA to materialised, unsharded "
                "weights (before FSDP wraps the model), or pass compute_factors=False in a process "
                "that will receive the factors from one that holds the full weights"
            )
    try:
        plan = plan_tying(
            [n for n, _ in found], config.tie_mode, config.budget, config.projection_dim, config.tie_factor
        )
    except ValueError as err:
        raise TinyLoRAError(str(err)) from None
    if not plan.exact:
        logger.warning(
            "TinyLoRA budget %s is not reachable exactly with %d modules; using %d trainable parameters "
            "(u=%d, tie_factor=%d)",
            config.budget,
            len(found),
            plan.num_trainable,
            plan.projection_dim,
            plan.tie_factor,
        )

    device = found[0][1].weight.device
    vectors = TinyLoRAVectors(plan.num_groups, plan.projection_dim).to(device)
    cache = FactorCache(config.svd_cache_dir) if config.svd_cache_dir else None
    opts = config.svd_options
    for p in model.parameters():
        p.requires_grad_(False)
    layers: dict[str, TinyLoRALinear] = {}
    for name, module in found:
        W = module.weight.detach()
        if not compute_factors:
            f = empty_factors(W, config.frozen_rank, opts)
        elif cache:
            f = cache.get_or_compute(W, config.frozen_rank, opts)
        else:
            f = svd_factors(W, config.frozen_rank, opts)
        P = random_projections(name, config.seed, plan.projection_dim, config.frozen_rank).to(f.U.dtype)
        layer = TinyLoRALinear(
            module,
            f.U,
            f.S,
            f.V,
            P.to(W.device),
            plan.group_of[name],
            vectors,
            config.scale(plan.projection_dim),
        )
        _set_submodule(model, name, layer)
        layers[name] = layer
    model.add_module(CONTAINER, vectors)
    for p in vectors.v:
        p.requires_grad_(True)
    return TinyLoRAHandle(model=model, config=config, plan=plan, layers=layers, vectors=vectors)
