"""The adapter checkpoint: a few KB, no pickle.

    DIR/tinylora_adapter.safetensors   one float32 tensor "v.<g>" [u] per group
    DIR/tinylora_config.json           metadata (metadata.py: fields, checksum, version 1 files)

Everything else (U, S, V, P) is rebuilt from the base model and the seed, so loading recomputes the
factors and checks them against what was saved.

load_adapter checks everything before it changes the model: the files (checksums, format, version,
NaN/inf v), the config, then — on the model, without SVD — module names, base fingerprint, tying and the
exact P hash; then it runs the SVD (still only reading the model); only then are the layers swapped in.
A refusal leaves the model exactly as it was, so the right adapter can be loaded into it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import digests
from .config import TinyLoRAConfig
from .errors import AdapterLoadError, TinyLoRAUserError
from .functional import PROJECTION_RECIPE
from .metadata import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    MAX_WEIGHTS_BYTES,
    WEIGHTS_NAME,
    adapter_path,
    check_size,
    modules_sha256,
    read_metadata,
    seal,
)
from .model import TinyLoRAHandle, install
from .prepare import Prepared, compute_factors_for, prepare

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "AdapterLoadError",
    "build_metadata",
    "load_adapter",
    "read_metadata",
    "read_vectors",
    "save_adapter",
]

SVD_SUM_RTOL = 1e-4  # singular-value sums closer than this differ by rounding (BLAS, hardware)


def _base_model_info(model) -> dict:
    cfg = getattr(model, "config", None)
    return {
        "name_or_path": getattr(cfg, "_name_or_path", None)
        or getattr(cfg, "name_or_path", None)
        or "(unnamed)",
        "revision": getattr(cfg, "_commit_hash", None),
        "architecture": type(model).__name__,
    }


def singular_value_sums(S_per_module) -> list[float]:
    """[sum over modules of S[j] for j < r] in float64: a tolerance-comparable summary of the SVD."""
    return torch.stack([S.detach().to(torch.float64).cpu() for S in S_per_module]).sum(0).tolist()


def build_metadata(handle: TinyLoRAHandle, vectors_sha256: str) -> dict:
    plan = handle.plan
    modules = list(handle.layers)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base_model": {**_base_model_info(handle.model), "fingerprint": handle.base_fingerprint()},
        "config": handle.config.to_dict(),
        "plan": {
            "projection_dim": plan.projection_dim,
            "tie_mode": plan.tie_mode,
            "tie_factor": plan.tie_factor,
            "num_groups": plan.num_groups,
            "num_trainable": plan.num_trainable,
            "num_modules": len(modules),
            "modules_sha256": modules_sha256(modules),
            "group_of_module": [plan.group_of[m] for m in modules],  # model order
        },
        "projection_recipe": PROJECTION_RECIPE,
        "projection_sha256": handle.projection_hash(),
        "factor_hash": handle.factor_hash(),
        "singular_value_sums": singular_value_sums(layer.tinylora_S for layer in handle.layers.values()),
        "vectors_sha256": vectors_sha256,
    }
    return seal(meta)


def save_adapter(handle: TinyLoRAHandle, directory: str | os.PathLike) -> Path:
    """Write v and the metadata atomically (temp files renamed into place)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"v.{g}": v.detach().to(torch.float32).cpu().contiguous() for g, v in enumerate(handle.vectors.v)
    }
    tmp_w = out / f".{WEIGHTS_NAME}.tmp{os.getpid()}"
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    digest = hashlib.sha256(tmp_w.read_bytes()).hexdigest()
    tmp_c = out / f".{CONFIG_NAME}.tmp{os.getpid()}"
    tmp_c.write_text(json.dumps(build_metadata(handle, digest), indent=1) + "\n")
    os.replace(tmp_w, out / WEIGHTS_NAME)
    os.replace(tmp_c, out / CONFIG_NAME)
    return out


def read_vectors(directory: str | os.PathLike, meta: dict) -> list[torch.Tensor]:
    """The v's of DIR: checksum, names, shapes (u,), float32, finite."""
    path = adapter_path(directory, WEIGHTS_NAME)
    if not path.is_file():
        raise AdapterLoadError(f"{path} does not exist; the adapter directory is incomplete")
    check_size(path, MAX_WEIGHTS_BYTES)
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != meta["vectors_sha256"]:
        raise AdapterLoadError(
            f"{path} does not match the checksum in {CONFIG_NAME}: the file is corrupt, "
            "truncated, or from another save — restore both files from the same checkpoint"
        )
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for malformed headers
        raise AdapterLoadError(f"{path} is not a readable safetensors file ({err})") from None
    n, u = meta["plan"]["num_groups"], meta["plan"]["projection_dim"]
    expected = {f"v.{g}" for g in range(n)}
    if set(tensors) != expected:
        raise AdapterLoadError(f"{path} holds tensors {sorted(tensors)[:5]}..., expected v.0 .. v.{n - 1}")
    for key in sorted(expected):
        t = tensors[key]
        if tuple(t.shape) != (u,) or t.dtype != torch.float32:
            raise AdapterLoadError(
                f"{path}: {key} is {t.dtype} of shape {tuple(t.shape)}, expected float32 of shape ({u},)"
            )
        if not bool(torch.isfinite(t).all()):
            raise AdapterLoadError(
                f"{path}: {key} holds NaN or inf; the adapter diverged or the file was damaged — load an "
                "earlier checkpoint"
            )
    return [tensors[f"v.{g}"] for g in range(n)]


