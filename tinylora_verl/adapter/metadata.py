"""tinylora_config.json: what it records, how it is checksummed, and how a read one is checked.

Version 2 fields: format, format_version, base_model (name_or_path, revision, architecture, fingerprint),
config (the TinyLoRAConfig), plan (u, tie factor, groups, module count and names' hash, group of each
module), projection_recipe, projection_sha256 (exact hash of every P), factor_hash (U, S, V, P: its bits
depend on the BLAS), singular_value_sums (per rank index, summed over modules: the tolerance-aware check
of the SVD), vectors_sha256 (the safetensors file), and metadata_sha256: sha256 of all the others in
canonical JSON. Editing any recorded value (seed, frozen rank, alpha, tying, a hash) breaks that checksum
and the load is refused; a forger who recomputes it is still stopped by the exact P hash, the tying check
and the base fingerprint.

Version 1 files (before these checks) have neither checksum nor P hash: they load only when their factor
hash matches exactly (proof that seed, r and u are as saved), with a warning to re-save them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from .errors import AdapterLoadError
from .functional import PROJECTION_RECIPE
from .limits import MAX_PROJECTION_ENTRIES
from .validation import is_int

FORMAT = "tinylora-verl-adapter"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
WEIGHTS_NAME = "tinylora_adapter.safetensors"
CONFIG_NAME = "tinylora_config.json"
CHECKSUM_KEY = "metadata_sha256"
REQUIRED = {
    1: ("base_model", "config", "plan", "factor_hash", "vectors_sha256", "projection_recipe"),
    2: (
        "base_model",
        "config",
        "plan",
        "factor_hash",
        "vectors_sha256",
        "projection_recipe",
        "projection_sha256",
        "singular_value_sums",
        CHECKSUM_KEY,
    ),
}
# The largest files save_adapter can write: the JSON grows with the module count (a group index each),
# the vectors with groups * u <= limits.MAX_PROJECTION_ENTRIES float32 numbers.
MAX_CONFIG_BYTES = 16 << 20
MAX_WEIGHTS_BYTES = 4 * MAX_PROJECTION_ENTRIES + (1 << 20)
PLAN_INTS = ("projection_dim", "tie_factor", "num_groups", "num_trainable", "num_modules")


def modules_sha256(modules: list[str]) -> str:
    return hashlib.sha256("\n".join(modules).encode()).hexdigest()


def metadata_checksum(meta: dict) -> str:
    """sha256 of every field but the checksum itself, as canonical JSON (key order, spacing ignored)."""
    body = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(meta: dict) -> dict:
    """meta with its metadata_sha256 set."""
    return {**meta, CHECKSUM_KEY: metadata_checksum(meta)}


def adapter_path(directory, name: str) -> Path:
    """DIR/name for a directory given as str or os.PathLike; anything else is a load error."""
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise AdapterLoadError(f"the adapter directory must be a path, got {directory!r}")
    return Path(directory) / name


def check_size(path: Path, limit: int) -> None:
    """Refuse a file larger than any save_adapter writes before reading it."""
    size = path.stat().st_size
    if size > limit:
        raise AdapterLoadError(
            f"{path} is {size} bytes, more than the {limit} any adapter file can have: it is not a "
            "TinyLoRA checkpoint file — restore it from the checkpoint it came from"
        )


def _load_json(path: Path, directory) -> dict:
    if not path.is_file():
        raise AdapterLoadError(
            f"{path} does not exist: {directory} is not a TinyLoRA adapter directory "
            f"(expected {CONFIG_NAME} and {WEIGHTS_NAME}, written by save_adapter)"
        )
    check_size(path, MAX_CONFIG_BYTES)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise AdapterLoadError(
            f"{path} is not valid JSON ({type(err).__name__}: {str(err)[:200]}); the file is corrupt or "
            "truncated — restore it from the checkpoint it came from"
        ) from None


def _check_shapes(path: Path, meta: dict) -> None:
    """Field types a well-formed file has (a hand-made one could hold anything)."""
    plan, base = meta["plan"], meta["base_model"]
    problems = []
    if not isinstance(plan, dict) or not all(is_int(plan.get(k)) and plan[k] >= 1 for k in PLAN_INTS):
        problems.append(f"plan must hold positive integers {PLAN_INTS}")
    elif not (
        isinstance(plan.get("group_of_module"), list)
        and len(plan["group_of_module"]) == plan["num_modules"]
        and all(is_int(g) and 0 <= g < plan["num_groups"] for g in plan["group_of_module"])
        and isinstance(plan.get("modules_sha256"), str)
    ):
        problems.append("plan.group_of_module must list a group index for each of plan.num_modules modules")
    if not isinstance(base, dict) or not isinstance(base.get("fingerprint"), str):
        problems.append("base_model.fingerprint must be a string")
    if not isinstance(meta["config"], dict):
        problems.append("config must be a mapping")
    sums = meta.get("singular_value_sums", [])
    if not isinstance(sums, list) or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in sums):
        problems.append("singular_value_sums must be a list of finite numbers")
    if problems:
        raise AdapterLoadError(
            f"{path} is malformed: " + "; ".join(problems) + " — restore it from the checkpoint"
        )


def read_metadata(directory: str | os.PathLike) -> dict:
    """Parse and check DIR/tinylora_config.json: format, version, required fields, checksum, field types."""
    path = adapter_path(directory, CONFIG_NAME)
    meta = _load_json(path, directory)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterLoadError(
            f"{path} is not a {FORMAT} file (format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("format_version")
    if not is_int(version) or version not in READABLE_VERSIONS:
        raise AdapterLoadError(
            f"{path} has format_version={version!r}; this tinylora_verl reads versions "
            f"{list(READABLE_VERSIONS)}. Use the tinylora_verl release that wrote it (or a newer one)."
        )
    missing = [k for k in REQUIRED[version] if k not in meta]
    if missing:
        raise AdapterLoadError(f"{path} lacks the fields {missing}; the file is incomplete")
    if version >= 2 and meta[CHECKSUM_KEY] != metadata_checksum(meta):
        raise AdapterLoadError(
            f"{path} was edited after it was saved ({CHECKSUM_KEY} does not match its contents): the seed, "
            "frozen rank, alpha, tying and hashes it records define the adapter and cannot be changed — "
            "restore the file from the checkpoint it came from, or train a new adapter with the settings you want"
        )
    if meta["projection_recipe"] != PROJECTION_RECIPE:
        raise AdapterLoadError(
            f"{path} was made with P recipe {meta['projection_recipe']!r}; this version "
            f"generates {PROJECTION_RECIPE!r} and cannot rebuild its P matrices"
        )
    _check_shapes(path, meta)
    return meta
