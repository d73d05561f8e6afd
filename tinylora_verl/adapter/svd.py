"""Frozen rank-r SVD factors of a weight: fast, reproducible, cached.

- Computed on the full (unsharded) weight in float32 (or float64), whatever the model's dtype.
- `krylov` (TinyLoRAConfig's default): block Krylov with full reorthogonalisation on the Gram matrix of
  the shorter side, Rayleigh-Ritz after every block, stopped by a residual test (see `_krylov`). Exact
  quality on real weights, whose flat spectra defeat power iteration: `bench/svd_init.py`,
  docs/performance_svd.md.
- `randomized` (SVDOptions' default, kept for the adapters trained with it): a seeded randomized range
  finder with power iterations (Halko, Martinsson & Tropp 2011, alg. 4.4) — the cheapest, but with a fixed
  6 iterations it misses the top-r subspace of many SmolLM2 projections (up to ~1 rad).
- `exact`: torch.linalg.svd, then truncated.
- Signs are canonicalised (each U column's largest-|.| entry is positive; V flipped with it), so the
  same weight gives the same factors in every process. This matters: U diag(S) M V^T is not invariant
  under flipping one column of U and V when M is not diagonal.
- An optional on-disk cache is keyed by a hash of the weight's bytes, its shape and dtype, r, the
  method and its settings (krylov: its stopping rule too), so a second run on the same model skips the SVD.
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

SVD_METHODS = ("randomized", "exact", "krylov")
# The krylov method's stopping rule (part of its cache key): every top-r Ritz pair of the Gram matrix G
# has residual ||G u - theta u|| <= KRYLOV_TOL[dtype] * theta_1, or at most KRYLOV_MAX_BLOCKS blocks are
# built (then the exact SVD is used instead, with a warning). The tolerance sits well above the rounding
# floor of G's products in that dtype (~1e-7 theta_1 in float32, ~1e-15 in float64).
KRYLOV_TOL = {"float32": 1e-5, "float64": 1e-10}
KRYLOV_MAX_BLOCKS = 48
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


def _orthogonalize(Q: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """Z minus its projection on span(Q), twice (classical Gram-Schmidt with reorthogonalisation)."""
    for _ in range(2):
        Z = Z - Q @ (Q.T @ Z)
    return Z


def _new_block(Q: torch.Tensor, Z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Orthonormal block spanning Z's part outside span(Q). Columns that are numerically inside span(Q)
    (the Krylov space has become invariant in their direction: a low-rank weight) are replaced by seeded
    random directions, so the basis stays orthonormal to working precision."""
    scale = Z.norm(dim=0).max().clamp_min(torch.finfo(Z.dtype).tiny)
    Z = _orthogonalize(Q, Z)
    Qz, R = torch.linalg.qr(Z)
    weak = R.diagonal().abs() <= 1e-10 * scale
    if weak.any():
        Z[:, weak] = torch.randn(Z.shape[0], int(weak.sum()), generator=gen, device=Z.device, dtype=Z.dtype)
        Qz, _ = torch.linalg.qr(_orthogonalize(Q, Z))
        Qz = _orthogonalize(Q, Qz)
        Qz, _ = torch.linalg.qr(Qz)
    return Qz


