"""SVD init: correct top-r factors, canonical signs, randomized ~ exact, cache behaviour, refusals."""

import pytest
import torch

from tinylora_verl.adapter import svd as svd_mod
from tinylora_verl.adapter.svd import FactorCache, SVDOptions, canonicalize_signs, svd_factors


def known_spectrum_matrix(out_f=40, in_f=24, spectrum=(9.0, 5.0, 1.0, 0.5, 0.25), seed=0):
    """W = Q1 diag(s) Q2^T with known singular values/vectors (float64)."""
    g = torch.Generator().manual_seed(seed)
    k = len(spectrum)
    Q1, _ = torch.linalg.qr(torch.randn(out_f, k, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(in_f, k, generator=g, dtype=torch.float64))
    return Q1 @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ Q2.T, Q1, Q2


def principal_angle(A, B):
    """Largest principal angle between the column spaces of A and B (radians)."""
    Qa, _ = torch.linalg.qr(A.double())
    Qb, _ = torch.linalg.qr(B.double())
    s = torch.linalg.svdvals(Qa.T @ Qb).clamp(max=1.0)
    return torch.arccos(s.min()).item()


@pytest.mark.parametrize("method", ["exact", "randomized"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_factors_recover_known_top_r(method, dtype):
    W, Q1, Q2 = known_spectrum_matrix()
    f = svd_factors(W.float() if dtype == "float32" else W, 2, SVDOptions(method=method, dtype=dtype))
    assert f.U.shape == (40, 2) and f.S.shape == (2,) and f.V.shape == (24, 2)
    assert f.U.dtype == {"float32": torch.float32, "float64": torch.float64}[dtype]
    tol = 1e-5 if dtype == "float32" else 1e-10
    torch.testing.assert_close(
        f.S.double(), torch.tensor([9.0, 5.0], dtype=torch.float64), rtol=tol, atol=tol
    )
    assert principal_angle(f.U, Q1[:, :2]) < 10 * tol**0.5
    assert principal_angle(f.V, Q2[:, :2]) < 10 * tol**0.5
    # U diag(S) V^T is the best rank-2 approximation
    best = Q1[:, :2] @ torch.diag(torch.tensor([9.0, 5.0], dtype=torch.float64)) @ Q2[:, :2].T
    torch.testing.assert_close((f.U * f.S) @ f.V.T, best.to(f.U.dtype), rtol=1e3 * tol, atol=1e3 * tol)


def test_signs_are_canonical_and_input_sign_independent():
    W, _, _ = known_spectrum_matrix(seed=1)
    f = svd_factors(W.float(), 3, SVDOptions(method="exact"))
    idx = f.U.abs().argmax(dim=0)
    assert (f.U[idx, torch.arange(3)] > 0).all()
    # an SVD routine returning flipped columns gives the same canonical factors
    U2, V2 = canonicalize_signs(-f.U, -f.V)
    assert torch.equal(U2, f.U) and torch.equal(V2, f.V)
    # randomized and exact agree after canonicalisation (same signs, not just the same subspace)
    g = svd_factors(W.float(), 3, SVDOptions(method="randomized"))
    torch.testing.assert_close(g.U, f.U, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g.V, f.V, rtol=1e-4, atol=1e-4)


def test_randomized_is_seeded_and_reproducible():
    W = torch.randn(64, 48)
    a = svd_factors(W, 2, SVDOptions(seed=0))
    b = svd_factors(W, 2, SVDOptions(seed=0))
    assert torch.equal(a.U, b.U) and torch.equal(a.S, b.S) and torch.equal(a.V, b.V)


def test_low_precision_weight_is_decomposed_in_float32():
    W = torch.randn(32, 16).to(torch.bfloat16)
    f = svd_factors(W, 2)
    assert f.U.dtype == torch.float32
    ref = torch.linalg.svdvals(W.double())[:2]
    torch.testing.assert_close(f.S.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "weight,r,opts,match",
    [
        (torch.randn(4), 2, SVDOptions(), "2-D weight"),
        (torch.randn(4, 3), 4, SVDOptions(), "frozen_rank=4"),
        (torch.randn(4, 3), 0, SVDOptions(), "frozen_rank=0"),
        (torch.randn(4, 3), 2, SVDOptions(method="qr"), "svd method"),
        (torch.randn(4, 3), 2, SVDOptions(dtype="float16"), "svd dtype"),
    ],
)
def test_bad_requests_are_refused(weight, r, opts, match):
    with pytest.raises(ValueError, match=match):
        svd_factors(weight, r, opts)


def test_cache_hits_skip_the_svd_and_misses_on_changed_weight(tmp_path, monkeypatch):
    W = torch.randn(30, 20)
    cache = FactorCache(tmp_path)
    first = cache.get_or_compute(W, 2, SVDOptions())
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def boom(*a, **k):
        raise AssertionError("SVD recomputed although the factors are cached")

    monkeypatch.setattr(svd_mod, "svd_factors", boom)
    again = cache.get_or_compute(W, 2, SVDOptions())
    assert torch.equal(first.U, again.U) and torch.equal(first.S, again.S) and torch.equal(first.V, again.V)
    W2 = W.clone()
    W2[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="recomputed"):
        cache.get_or_compute(W2, 2, SVDOptions())  # a changed weight is a different key
    with pytest.raises(AssertionError, match="recomputed"):
        cache.get_or_compute(W, 2, SVDOptions(method="exact"))  # so is another method


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    W = torch.randn(30, 20)
    cache = FactorCache(tmp_path)
    good = cache.get_or_compute(W, 2, SVDOptions())
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    again = cache.get_or_compute(W, 2, SVDOptions())
    assert torch.equal(good.U, again.U)
    assert entry.stat().st_size > 40  # rewritten


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_empty_factors_have_the_shapes_dtype_and_device_of_the_real_ones(device, dtype):
    """What a rank that does not hold the weight allocates to receive the factors: the same [out, r], [r],
    [in, r] in opts.dtype as svd_factors gives, on the weight's device (meta: no values read)."""
    from tinylora_verl.adapter.svd import empty_factors

    opts = SVDOptions(dtype=dtype)
    W = torch.randn(12, 7, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    real = svd_factors(W, 3, opts)
    empty = empty_factors(W.to(device), 3, opts)
    for name in ("U", "S", "V"):
        a, b = getattr(empty, name), getattr(real, name)
        assert a.shape == b.shape and a.dtype == b.dtype == getattr(torch, dtype), name
        assert a.device.type == device, name


@pytest.mark.parametrize(
    "shape,r,opts,match",
    [
        ((4,), 2, SVDOptions(), "2-D weight"),
        ((4, 3), 4, SVDOptions(), "frozen_rank=4"),
        ((4, 3), 0, SVDOptions(), "frozen_rank=0"),
        ((4, 3), 2, SVDOptions(method="qr"), "svd method"),
        ((4, 3), 2, SVDOptions(dtype="float16"), "svd dtype"),
    ],
)
def test_empty_factors_refuse_what_svd_factors_refuses(shape, r, opts, match):
    from tinylora_verl.adapter.errors import TinyLoRAConfigError
    from tinylora_verl.adapter.svd import empty_factors

    with pytest.raises(TinyLoRAConfigError, match=match):
        empty_factors(torch.empty(shape, device="meta"), r, opts)
