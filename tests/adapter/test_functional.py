"""The formulas against float64 references written out by hand (loops, no matrix algebra)."""

import json
import math
import subprocess
import sys

import pytest
import torch

from tinylora_verl.adapter.functional import (
    delta_weight,
    lowrank_delta,
    merged_weight,
    mix,
    random_projections,
)


def hand_delta(U, S, V, P, v, alpha=1.0):
    """Delta W[i, j] = alpha * sum_a sum_b U[i, a] S[a] (sum_k v_k P[k, a, b]) V[j, b], in Python floats."""
    out_f, r = len(U), len(S)
    in_f, u = len(V), len(v)
    M = [[sum(v[k] * P[k][a][b] for k in range(u)) for b in range(r)] for a in range(r)]
    return [
        [
            alpha * sum(U[i][a] * S[a] * M[a][b] * V[j][b] for a in range(r) for b in range(r))
            for j in range(in_f)
        ]
        for i in range(out_f)
    ]


CASES = [  # out, in, r, u, alpha
    (5, 4, 2, 3, 1.0),
    (7, 3, 1, 1, 1.0),
    (4, 6, 3, 13, 0.5),
    (6, 6, 2, 1, 2.0),
]


def _random_case(out_f, in_f, r, u, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(out_f, r, generator=g, dtype=torch.float64)
    S = torch.rand(r, generator=g, dtype=torch.float64) + 0.5
    V = torch.randn(in_f, r, generator=g, dtype=torch.float64)
    P = torch.randn(u, r, r, generator=g, dtype=torch.float64)
    v = torch.randn(u, generator=g, dtype=torch.float64)
    return U, S, V, P, v


@pytest.mark.parametrize("out_f,in_f,r,u,alpha", CASES)
def test_delta_weight_matches_hand_formula(out_f, in_f, r, u, alpha):
    U, S, V, P, v = _random_case(out_f, in_f, r, u)
    ref = torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), alpha), dtype=torch.float64
    )
    got64 = delta_weight(U, S, V, P, v, alpha)
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, ref, rtol=1e-12, atol=1e-12)
    got32 = delta_weight(U.float(), S.float(), V.float(), P.float(), v.float(), alpha)
    torch.testing.assert_close(got32.double(), ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().max() > 1e-2  # the case exercises a non-trivial delta


def test_mix_is_weighted_sum_of_projections():
    P = torch.arange(12, dtype=torch.float64).reshape(3, 2, 2)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    expected = 1.0 * P[0] - 2.0 * P[1] + 0.5 * P[2]
    torch.testing.assert_close(mix(v, P), expected, rtol=0, atol=0)


@pytest.mark.parametrize("out_f,in_f,r,u,alpha", CASES)
def test_lowrank_delta_equals_x_times_delta_transposed(out_f, in_f, r, u, alpha):
    U, S, V, P, v = _random_case(out_f, in_f, r, u, seed=1)
    x = torch.randn(2, 3, in_f, dtype=torch.float64)
    ref = torch.tensor(
        [
            [
                [
                    sum(x[b, t, j].item() * d for j, d in enumerate(row))
                    for row in hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), alpha)
                ]
                for t in range(3)
            ]
            for b in range(2)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(lowrank_delta(x, U, S, V, P, v, alpha), ref, rtol=1e-10, atol=1e-10)


def test_merged_weight_is_out_of_place_and_keeps_dtype():
    U, S, V, P, v = (t.float() for t in _random_case(8, 5, 2, 2, seed=2))
    W = torch.randn(8, 5).to(torch.bfloat16)
    W_before = W.clone()
    merged = merged_weight(W, U, S, V, P, v)
    assert merged.dtype == torch.bfloat16
    assert torch.equal(W, W_before)  # untouched
    ref = (
        W.double()
        + torch.tensor(
            hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist()), dtype=torch.float64
        )
    ).to(torch.bfloat16)
    assert torch.equal(merged, ref)  # one rounding of the exact sum
    assert not torch.equal(merged, W)  # the delta is visible in bf16 here


def test_merged_weight_in_row_blocks_and_out_dtype(monkeypatch):
    """Blocks of rows (the memory bound) give the float64 sum; a bf16-stored W with out_dtype float32 (the
    rollout receiver's compact copy of a float32 W) gives the same bits as the float32 W itself."""
    import tinylora_verl.adapter.functional as F

    U, S, V, P, v = (t.float() for t in _random_case(9, 5, 2, 3, seed=4))
    W = torch.randn(9, 5).to(torch.bfloat16).float()  # exactly representable in bf16
    whole = merged_weight(W, U, S, V, P, v, 0.7)
    monkeypatch.setattr(F, "MERGE_BLOCK_ELEMENTS", 10)  # 2 rows a block: 5 blocks, the last one short
    blocked = F.merged_weight(W, U, S, V, P, v, 0.7)
    ref = W.double() + torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), 0.7), dtype=torch.float64
    )
    torch.testing.assert_close(blocked.double(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(blocked, whole)
    compact = F.merged_weight(W.to(torch.bfloat16), U, S, V, P, v, 0.7, out_dtype=torch.float32)
    assert compact.dtype == torch.float32 and torch.equal(compact, blocked)


def test_projections_are_deterministic_and_keyed_by_name_and_seed():
    a = random_projections("model.layers.0.self_attn.q_proj", seed=0, u=4, r=2)
    assert a.shape == (4, 2, 2) and a.dtype == torch.float32
    assert torch.equal(a, random_projections("model.layers.0.self_attn.q_proj", seed=0, u=4, r=2))
    assert not torch.equal(a, random_projections("model.layers.1.self_attn.q_proj", seed=0, u=4, r=2))
    assert not torch.equal(a, random_projections("model.layers.0.self_attn.q_proj", seed=1, u=4, r=2))


@pytest.mark.parametrize("r", [1, 2, 4])
def test_projections_are_normal_with_variance_one_over_r(r):
    x = random_projections("stat", seed=3, u=20000 // (r * r) + 1, r=r).double().flatten()
    n = x.numel()
    assert abs(x.mean().item()) < 4 / math.sqrt(n * r)  # mean 0 (4 sigma)
    assert abs(x.var().item() * r - 1.0) < 0.05  # variance 1/r
    within = (x.abs() < 1 / math.sqrt(r)).double().mean().item()  # 68.27 % within one sd
    assert abs(within - 0.6827) < 0.02


def test_projections_identical_across_processes():
    code = (
        "import json, torch; from tinylora_verl.adapter.functional import random_projections as rp;"
        "print(json.dumps(rp('model.layers.3.mlp.down_proj', 7, 3, 2).double().flatten().tolist()))"
    )
    # a different torch RNG state and hash seed in the child must not matter
    env_code = "import torch; torch.manual_seed(123); " + code
    out = subprocess.run(
        [sys.executable, "-c", env_code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "999", "PATH": "/usr/bin:/bin"},
    ).stdout
    child = torch.tensor(json.loads(out), dtype=torch.float64)
    here = random_projections("model.layers.3.mlp.down_proj", 7, 3, 2).double().flatten()
    assert torch.equal(child, here)


def test_bad_projection_sizes_are_refused():
    with pytest.raises(ValueError, match="u >= 1"):
        random_projections("x", 0, u=0, r=2)
