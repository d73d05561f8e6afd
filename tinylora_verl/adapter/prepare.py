"""Everything apply_tinylora checks and computes before it touches the model.

prepare()              the config (validated again: fields may be assigned after construction), the
                       model's target modules, the frozen rank against each weight, the plan, the cost of
                       P (modules * u * r^2 <= limits.MAX_PROJECTION_ENTRIES), the cache directory; then
                       P itself. Reads no weight values (meta weights are fine with compute_factors=False).
compute_factors_for()  the SVD of every adapted weight (refusing NaN/inf weights), still without changing
                       the model.
model.install() swaps the layers in only after both succeed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import digests
from .config import TinyLoRAConfig
from .errors import PlanError, TinyLoRAConfigError, TinyLoRAError
from .functional import random_projections
from .limits import MAX_PROJECTION_ENTRIES
from .planner import Plan, plan_tying
from .svd import FactorCache, Factors, empty_factors, svd_factors

logger = logging.getLogger(__name__)

CONTAINER = "tinylora"  # attribute name of the TinyLoRAVectors container on the model


@dataclass
class Prepared:
    """What apply_tinylora will install, worked out without changing the model."""

    config: TinyLoRAConfig
    found: list[tuple[str, nn.Linear]]  # (name, Linear) in model order
    plan: Plan
    projections: dict[str, torch.Tensor]  # name -> P [u, r, r] float32 on the CPU

    @property
    def modules(self) -> list[str]:
        return [name for name, _ in self.found]

    def base_fingerprint(self) -> str:
        return digests.base_fingerprint((name, m.weight) for name, m in self.found)

    def projection_hash(self) -> str:
        return digests.projection_hash((name, self.projections[name]) for name in self.modules)


def find_target_modules(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """(name, Linear) for every nn.Linear whose last name component is in `targets`, in model order."""
    found = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear):
            found.append((name, module))
    return found


def _check_cache_dir(directory: str) -> None:
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise TinyLoRAConfigError(
            f"svd_cache_dir={directory!r} is a file, not a directory: give a directory (it is created "
            "if missing) or None for no cache"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TinyLoRAConfigError(
            f"svd_cache_dir={directory!r} cannot be created ({err.strerror or err}): give a writable "
            "directory or None for no cache"
        ) from None


def _check_ranks(found: list[tuple[str, nn.Linear]], r: int) -> None:
    name, smallest = min(found, key=lambda item: min(item[1].weight.shape))
    limit = min(smallest.weight.shape)
    if r > limit:
        raise TinyLoRAConfigError(
            f"frozen_rank={r} exceeds min(out, in)={limit} of {name} (weight {tuple(smallest.weight.shape)}): "
            f"use frozen_rank <= {limit} (the paper uses 2), or leave that module out of target_modules"
        )


def prepare(model: nn.Module, config: TinyLoRAConfig | None, compute_factors: bool = True) -> Prepared:
    """Every check apply_tinylora makes, and P; raises a TinyLoRAUserError and changes nothing."""
    if not isinstance(model, nn.Module):
        raise TinyLoRAError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if config is None:
        config = TinyLoRAConfig()
    if not isinstance(config, TinyLoRAConfig):
        raise TinyLoRAConfigError(
            f"config must be a TinyLoRAConfig, got {type(config).__name__}: use TinyLoRAConfig(**settings) "
            "or TinyLoRAConfig.from_dict(settings)"
        )
    if not isinstance(compute_factors, bool):
        raise TinyLoRAConfigError(f"compute_factors={compute_factors!r} must be True or False")
    config.validate()
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
    if compute_factors:
        for name, module in found:
            if module.weight.device.type == "meta":
                raise TinyLoRAError(
                    f"{name}.weight is on the meta device: apply TinyLoRA to materialised, unsharded "
                    "weights (before FSDP wraps the model), or pass compute_factors=False in a process "
                    "that will receive the factors from one that holds the full weights"
                )
    r = config.frozen_rank
    _check_ranks(found, r)
    try:
        plan = plan_tying(
            [n for n, _ in found], config.tie_mode, config.budget, config.projection_dim, config.tie_factor
        )
    except PlanError as err:
        raise TinyLoRAError(str(err)) from None
    entries = len(found) * plan.projection_dim * r * r
    if entries > MAX_PROJECTION_ENTRIES:
        raise TinyLoRAConfigError(
            f"u={plan.projection_dim} (from budget={config.budget}, projection_dim={config.projection_dim}) "
            f"on {len(found)} modules at frozen_rank={r} needs {entries} random P entries, over the "
            f"{MAX_PROJECTION_ENTRIES} limit (modules * u * r^2): use a smaller budget or projection_dim "
            f"(u <= {MAX_PROJECTION_ENTRIES // (len(found) * r * r)} here), fewer target_modules or a smaller r"
        )
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
    if compute_factors and config.svd_cache_dir:
        _check_cache_dir(config.svd_cache_dir)
    projections = {name: random_projections(name, config.seed, plan.projection_dim, r) for name, _ in found}
    return Prepared(config=config, found=found, plan=plan, projections=projections)


def compute_factors_for(prepared: Prepared, compute_factors: bool = True) -> dict[str, Factors]:
    """U, S, V of every adapted weight (or empty ones of the right shape); reads, never writes, the model."""
    config = prepared.config
    opts = config.svd_options
    cache = FactorCache(config.svd_cache_dir) if compute_factors and config.svd_cache_dir else None
    factors = {}
    for name, module in prepared.found:
        W = module.weight.detach()
        if not compute_factors:
            factors[name] = empty_factors(W, config.frozen_rank, opts)
            continue
        if not bool(torch.isfinite(W).all()):
            raise TinyLoRAError(
                f"{name}.weight holds NaN or inf values: the base model is damaged; reload it from its "
                "checkpoint before applying TinyLoRA"
            )
        if cache is not None:
            factors[name] = cache.get_or_compute(W, config.frozen_rank, opts)
        else:
            factors[name] = svd_factors(W, config.frozen_rank, opts)
    return factors
