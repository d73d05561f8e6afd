"""Per-step diagnostics of the weight sync and of the trainer/rollout mismatch (pure torch).

* `half_ulp_bf16(W)`: half the spacing of bfloat16 numbers at |W| (W = m·2^e, m in [0.5, 1): bf16 keeps
  8 significant bits, so its spacing there is 2^(e-8)); 0 where W == 0.
* `rounded_away_counts(...)`: how many entries of ΔW(v) are smaller than half a bf16 ulp of W — updates
  that a bf16 merge W + ΔW can round away entirely — over every `stride`-th row of W (global row index a
  multiple of `stride`; 1 = every entry). Forming ΔW costs as much as a merge: the trainer counts a fixed
  1/16 of the rows each step (verl_seam/engine.py, ROUNDED_AWAY_ROW_STRIDE), an estimate of the fraction
  whose sampling error is far below the differences it is read for (docs/sync.md).

The trainer↔rollout log-prob gap and the truncated-IS weights are verl's own metrics
(`rollout_corr/*`, `training/rollout_probs_diff_*`); the trainer shows them (verl_seam/trainer.py).
"""

from __future__ import annotations

import torch

from ..adapter.functional import delta_weight

BF16_SIGNIFICANT_BITS = 8
BF16_MIN_EXPONENT = -133  # 2^-133: the smallest bf16 subnormal


def half_ulp_bf16(W: torch.Tensor) -> torch.Tensor:
    _, exponent = torch.frexp(W.float())
    e = torch.clamp(exponent - (BF16_SIGNIFICANT_BITS + 1), min=BF16_MIN_EXPONENT - 1)
    half = torch.ldexp(torch.ones_like(W, dtype=torch.float32), e)
    return torch.where(W == 0, torch.zeros_like(half), half)


@torch.no_grad()
def rounded_away_counts(
    W: torch.Tensor,
    U: torch.Tensor,
    S: torch.Tensor,
    V: torch.Tensor,
    P: torch.Tensor,
    v: torch.Tensor,
    alpha: float = 1.0,
    stride: int = 1,
    first_row: int = 0,
) -> tuple[int, int]:
    """(#entries with |ΔW| < half a bf16 ulp of W, #entries counted) for the rows of W (and the matching
    rows of U) whose global index `first_row + i` is a multiple of `stride` (W may be one rank's shard)."""
    if stride < 1:
        raise ValueError(f"stride={stride} must be a positive integer")
    rows = slice((-first_row) % stride, None, stride)
    W, U = W[rows], U[rows]
    dW = delta_weight(*(t.detach().to(device=W.device, dtype=torch.float32) for t in (U, S, V, P, v)), alpha)
    small = (dW.abs() < half_ulp_bf16(W)).sum().item()
    return int(small), W.numel()