def _krylov(W: torch.Tensor, r: int, opts: SVDOptions) -> Factors:
    """Block Krylov (block Lanczos with full reorthogonalisation) on the Gram matrix of the weight's shorter
    side, with Rayleigh-Ritz after every block and a residual stopping rule.

    A = W (or W^T when W is tall) is [s, n] with s <= n; G = A A^T [s, s] is applied as A (A^T X), never
    formed, in W's dtype (opts.dtype: the products are the cost); the basis, its orthogonalisation and the
    Ritz problems are float64. The first block is A Omega (Omega [n, b] seeded Gaussian,
    b = r + oversample); block j+1 is G Q_j orthogonalised (twice) against all earlier blocks. After each
    block the Ritz pairs (theta, y) of T = Q^T G Q give the residuals ||G Q y - theta Q y||; once the top r
    are below KRYLOV_TOL[dtype] * theta_1, the top-r Ritz vectors U_r span the answer and the float64 SVD
    of U_r^T A [r, n] rotates them into U, S, V. Subspace (power) iteration's error falls like
    (s_{b+1} / s_r)^(2q), which barely moves on the flat spectra of real weights; the Krylov space converges
    like a Chebyshev polynomial in the gap, and the residual test checks what is returned instead of
    assuming a fixed iteration count is enough. If KRYLOV_MAX_BLOCKS blocks do not converge, the exact SVD
    is used (with a warning).
    """
    out_f, in_f = W.shape
    tall = out_f > in_f
    A = W.T if tall else W  # [s, n], s <= n, in opts.dtype
    s = A.shape[0]
    b = min(r + opts.oversample, s)
    steps = min(KRYLOV_MAX_BLOCKS, s // b - 1)
    f = None
    if steps >= 1:  # else the Krylov space would be (nearly) all of R^s: the exact SVD is as cheap
        f64 = torch.float64
        tol = KRYLOV_TOL[opts.dtype]
        gen = torch.Generator(device=W.device).manual_seed(opts.seed)
        omega = torch.randn(A.shape[1], b, generator=gen, device=W.device, dtype=A.dtype)

        def gram(Q):  # G Q in A's dtype, returned in float64
            return (A @ (A.T @ Q.to(A.dtype))).to(f64)

        Qbuf = torch.empty(s, b * (steps + 1), dtype=f64, device=W.device)  # the basis, one block per step
        GQbuf = torch.empty_like(Qbuf)  # G applied to it
        Tbuf = torch.empty(b * (steps + 1), b * (steps + 1), dtype=f64, device=W.device)  # Q^T G Q
        Qbuf[:, :b] = _new_block(Qbuf[:, :0], (A @ omega).to(f64), gen)
        GQbuf[:, :b] = gram(Qbuf[:, :b])
        Tbuf[:b, :b] = Qbuf[:, :b].T @ GQbuf[:, :b]
        d = b
        for _ in range(steps):
            Q, GQ, T = Qbuf[:, :d], GQbuf[:, :d], Tbuf[:d, :d]
            theta, Y = torch.linalg.eigh((T + T.T) / 2)  # ascending
            theta, Y = theta.flip(0)[:r], Y.flip(1)[:, :r]
            res = (GQ @ Y - (Q @ Y) * theta).norm(dim=0)
            if res.max() <= tol * theta[0].abs():
                Ur = Q @ Y  # [s, r]
                Ub, S, Vh = torch.linalg.svd(Ur.T @ A.to(f64), full_matrices=False)
                f = Factors(U=Ur @ Ub, S=S, V=Vh.T)
                break
            Qbuf[:, d : d + b] = _new_block(Q, GQ[:, -b:], gen)
            GQbuf[:, d : d + b] = gram(Qbuf[:, d : d + b])
            Tbuf[: d + b, d : d + b] = Qbuf[:, : d + b].T @ GQbuf[:, d : d + b]
            Tbuf[d : d + b, :d] = Tbuf[:d, d : d + b].T
            d += b
        else:  # a weight this small or this flat: Krylov space of all of R^s, or KRYLOV_MAX_BLOCKS spent
            (logger.warning if steps == KRYLOV_MAX_BLOCKS else logger.debug)(
                "TinyLoRA krylov SVD of a %s weight did not converge in %d blocks of %d; using the exact SVD",
                tuple(W.shape),
                d // b,
                b,
            )
    if f is None:
        f = _exact(A.to(torch.float64), r)
    if tall:
        f = Factors(U=f.V, S=f.S, V=f.U)
    return Factors(U=f.U.to(W.dtype), S=f.S.to(W.dtype), V=f.V.to(W.dtype))


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
    if opts.method == "exact":
        f = _exact(W, r)
    elif opts.method == "krylov":
        f = _krylov(W, r, opts)
    else:
        f = _randomized(W, r, opts)
    U, V = canonicalize_signs(f.U, f.V)
    # row-major strides even where a size-1 dim lets .contiguous() keep others (r = 1: digests view the bytes)
    return Factors(*(t.clone(memory_format=torch.contiguous_format) for t in (U, f.S, V)))


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
    if opts.method == "krylov":  # its stopping rule changes its factors too
        params += f"|tol={KRYLOV_TOL[opts.dtype]:g}|blocks={KRYLOV_MAX_BLOCKS}"
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
