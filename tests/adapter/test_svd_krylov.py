"""The krylov SVD method against a float64 reference built by hand (W = Q1 diag(s) Q2^T with s_2 and s_3
0.15 % apart over a flat tail): top-2 subspace < 1e-2 rad, captured energy within 1e-6 of optimal; the
same matrix defeats the randomized method and a loosened stopping rule. Also: same seed -> same bits,
canonical signs, tall = transposed wide, low-rank weights, the exact fallback, and a cache key that holds
the method and the stopping rule."""

import logging
import math

import pytest
import torch

from tinylora_verl.adapter import TinyLoRAConfig
from tinylora_verl.adapter import svd as svd_mod
from tinylora_verl.adapter.svd import FactorCache, SVDOptions, cache_key, svd_factors

GAP = 1.5e-3  # s_3 = s_2 (1 - GAP)
ANGLE = 1e-2
ENERGY = 1e-6


def close_gap_matrix(out_f=240, in_f=480, seed=0):
    """Q1 diag(s) Q2^T in float64: s = 10, 5, 5 (1 - GAP), then a flat tail 4.5 -> 0.5 (like real weights)."""
    g = torch.Generator().manual_seed(seed)
    k = min(out_f, in_f)
    s = torch.cat(
        [
            torch.tensor([10.0, 5.0, 5.0 * (1 - GAP)], dtype=torch.float64),
            torch.linspace(4.5, 0.5, k - 3).double(),
        ]
    )
    Q1, _ = torch.linalg.qr(torch.randn(out_f, k, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(in_f, k, generator=g, dtype=torch.float64))
    return (Q1 * s) @ Q2.T, Q1, Q2, s


def angle(A, B):
    """Largest principal angle between span(A) and span(B), sine form (accurate for tiny angles)."""
    Qa, _ = torch.linalg.qr(A.double())
    Qb, _ = torch.linalg.qr(B.double())
    return math.asin(min(1.0, torch.linalg.matrix_norm(Qb - Qa @ (Qa.T @ Qb), ord=2).item()))


def shortfall(W, B, s, side):
    Q, _ = torch.linalg.qr(B.double())
    captured = (Q.T @ W if side == "U" else W @ Q).pow(2).sum().item()
    optimal = s[:2].pow(2).sum().item()
    return 1 - captured / optimal


def quality(f, W, Q1, Q2, s):
    return (
        max(angle(f.U, Q1[:, :2]), angle(f.V, Q2[:, :2])),
        max(shortfall(W, f.U, s, "U"), shortfall(W, f.V, s, "V")),
    )


@pytest.fixture
def no_exact_fallback(monkeypatch):
    """The Krylov iteration itself must deliver: the exact SVD it falls back to is disabled."""

    def boom(*a, **k):
        raise AssertionError("krylov fell back to the exact SVD")

    monkeypatch.setattr(svd_mod, "_exact", boom)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tall", [False, True])
def test_krylov_separates_a_close_gap(dtype, tall, no_exact_fallback):
    W, Q1, Q2, s = close_gap_matrix()
    if tall:
        W, Q1, Q2 = W.T, Q2, Q1
    Win = W.float() if dtype == "float32" else W
    f = svd_factors(Win, 2, SVDOptions(method="krylov", dtype=dtype))
    assert f.U.shape == (W.shape[0], 2) and f.V.shape == (W.shape[1], 2) and f.S.shape == (2,)
    assert f.U.dtype == f.S.dtype == f.V.dtype == svd_mod.SVD_DTYPES[dtype]
    a, e = quality(f, W, Q1, Q2, s)
    assert a < ANGLE and abs(e) < ENERGY, (a, e)
    if dtype == "float64":  # float64 products: the stopping rule (1e-10) leaves ~1e-7 rad at this gap
        assert a < 1e-5 and abs(e) < 1e-12, (a, e)
    torch.testing.assert_close(f.S.double(), s[:2], rtol=1e-5, atol=0)


def test_the_close_gap_defeats_randomized_and_a_loose_stopping_rule(monkeypatch):
    """The matrix above is a real check: the randomized default and krylov with a loosened tolerance both
    miss the top-2 subspace (so the test above fails if the method degrades)."""
    W, Q1, Q2, s = close_gap_matrix()
    a, _ = quality(svd_factors(W.float(), 2, SVDOptions(method="randomized")), W, Q1, Q2, s)
    assert a > ANGLE
    monkeypatch.setattr(svd_mod, "KRYLOV_TOL", {"float32": 1e-2, "float64": 1e-2})
    a, e = quality(svd_factors(W.float(), 2, SVDOptions(method="krylov")), W, Q1, Q2, s)
    assert a > ANGLE, a


def test_same_seed_same_bits_and_other_seed_same_answer():
    W = close_gap_matrix(seed=3)[0].float()
    a = svd_factors(W, 2, SVDOptions(method="krylov", seed=0))
    b = svd_factors(W, 2, SVDOptions(method="krylov", seed=0))
    assert torch.equal(a.U, b.U) and torch.equal(a.S, b.S) and torch.equal(a.V, b.V)
    c = svd_factors(W, 2, SVDOptions(method="krylov", seed=1))
    assert not torch.equal(a.U, c.U)  # another start block ...
    torch.testing.assert_close(c.S, a.S, rtol=1e-5, atol=0)  # ... converges to the same factors
    assert angle(a.U, c.U) < ANGLE


def test_signs_are_canonical_and_match_exact():
    W = close_gap_matrix(seed=2)[0]
    W[:, :] = W + 3.0 * torch.outer(
        torch.linspace(1, 2, W.shape[0]).double(), torch.ones(W.shape[1]).double()
    )
    f = svd_factors(W.float(), 2, SVDOptions(method="krylov"))
    idx = f.U.abs().argmax(dim=0)
    assert (f.U[idx, torch.arange(2)] > 0).all()
    e = svd_factors(W.float(), 2, SVDOptions(method="exact", dtype="float64"))
    torch.testing.assert_close(f.U.double()[:, 0], e.U[:, 0], rtol=0, atol=1e-4)
    torch.testing.assert_close(f.V.double()[:, 0], e.V[:, 0], rtol=0, atol=1e-4)
    f2 = svd_factors(-W.float(), 2, SVDOptions(method="krylov"))  # -W: same canonical U, V flipped
    torch.testing.assert_close(f2.U, f.U, rtol=0, atol=1e-4)
    torch.testing.assert_close(f2.V, -f.V, rtol=0, atol=1e-4)


def test_tall_weight_gives_the_transposed_factors():
    W = close_gap_matrix(out_f=200, in_f=500, seed=4)[0].float()
    wide = svd_factors(W, 2, SVDOptions(method="krylov"))
    tall = svd_factors(W.T.contiguous(), 2, SVDOptions(method="krylov"))
    assert tall.U.shape == (500, 2) and tall.V.shape == (200, 2)
    assert angle(tall.U, wide.V) < 1e-5 and angle(tall.V, wide.U) < 1e-5
    torch.testing.assert_close(tall.S, wide.S, rtol=1e-6, atol=0)


def test_low_rank_weight(no_exact_fallback):
    """Rank 5 < the Krylov space: the blocks run out of new directions; the basis must stay orthonormal."""
    g = torch.Generator().manual_seed(5)
    s = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    Q1, _ = torch.linalg.qr(torch.randn(300, 5, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(200, 5, generator=g, dtype=torch.float64))
    W = (Q1 * s) @ Q2.T
    f = svd_factors(W, 2, SVDOptions(method="krylov", dtype="float64"))
    torch.testing.assert_close(f.S, s[:2], rtol=1e-10, atol=0)
    assert angle(f.U, Q1[:, :2]) < 1e-7 and angle(f.V, Q2[:, :2]) < 1e-7
    torch.manual_seed(99)  # the random directions that replace exhausted ones come from the seeded generator
    again = svd_factors(W, 2, SVDOptions(method="krylov", dtype="float64"))
    assert torch.equal(again.U, f.U) and torch.equal(again.S, f.S) and torch.equal(again.V, f.V)


def test_unconverged_falls_back_to_exact_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(svd_mod, "KRYLOV_MAX_BLOCKS", 1)
    W = close_gap_matrix()[0].float()
    with caplog.at_level(logging.WARNING, logger=svd_mod.__name__):
        f = svd_factors(W, 2, SVDOptions(method="krylov"))
    assert [r.getMessage() for r in caplog.records] == [
        f"TinyLoRA krylov SVD of a {tuple(W.shape)} weight did not converge in 2 blocks of 10; using the exact SVD"
    ]
    e = svd_factors(W, 2, SVDOptions(method="exact", dtype="float64"))
    torch.testing.assert_close(f.U, e.U.float(), rtol=0, atol=1e-5)


def test_small_weight_uses_exact(no_exact_fallback):
    W = torch.randn(12, 30, dtype=torch.float64)
    with pytest.raises(AssertionError, match="fell back"):  # b = 10 >= 12 / 2: no Krylov step fits
        svd_factors(W, 2, SVDOptions(method="krylov"))


def test_cache_key_holds_the_method_and_the_stopping_rule(tmp_path, monkeypatch):
    W = torch.randn(60, 40)
    keys = {m: cache_key(W, 2, SVDOptions(method=m)) for m in svd_mod.SVD_METHODS}
    assert len(set(keys.values())) == len(keys)
    assert cache_key(W, 3, SVDOptions(method="krylov")) != keys["krylov"]
    cache = FactorCache(tmp_path)
    cache.get_or_compute(W, 2, SVDOptions(method="krylov"))
    monkeypatch.setattr(svd_mod, "KRYLOV_TOL", {"float32": 1e-3, "float64": 1e-10})
    assert cache_key(W, 2, SVDOptions(method="krylov")) != keys["krylov"]
    monkeypatch.setattr(svd_mod, "KRYLOV_TOL", {"float32": 1e-5, "float64": 1e-10})
    monkeypatch.setattr(svd_mod, "KRYLOV_MAX_BLOCKS", 7)
    assert cache_key(W, 2, SVDOptions(method="krylov")) != keys["krylov"]


def test_config_accepts_krylov_and_passes_it_on():
    cfg = TinyLoRAConfig(budget=4, svd_method="krylov")
    assert cfg.svd_options.method == "krylov"


@pytest.mark.parametrize("method", svd_mod.SVD_METHODS)
@pytest.mark.parametrize("shape", [(60, 40), (40, 60)])
def test_rank_one_factors_have_row_major_strides(method, shape):
    """r = 1: U [out, 1] and V [in, 1] must have stride (1, 1), or viewing their bytes (factor digests) fails."""
    f = svd_factors(torch.randn(*shape), 1, SVDOptions(method=method))
    for t in (f.U, f.V):
        assert t.stride() == (1, 1)
        t.view(torch.uint8)


def test_a_column_numerically_inside_the_span_is_replaced_by_a_seeded_random_direction():
    """_new_block on Z = [c u, c u + 1e-5 w] (u, w unit, orthogonal to Q = e0 and to each other, c = 1e6):
    the second column's new part (1e-5) is below 1e-10 x the largest column norm (1e-4), so it is replaced
    by the generator's next Gaussian column, made orthogonal to Q and u; the first column stays u."""
    from tinylora_verl.adapter.svd import _new_block

    n = 10_001
    e0 = torch.zeros(n, 1, dtype=torch.float64)
    e0[0] = 1.0
    u = torch.zeros(n, dtype=torch.float64)
    u[1:] = (n - 1) ** -0.5  # spread: every row of Z is small next to its columns
    w = torch.zeros(n, dtype=torch.float64)
    w[1], w[2] = 2**-0.5, -(2**-0.5)
    Z = torch.stack([1e6 * u, 1e6 * u + 1e-5 * w], dim=1)
    torch.manual_seed(123)  # the global RNG must play no part
    got = _new_block(e0, Z.clone(), torch.Generator().manual_seed(7))
    r = torch.randn(n, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)[:, 0]
    r = r - e0[:, 0] * r[0] - u * (u @ r)
    r = r / r.norm()
    assert got.shape == (n, 2)
    assert abs(float(got[:, 0] @ u)) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(got[:, 1] @ r)) == pytest.approx(1.0, abs=1e-9)
    torch.manual_seed(456)
    assert torch.equal(_new_block(e0, Z.clone(), torch.Generator().manual_seed(7)), got)


def test_a_column_above_the_threshold_is_kept():
    """The same Z with 1.2e-4 in w: above 1e-10 x the largest column norm (1e-4), so the block is (u, w),
    no random column (the threshold is per column, not the whole block's norm, 1.4e-4)."""
    from tinylora_verl.adapter.svd import _new_block

    n = 10_001
    e0 = torch.zeros(n, 1, dtype=torch.float64)
    e0[0] = 1.0
    u = torch.zeros(n, dtype=torch.float64)
    u[1:] = (n - 1) ** -0.5
    w = torch.zeros(n, dtype=torch.float64)
    w[1], w[2] = 2**-0.5, -(2**-0.5)
    Z = torch.stack([1e6 * u, 1e6 * u + 1.2e-4 * w], dim=1)
    got = _new_block(e0, Z, torch.Generator().manual_seed(7))
    assert abs(float(got[:, 0] @ u)) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(got[:, 1] @ w)) == pytest.approx(1.0, abs=1e-6)


