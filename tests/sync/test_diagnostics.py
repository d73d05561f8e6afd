"""Sync diagnostics against float64 references written out by hand."""

import math

import pytest
import torch

from tinylora_verl.sync.diagnostics import half_ulp_bf16, rounded_away_counts


def _half_ulp_ref(w: float) -> float:
    """bf16 keeps 8 significant bits: numbers in [2^k, 2^(k+1)) are 2^(k-7) apart; half of that."""
    if w == 0:
        return 0.0
    k = math.floor(math.log2(abs(w)))
    return 2.0 ** (k - 7) / 2


def test_half_ulp_hand_values():
    W = torch.tensor([1.0, 1.5, 0.75, -3.0, 0.0, 1e-3, 2.0**-20, 123.456])
    got = half_ulp_bf16(W).double().tolist()
    assert got[:5] == [2**-8, 2**-8, 2**-9, 2**-7, 0.0]
    for w, g in zip(W.tolist(), got):
        assert g == _half_ulp_ref(w), w


def test_half_ulp_is_where_bf16_rounding_happens():
    """For bf16-representable W, moving 0.9 half-ulp away from zero rounds back to W; 1.1 does not.

    (Towards zero the spacing halves at powers of two, so the threshold is taken on the outer side.)"""
    torch.manual_seed(0)
    W = torch.randn(2000).to(torch.bfloat16).float()
    W = W[W != 0]
    h = half_ulp_bf16(W) * torch.sign(W)
    assert torch.equal((W + 0.9 * h).to(torch.bfloat16).float(), W)
    assert not torch.equal((W + 1.1 * h).to(torch.bfloat16).float(), W)
    assert ((W + 1.1 * h).to(torch.bfloat16).float() != W).all()


def test_rounded_away_counts_match_float64_reference():
    torch.manual_seed(1)
    out_f, in_f, r, u = 7, 5, 2, 3
    W = torch.randn(out_f, in_f)
    U, S, V = torch.randn(out_f, r), torch.rand(r) + 0.5, torch.randn(in_f, r)
    P = torch.randn(u, r, r)
    v = torch.tensor([0.004, -0.002, 0.003])
    small, total = rounded_away_counts(W, U, S, V, P, v, alpha=0.5)
    count = 0
    for i in range(out_f):
        for j in range(in_f):
            d = 0.0
            for a in range(r):
                for b in range(r):
                    m = sum(float(v[k]) * float(P[k, a, b]) for k in range(u))
                    d += float(U[i, a]) * 0.5 * float(S[a]) * m * float(V[j, b])
            count += abs(d) < _half_ulp_ref(float(W[i, j]))
    assert total == out_f * in_f
    assert small == count and 0 < count < total  # the case exercises both sides
    assert rounded_away_counts(W, U, S, V, P, torch.zeros(u))[0] == total  # v = 0: everything rounds away
    # every 3rd row by global index, on a shard whose first row is global row 1: local rows 2 and 5
    rows = [2, 5]
    got = rounded_away_counts(W, U, S, V, P, v, alpha=0.5, stride=3, first_row=1)
    assert got == rounded_away_counts(W[rows], U[rows], S, V, P, v, alpha=0.5) and got[1] == 2 * in_f
    # the shards of a row-sharded W add up to the whole weight's count
    parts = [rounded_away_counts(W[a:b], U[a:b], S, V, P, v, 0.5, 2, a) for a, b in ((0, 3), (3, 7))]
    whole = rounded_away_counts(W, U, S, V, P, v, 0.5, 2)
    assert tuple(map(sum, zip(*parts))) == whole == rounded_away_counts(W[0::2], U[0::2], S, V, P, v, 0.5)
    with pytest.raises(ValueError, match="stride=0"):
        rounded_away_counts(W, U, S, V, P, v, stride=0)