def _check_against_model(path: Path, meta: dict, prepared: Prepared, model) -> None:
    """Module names, base fingerprint, tying, P: all before any SVD."""
    plan, saved_base = meta["plan"], meta["base_model"]
    modules = prepared.modules
    if len(modules) != plan["num_modules"] or modules_sha256(modules) != plan["modules_sha256"]:
        raise AdapterLoadError(
            f"the adapter was trained on {plan['num_modules']} modules of {saved_base.get('name_or_path')!r} "
            f"({saved_base.get('architecture')}); this model ({type(model).__name__}) has {len(modules)} matching "
            "modules with other names: load it on the base model it was trained on"
        )
    if prepared.base_fingerprint() != saved_base["fingerprint"]:
        here = _base_model_info(model).get("name_or_path")
        raise AdapterLoadError(
            f"the adapter was trained on base model {saved_base.get('name_or_path')!r}, but the weights of this "
            f"model ({here!r}) differ from it (fingerprint mismatch): load the adapter on the base model it was "
            "trained on"
        )
    mine = prepared.plan
    if (
        [mine.group_of[m] for m in modules] != plan["group_of_module"]
        or mine.projection_dim != plan["projection_dim"]
        or mine.num_groups != plan["num_groups"]
    ):
        raise AdapterLoadError(
            f"{path}: the tying it records (u={plan['projection_dim']}, {plan['num_groups']} groups) differs from "
            f"the one its config gives here (u={mine.projection_dim}, {mine.num_groups} groups); the metadata "
            "is inconsistent (edited by hand?): restore it from the checkpoint it came from"
        )
    if "projection_sha256" in meta and prepared.projection_hash() != meta["projection_sha256"]:
        raise AdapterLoadError(
            f"{path}: the P matrices its config regenerates (seed={prepared.config.seed}, "
            f"frozen_rank={prepared.config.frozen_rank}, u={mine.projection_dim}) are not the ones it was "
            "trained with (P is identical on every platform, so the recorded settings were changed): "
            "restore the file from the checkpoint it came from"
        )


def _check_factors(path: Path, meta: dict, prepared: Prepared, factors: dict) -> None:
    """The SVD's bits depend on the BLAS and device: compare with a tolerance, exactly only for version 1."""
    got = digests.factor_hash(
        (name, (factors[name].U, factors[name].S, factors[name].V, prepared.projections[name]))
        for name in prepared.modules
    )
    if got == meta["factor_hash"]:
        return
    if meta["format_version"] == 1:
        raise AdapterLoadError(
            f"{path} is a version-1 file (no metadata checksum, no separate P hash) and the factors recomputed "
            "here differ from its factor_hash, so an edited seed or rank cannot be told from another BLAS: "
            "load it on the machine type that saved it and save it again with this version"
        )
    saved = meta["singular_value_sums"]
    here = singular_value_sums(factors[name].S for name in prepared.modules)
    rel = max((abs(a - b) / max(abs(b), 1e-30) for a, b in zip(here, saved)), default=0.0)
    if len(here) == len(saved) and rel <= SVD_SUM_RTOL:
        logger.info("TinyLoRA factors differ from the saved run's in their last bits only (rel %.1e)", rel)
    else:
        logger.warning(
            "TinyLoRA SVD factors recomputed here differ from the saved run's (singular values by %.1e "
            "relative, over the %.0e of rounding): the randomized SVD draws its test matrix on the weights' "
            "device, so another device type (or BLAS) gives other factors, and Delta W differs; load it on "
            "the device type that trained it, or train with svd_method='exact' for portable factors",
            rel,
            SVD_SUM_RTOL,
        )


def load_adapter(model, directory: str | os.PathLike, **config_overrides) -> TinyLoRAHandle:
    """Apply TinyLoRA to `model` as recorded in DIR and load its v; refuse a mismatching base model.

    config_overrides may change only run-time settings (svd_cache_dir). Atomic: any refusal leaves the
    model exactly as it was.
    """
    meta = read_metadata(directory)
    path = adapter_path(directory, CONFIG_NAME)
    vectors = read_vectors(directory, meta)
    bad = sorted(set(config_overrides) - {"svd_cache_dir"})
    if bad:
        raise AdapterLoadError(
            f"cannot override {bad} when loading: they define the adapter; only svd_cache_dir may change"
        )
    try:
        config = TinyLoRAConfig.from_dict({**meta["config"], **config_overrides})
    except TinyLoRAUserError as err:
        raise AdapterLoadError(f"{path}: invalid config ({err})") from None
    if meta["format_version"] == 1:
        logger.warning(
            "%s is a version-1 adapter without a metadata checksum: save it again to protect it", path
        )
    try:
        prepared = prepare(model, config)
    except TinyLoRAUserError as err:
        raise AdapterLoadError(f"the adapter in {directory} cannot be applied to this model: {err}") from None
    _check_against_model(path, meta, prepared, model)
    factors = compute_factors_for(prepared)
    _check_factors(path, meta, prepared, factors)
    handle = install(model, prepared, factors)
    handle.set_vectors(vectors)
    return handle
