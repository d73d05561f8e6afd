"""Accuracy of the randomized rank-r SVD that initialises TinyLoRA, against the exact SVD.

For every adapted weight W [out, in] the reference is `torch.linalg.svd(W in float64)`, truncated to r;
the candidate is `svd_factors(W, r, SVDOptions(method="randomized", ...))` (float32, as the adapter
runs it). Compared: the largest principal angle between the two top-r left subspaces (U) and the two
right subspaces (V),

    sin(theta_max) = || Q2 - Q1 (Q1^T Q2) ||_2      Q1 exact, Q2 randomized, both orthonormal [n, r]

(the sine form stays accurate for tiny angles, where arccos of the cosines loses everything below
~1e-4 rad). The top-r subspace is only well defined when sigma_r > sigma_{r+1}: a perturbation E moves
it by about ||E|| / (sigma_r - sigma_{r+1}) (Davis-Kahan), so each module's relative gap
(sigma_r - sigma_{r+1}) / sigma_r is reported with the worst angle.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from tinylora_verl.adapter.svd import SVDOptions, svd_factors


def max_principal_angle(Q1: torch.Tensor, Q2: torch.Tensor) -> float:
    """Largest principal angle (radians) between span(Q1) and span(Q2); columns orthonormalised first."""
    Q1, _ = torch.linalg.qr(Q1.to(torch.float64))
    Q2, _ = torch.linalg.qr(Q2.to(torch.float64))
    s = torch.linalg.matrix_norm(Q2 - Q1 @ (Q1.T @ Q2), ord=2).item()
    return math.asin(min(1.0, s))


@dataclass
class Reference:
    name: str
    weight: torch.Tensor  # [out, in] float32 (as in the model)
    U: torch.Tensor  # [out, r] float64
    V: torch.Tensor  # [in, r] float64
    rel_gap: float  # (sigma_r - sigma_{r+1}) / sigma_r


def exact_references(named_weights, r: int) -> list[Reference]:
    refs = []
    for name, W in named_weights:
        U, S, Vh = torch.linalg.svd(W.detach().to(torch.float64), full_matrices=False)
        gap = float((S[r - 1] - S[r]) / S[r - 1]) if S.numel() > r else 1.0
        refs.append(Reference(name, W.detach(), U[:, :r], Vh[:r].T, gap))
    return refs


def angle_report(refs: list[Reference], r: int, opts: SVDOptions) -> dict:
    """Max angles over all modules for U and V, the worst module, its gap, and the total SVD time."""
    worst = {"U": (0.0, None), "V": (0.0, None)}
    per_module = []
    t_total = 0.0
    for ref in refs:
        t0 = time.perf_counter()
        f = svd_factors(ref.weight, r, opts)
        t_total += time.perf_counter() - t0
        a_u, a_v = max_principal_angle(ref.U, f.U), max_principal_angle(ref.V, f.V)
        per_module.append((ref.name, a_u, a_v, ref.rel_gap))
        for key, a in (("U", a_u), ("V", a_v)):
            if a >= worst[key][0]:
                worst[key] = (a, ref)
    return {
        "options": {"power_iters": opts.power_iters, "oversample": opts.oversample, "dtype": opts.dtype},
        "max_angle_U": worst["U"][0],
        "max_angle_V": worst["V"][0],
        "worst_U_module": worst["U"][1].name if worst["U"][1] else None,
        "worst_U_rel_gap": worst["U"][1].rel_gap if worst["U"][1] else None,
        "worst_V_module": worst["V"][1].name if worst["V"][1] else None,
        "worst_V_rel_gap": worst["V"][1].rel_gap if worst["V"][1] else None,
        "min_rel_gap": min(ref.rel_gap for ref in refs),
        "svd_seconds_total": t_total,
        "per_module": per_module,
    }


def exact_svd_seconds(refs: list[Reference], r: int) -> float:
    """Total time of the adapter's own exact path (float32 torch.linalg.svd + truncation) over all modules."""
    opts = SVDOptions(method="exact")
    t0 = time.perf_counter()
    for ref in refs:
        svd_factors(ref.weight, r, opts)
    return time.perf_counter() - t0
