"""Frozen rank-r SVD factors of a weight: fast, reproducible, cached.

- Computed on the full (unsharded) weight in float32 (or float64), whatever the model's dtype.
- `randomized` (default): a seeded randomized range finder with power iterations (Halko, Martinsson &
  Tropp 2011, alg. 4.4) — only r vectors are needed, so it is far cheaper than a full SVD.
  `exact`: torch.linalg.svd, then truncated. `bench/adapter.py` measures the randomized method's
  subspace angle against the exact one.
- Signs are canonicalised (each U column's largest-|.| entry is positive; V flipped with it), so the
  same weight gives the same factors in every process. This matters: U diag(S) M V^T is not invariant
  under flipping one column of U and V when M is not diagonal.
- An optional on-disk cache is keyed by a hash of the weight's bytes, its shape and dtype and the
  method, so a second run on the same model skips the SVD.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import TinyLoRAConfigError

logger = logging.getLogger(__name__)

SVD_METHODS = ("randomized", "exact")
SVD_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SVDOptions:
    method: str = "randomized"
    dtype: str = "float32"
    oversample: int = 8  # extra random vectors beyond r
    power_iters: int = 6  # subspace iterations; each sharpens the top-r subspace
    seed: int = 0  # seed of the random test matrix (randomized only)


@dataclass
class Factors:
    U: torch.Tensor  # [out, r]
    S: torch.Tensor  # [r]
    V: torch.Tensor  # [in, r]


def canonicalize_signs(U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip (U[:, j], V[:, j]) together so that U's largest-magnitude entry in column j is positive."""
    idx = U.abs().argmax(dim=0)  # [r]
    signs = torch.sign(U.gather(0, idx.unsqueeze(0)).squeeze(0))  # [r]
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return U * signs, V * signs


def _randomized(W: torch.Tensor, r: int, opts: SVDOptions) -> Factors:
    out_f, in_f = W.shape
    k = min(r + opts.oversample, out_f, in_f)
    gen = torch.Generator(device=W.device).manual_seed(opts.seed)
    omega = torch.randn(in_f, k, generator=gen, device=W.device, dtype=W.dtype)  # [in, k]
    Q, _ = torch.linalg.qr(W @ omega)  # [out, k]
    for _ in range(opts.power_iters):
        Z, _ = torch.linalg.qr(W.T @ Q)  # [in, k]
        Q, _ = torch.linalg.qr(W @ Z)  # [out, k]
    B = Q.T @ W  # [k, in]
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    return Factors(U=(Q @ Ub)[:, :r], S=S[:r], V=Vh[:r].T)


def _exact(W: torch.Tensor, r: int) -> Factors:
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return Factors(U=U[:, :r], S=S[:r], V=Vh[:r].T)


def _check(shape: tuple[int, ...], r: int, opts: SVDOptions) -> None:
    if len(shape) != 2:
        raise TinyLoRAConfigError(f"TinyLoRA needs a 2-D weight, got shape {tuple(shape)}")
    if not 1 <= r <= min(shape):
        raise TinyLoRAConfigError(
            f"frozen_rank={r} must be between 1 and min(out, in)={min(shape)} for a "
            f"weight of shape {tuple(shape)}"
        )
    if opts.method not in SVD_METHODS:
        raise TinyLoRAConfigError(f"svd method {opts.method!r} is not one of {SVD_METHODS}")
    if opts.dtype not in SVD_DTYPES:
        raise TinyLoRAConfigError(f"svd dtype {opts.dtype!r} is not one of {tuple(SVD_DTYPES)}")


def svd_factors(weight: torch.Tensor, r: int, opts: SVDOptions = SVDOptions()) -> Factors:
    """Top-r factors of `weight` [out, in] with canonical signs, in opts.dtype, on weight's device."""
    _check(tuple(weight.shape), r, opts)
    W = weight.detach().to(SVD_DTYPES[opts.dtype])
    f = _exact(W, r) if opts.method == "exact" else _randomized(W, r, opts)
    U, V = canonicalize_signs(f.U, f.V)
    return Factors(U=U.contiguous(), S=f.S.contiguous(), V=V.contiguous())


def empty_factors(weight: torch.Tensor, r: int, opts: SVDOptions = SVDOptions()) -> Factors:
    """Uninitialised U, S, V with the shapes and dtype svd_factors(weight, r, opts) would give, on weight's device
    (meta included); the weight's values are not read. For a process that receives the factors from one
    that holds the full weight."""
    _check(tuple(weight.shape), r, opts)
    out_f, in_f = weight.shape
    like = dict(dtype=SVD_DTYPES[opts.dtype], device=weight.device)
    return Factors(U=torch.empty(out_f, r, **like), S=torch.empty(r, **like), V=torch.empty(in_f, r, **like))


def weight_digest(weight: torch.Tensor) -> str:
    """sha256 of a tensor's shape, dtype and raw bytes (the cache key's content part)."""
    t = weight.detach().contiguous().cpu()
    h = hashlib.sha256(f"{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(weight: torch.Tensor, r: int, opts: SVDOptions) -> str:
    """Name of a cache entry: the weight's digest and every setting that changes its factors."""
    params = f"r={r}|{opts.method}|{opts.dtype}|os={opts.oversample}|it={opts.power_iters}|seed={opts.seed}"
    return hashlib.sha256(f"{weight_digest(weight)}|{params}".encode()).hexdigest()[:40]


class FactorCache:
    """Directory of `<key>.safetensors` files holding U, S, V. Writes are atomic (tmp + rename)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def get_or_compute(self, weight: torch.Tensor, r: int, opts: SVDOptions) -> Factors:
        path = self.dir / f"{cache_key(weight, r, opts)}.safetensors"
        if path.exists():
            try:
                t = load_file(str(path), device=str(weight.device))
                return Factors(U=t["U"], S=t["S"], V=t["V"])
            except Exception:  # a corrupt cache entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        f = svd_factors(weight, r, opts)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_file({"U": f.U.cpu(), "S": f.S.cpu(), "V": f.V.cpu()}, str(tmp))
            os.replace(tmp, path)
        except OSError as err:  # a cache is an optimisation: a full disk or a read-only dir costs time only
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            logger.warning("TinyLoRA SVD cache %s not written (%s); the factors are used uncached", path, err)
        return f
