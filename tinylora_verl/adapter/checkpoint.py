"""The adapter checkpoint: a few KB, no pickle.

    DIR/tinylora_adapter.safetensors   one float32 tensor "v.<g>" [u] per group
    DIR/tinylora_config.json           metadata (below)

Metadata: format name and version; the base model (name_or_path, revision, architecture, a fingerprint of
the adapted weights); the TinyLoRAConfig; the plan (u, tie factor, group of each module); the P recipe;
hashes of the factors and of the vector file. Everything else (U, S, V, P) is rebuilt from the base
model and the seed, so loading recomputes the factors and checks them against what was saved.

Refused, with a message saying what is wrong: a missing/corrupt/truncated file, another format or a
newer format version, a different base model (fingerprint), a model whose target modules differ,
vectors whose shapes do not fit the plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import TinyLoRAConfig, TinyLoRAConfigError
from .functional import PROJECTION_RECIPE
from .model import TinyLoRAHandle, apply_tinylora

logger = logging.getLogger(__name__)

FORMAT = "tinylora-verl-adapter"
FORMAT_VERSION = 1
WEIGHTS_NAME = "tinylora_adapter.safetensors"
CONFIG_NAME = "tinylora_config.json"


class AdapterLoadError(ValueError):
    """The adapter at a path cannot be loaded onto this model; the message says why and what to do."""


def _base_model_info(model) -> dict:
    cfg = getattr(model, "config", None)
    return {
        "name_or_path": getattr(cfg, "_name_or_path", None)
        or getattr(cfg, "name_or_path", None)
        or "(unnamed)",
        "revision": getattr(cfg, "_commit_hash", None),
        "architecture": type(model).__name__,
    }


def build_metadata(handle: TinyLoRAHandle, vectors_sha256: str) -> dict:
    plan = handle.plan
    modules = list(handle.layers)
    return {
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
            "modules_sha256": hashlib.sha256("\n".join(modules).encode()).hexdigest(),
            "group_of_module": [plan.group_of[m] for m in modules],  # model order
        },
        "projection_recipe": PROJECTION_RECIPE,
        "factor_hash": handle.factor_hash(),
        "vectors_sha256": vectors_sha256,
    }


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


def read_metadata(directory: str | os.PathLike) -> dict:
    """Parse and check DIR/tinylora_config.json (format, version, required fields)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise AdapterLoadError(
            f"{path} does not exist: {directory} is not a TinyLoRA adapter directory "
            f"(expected {CONFIG_NAME} and {WEIGHTS_NAME}, written by save_adapter)"
        )
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterLoadError(
            f"{path} is not valid JSON ({err}); the file is corrupt or truncated — "
            "restore it from the checkpoint it came from"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterLoadError(
            f"{path} is not a {FORMAT} file (format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise AdapterLoadError(
            f"{path} has format_version={version!r}; this tinylora_verl reads version "
            f"{FORMAT_VERSION}. Use the tinylora_verl release that wrote it (or a newer one)."
        )
    missing = [
        k
        for k in ("base_model", "config", "plan", "factor_hash", "vectors_sha256", "projection_recipe")
        if k not in meta
    ]
    if missing:
        raise AdapterLoadError(f"{path} lacks the fields {missing}; the file is incomplete")
    if meta["projection_recipe"] != PROJECTION_RECIPE:
        raise AdapterLoadError(
            f"{path} was made with P recipe {meta['projection_recipe']!r}; this version "
            f"generates {PROJECTION_RECIPE!r} and cannot rebuild its P matrices"
        )
    return meta


def read_vectors(directory: str | os.PathLike, meta: dict) -> list[torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise AdapterLoadError(f"{path} does not exist; the adapter directory is incomplete")
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
        if tuple(tensors[key].shape) != (u,):
            raise AdapterLoadError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected ({u},)")
    return [tensors[f"v.{g}"] for g in range(n)]


def load_adapter(model, directory: str | os.PathLike, **config_overrides) -> TinyLoRAHandle:
    """Apply TinyLoRA to `model` as recorded in DIR and load its v; refuse a mismatching base model.

    config_overrides may change only run-time settings (svd_cache_dir).
    """
    meta = read_metadata(directory)
    vectors = read_vectors(directory, meta)
    bad = sorted(set(config_overrides) - {"svd_cache_dir"})
    if bad:
        raise AdapterLoadError(
            f"cannot override {bad} when loading: they define the adapter; only svd_cache_dir may change"
        )
    try:
        config = TinyLoRAConfig.from_dict({**meta["config"], **config_overrides})
    except (TinyLoRAConfigError, TypeError) as err:
        raise AdapterLoadError(f"{Path(directory) / CONFIG_NAME}: invalid config ({err})") from None

    handle = apply_tinylora(model, config)
    modules = list(handle.layers)
    plan = meta["plan"]
    saved_base = meta["base_model"]
    if (
        len(modules) != plan["num_modules"]
        or hashlib.sha256("\n".join(modules).encode()).hexdigest() != plan["modules_sha256"]
    ):
        raise AdapterLoadError(
            f"the adapter was trained on {plan['num_modules']} modules of {saved_base.get('name_or_path')!r} "
            f"({saved_base.get('architecture')}); this model ({type(model).__name__}) has {len(modules)} matching "
            "modules with other names: load it on the base model it was trained on"
        )
    if handle.base_fingerprint() != saved_base.get("fingerprint"):
        here = _base_model_info(model).get("name_or_path")
        raise AdapterLoadError(
            f"the adapter was trained on base model {saved_base.get('name_or_path')!r}, but the weights of this "
            f"model ({here!r}) differ from it (fingerprint mismatch): load the adapter on the base model it was "
            "trained on"
        )
    if [handle.plan.group_of[m] for m in modules] != plan[
        "group_of_module"
    ] or handle.plan.projection_dim != plan["projection_dim"]:
        raise AdapterLoadError(
            "the tying recorded in the adapter differs from the one its config produces here; "
            "the metadata is inconsistent (was it edited by hand?)"
        )
    if handle.factor_hash() != meta["factor_hash"]:
        logger.warning(
            "TinyLoRA factors recomputed here differ in their last bits from the saved run's "
            "(other hardware or BLAS); Delta W may differ at float32 rounding level"
        )
    handle.set_vectors(vectors)
    return handle
