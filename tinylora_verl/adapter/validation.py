"""Type and range checks of every TinyLoRAConfig field (model-independent bounds; limits.py says why).

`config_errors(cfg)` returns one line per problem, naming the setting, the value and the fix; the caller
raises them together as a TinyLoRAConfigError. Bounds that need the model (r <= min(out, in), the tie
factor, modules * u * r^2) are checked by model.prepare before any work.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

from .limits import MAX_POWER_ITERS, MAX_PROJECTION_ENTRIES, MAX_SCALE, MAX_SEED
from .planner import TIE_MODES
from .svd import SVD_DTYPES, SVD_METHODS


def is_int(value) -> bool:
    """A real integer: int or numpy integer, never a bool (True is not 1 here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number (int, float, numpy float), never a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def target_modules_tuple(value) -> tuple[str, ...] | None:
    """target_modules as a tuple of non-empty names (a single string is one name); None if invalid."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, bytes) or not value:
        return None
    if not all(isinstance(t, str) and t.strip() == t and t for t in value):
        return None
    return tuple(value)


def _int_field(errors, name, value, lo, hi, fix, optional=False):
    if value is None and optional:
        return
    if not is_int(value) or not lo <= value <= hi:
        none = " or None" if optional else ""
        errors.append(f"{name}={value!r} must be an integer from {lo} to {hi}{none}: {fix}")


def _choice(errors, name, value, choices):
    if not isinstance(value, str) or value not in choices:
        errors.append(f"{name}={value!r} must be one of {tuple(choices)}")


def _scale_field(errors, name, value, fix, optional=False):
    if value is None and optional:
        return
    if not is_real(value) or not math.isfinite(value) or value == 0 or abs(value) > MAX_SCALE:
        errors.append(
            f"{name}={value!r} must be a finite non-zero number with |{name}| <= {MAX_SCALE:g}: {fix}"
        )


def config_errors(cfg) -> list[str]:
    """Every problem with cfg's fields, one line each ([] when valid)."""
    errors: list[str] = []
    r = cfg.frozen_rank
    _int_field(
        errors, "frozen_rank", r, 1, math.isqrt(MAX_PROJECTION_ENTRIES), "the paper uses 2 (frozen_rank=2)"
    )
    r_sq = r * r if is_int(r) and r >= 1 else 1
    cap = MAX_PROJECTION_ENTRIES // r_sq  # every trained parameter costs each of its modules r^2 P entries
    _int_field(
        errors, "budget", cfg.budget, 1, cap, f"budget * frozen_rank^2 <= {MAX_PROJECTION_ENTRIES}", True
    )
    _int_field(
        errors,
        "projection_dim",
        cfg.projection_dim,
        1,
        cap,
        f"projection_dim * frozen_rank^2 <= {MAX_PROJECTION_ENTRIES}; None lets the planner choose u",
        True,
    )
    _int_field(
        errors, "tie_factor", cfg.tie_factor, 1, MAX_PROJECTION_ENTRIES, "None lets the planner choose", True
    )
    if cfg.budget is None and cfg.projection_dim is None:
        errors.append("budget and projection_dim are both None: set budget (e.g. 13) or projection_dim (u)")
    _choice(errors, "tie_mode", cfg.tie_mode, TIE_MODES)
    if target_modules_tuple(cfg.target_modules) is None:
        errors.append(
            f"target_modules={cfg.target_modules!r} must be a non-empty list of module-name suffixes "
            "(non-empty strings without surrounding spaces), e.g. ['q_proj', 'v_proj']"
        )
    _int_field(errors, "seed", cfg.seed, 0, MAX_SEED, "use a seed in [0, 2**63)")
    _scale_field(errors, "alpha", cfg.alpha, "1.0 is the paper's formula")
    _scale_field(
        errors, "lora_alpha", cfg.lora_alpha, "the authors' scripts use 32; None is the paper's formula", True
    )
    _choice(errors, "svd_method", cfg.svd_method, SVD_METHODS)
    _choice(errors, "svd_dtype", cfg.svd_dtype, SVD_DTYPES)
    _int_field(errors, "svd_power_iters", cfg.svd_power_iters, 0, MAX_POWER_ITERS, "the default is 6")
    _int_field(
        errors, "svd_oversample", cfg.svd_oversample, 0, 1 << 20, "the default is 8 (capped by min(out, in))"
    )
    cache = cfg.svd_cache_dir
    if cache is not None and (not isinstance(cache, (str, os.PathLike)) or not str(cache).strip()):
        errors.append(f"svd_cache_dir={cache!r} must be a directory path, or None for no cache")
    return errors