def _spy_blocks(monkeypatch):
    """Record the Z of every _new_block call (the first is A Omega) and whether the exact SVD ran."""
    calls = {"blocks": [], "exact": 0}
    real_block, real_exact = svd_mod._new_block, svd_mod._exact

    def block(Q, Z, gen):
        calls["blocks"].append(Z.clone())
        return real_block(Q, Z, gen)

    def exact(W, r):
        calls["exact"] += 1
        return real_exact(W, r)

    monkeypatch.setattr(svd_mod, "_new_block", block)
    monkeypatch.setattr(svd_mod, "_exact", exact)
    return calls


@pytest.mark.parametrize("s,krylov", [(20, True), (19, False)])
def test_krylov_runs_when_the_shorter_side_holds_two_blocks_else_the_exact_svd(monkeypatch, s, krylov):
    """b = r + oversample = 10: steps = s // b - 1 Krylov blocks after the first; none (s < 2 b) means the
    exact SVD, without building a basis."""
    W = torch.randn(s, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    calls = _spy_blocks(monkeypatch)
    svd_factors(W, 2, SVDOptions(method="krylov", dtype="float64", oversample=8))
    assert (len(calls["blocks"]) >= 1) == krylov
    if not krylov:
        assert calls["exact"] == 1


def test_a_square_weight_is_not_transposed(monkeypatch):
    """A = W for out <= in (W^T only for a tall W): the first block is W Omega, Omega [in, b] seeded."""
    W = torch.randn(24, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    calls = _spy_blocks(monkeypatch)
    svd_factors(W, 2, SVDOptions(method="krylov", dtype="float64", oversample=8, seed=5))
    omega = torch.randn(24, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(calls["blocks"][0], W @ omega, rtol=1e-12, atol=1e-12)


def test_later_blocks_draw_their_replacement_directions_from_the_seeded_generator():
    """Rank 15 with blocks of 10: the second block has only 5 new directions, so 5 are drawn at random —
    from the SVD's own generator: the factors do not depend on the global RNG."""
    g = torch.Generator().manual_seed(6)
    s = torch.linspace(8.0, 1.0, 15, dtype=torch.float64)
    Q1, _ = torch.linalg.qr(torch.randn(300, 15, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(200, 15, generator=g, dtype=torch.float64))
    W = (Q1 * s) @ Q2.T
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        results.append(svd_factors(W, 2, SVDOptions(method="krylov", dtype="float64")))
    assert all(torch.equal(getattr(results[0], k), getattr(results[1], k)) for k in ("U", "S", "V"))
