"""The randomized SVD against a float64 reference written independently (orthonormal basis of
(W W^T)^q W Omega, then the exact SVD of W projected on it), the seed's effect on it and on apply_tinylora,
and a cache keyed by every setting that changes the factors (r included)."""

import pytest
import torch

from tests.adapter.support import small_model
from tinylora_verl.adapter import TinyLoRAConfig, apply_tinylora
from tinylora_verl.adapter import svd as svd_mod
from tinylora_verl.adapter.svd import FactorCache, SVDOptions, cache_key, canonicalize_signs, svd_factors


def flat_spectrum(out_f=30, in_f=20, seed=0):
    """A Gaussian matrix: no spectral gap, so few power iterations leave a seed-dependent subspace."""
    return torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference(W, r, q, oversample, seed):
    """Halko et al. alg. 4.3 in exact arithmetic: Q spans (W W^T)^q W Omega; factors = top-r SVD of Q Q^T W."""
    k = min(r + oversample, *W.shape)
    omega = torch.randn(W.shape[1], k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Y = W @ omega
    for _ in range(q):
        Y = W @ (W.T @ Y)
    basis = torch.linalg.svd(Y, full_matrices=False).U  # orthonormal basis of range(Y)
    U, S, Vh = torch.linalg.svd(basis @ (basis.T @ W), full_matrices=False)
    U, V = canonicalize_signs(U[:, :r], Vh[:r].T)
    return U, S[:r], V


@pytest.mark.parametrize("q,oversample,seed", [(0, 0, 0), (0, 0, 1), (1, 0, 2), (2, 3, 5), (0, 4, 7)])
def test_randomized_svd_matches_the_float64_reference(q, oversample, seed):
    W = flat_spectrum()
    f = svd_factors(W, 2, SVDOptions(dtype="float64", power_iters=q, oversample=oversample, seed=seed))
    U, S, V = reference(W, 2, q, oversample, seed)
    torch.testing.assert_close(f.S, S, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f.U, U, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(f.V, V, rtol=1e-8, atol=1e-8)


def test_the_seed_changes_the_factors_of_an_unconverged_svd():
    W = flat_spectrum()
    opts = dict(dtype="float64", power_iters=0, oversample=0)
    a = svd_factors(W, 2, SVDOptions(seed=0, **opts))
    b = svd_factors(W, 2, SVDOptions(seed=1, **opts))
    assert (a.U - b.U).abs().max() > 1e-2 and (a.S - b.S).abs().max() > 1e-2
    assert torch.equal(a.U, svd_factors(W, 2, SVDOptions(seed=0, **opts)).U)


def test_apply_tinylora_runs_the_svd_with_the_configured_seed_and_settings():
    cfg = dict(budget=4, svd_method="randomized", svd_power_iters=0, svd_oversample=1, svd_dtype="float64")
    model = small_model()
    W = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    h = apply_tinylora(model, TinyLoRAConfig(seed=5, **cfg))
    U = h.layers["model.layers.0.mlp.up_proj"].tinylora_U
    want = svd_factors(W, 2, SVDOptions(dtype="float64", power_iters=0, oversample=1, seed=5))
    assert torch.equal(U, want.U)
    torch.testing.assert_close(U, reference(W.double(), 2, 0, 1, 5)[0], rtol=1e-8, atol=1e-8)
    other = svd_factors(W, 2, SVDOptions(dtype="float64", power_iters=0, oversample=1, seed=0))
    assert (U - other.U).abs().max() > 1e-3


@pytest.mark.parametrize(
    "change",
    [
        dict(r=3),
        dict(method="exact"),
        dict(dtype="float64"),
        dict(oversample=2),
        dict(power_iters=1),
        dict(seed=1),
    ],
)
def test_cache_key_covers_every_setting_that_changes_the_factors(tmp_path, monkeypatch, change):
    W = flat_spectrum().float()
    base = dict(method="randomized", dtype="float32", oversample=0, power_iters=0, seed=0)
    cache = FactorCache(tmp_path)
    cache.get_or_compute(W, 2, SVDOptions(**base))
    r = change.pop("r", 2)
    opts = SVDOptions(**{**base, **change})
    got = cache.get_or_compute(W, r, opts)
    want = svd_factors(W, r, opts)
    assert got.U.shape == (30, r) and torch.equal(got.U, want.U) and torch.equal(got.S, want.S)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    monkeypatch.setattr(
        svd_mod, "svd_factors", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed"))
    )
    again = cache.get_or_compute(W, r, opts)  # now a hit
    assert torch.equal(again.U, want.U)


def test_unwritable_cache_is_a_warning_and_the_factors_are_still_right(tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    W = flat_spectrum().float()
    got = FactorCache(tmp_path / "file").get_or_compute(W, 2, SVDOptions())
    assert torch.equal(got.U, svd_factors(W, 2, SVDOptions()).U)
    assert "SVD cache" in caplog.text and "not written" in caplog.text


def test_a_cache_directory_is_created_with_its_parents(tmp_path):
    W = flat_spectrum().float()
    nested = tmp_path / "a" / "b" / "svd"
    FactorCache(nested).get_or_compute(W, 2, SVDOptions())
    (entry,) = nested.glob("*.safetensors")
    assert entry.name == f"{cache_key(W, 2, SVDOptions())}.safetensors"


def test_the_unwritten_cache_warning_names_the_file_and_the_error(tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    W = flat_spectrum().float()
    FactorCache(tmp_path / "file").get_or_compute(W, 2, SVDOptions())
    (record,) = [r for r in caplog.records if "not written" in r.getMessage()]
    path = tmp_path / "file" / f"{cache_key(W, 2, SVDOptions())}.safetensors"
    assert record.getMessage() == (
        f"TinyLoRA SVD cache {path} not written ([Errno 17] File exists: '{tmp_path / 'file'}'); "
        "the factors are used uncached"
    )


def test_cache_key_is_the_documented_hash_of_the_weight_and_every_setting():
    import hashlib

    W = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    content = hashlib.sha256(b"(2, 3)|torch.float32|" + W.numpy().tobytes()).hexdigest()  # shape|dtype|bytes
    assert svd_mod.weight_digest(W) == content
    empty = torch.empty(0, 3)
    assert svd_mod.weight_digest(empty) == hashlib.sha256(b"(0, 3)|torch.float32|").hexdigest()

    def key(params: str) -> str:
        return hashlib.sha256(f"{content}|{params}".encode()).hexdigest()[:40]

    assert cache_key(W, 2, SVDOptions()) == key("r=2|randomized|float32|os=8|it=6|seed=0")
    assert cache_key(W, 1, SVDOptions(method="krylov", dtype="float64", seed=3)) == key(
        "r=1|krylov|float64|os=8|it=6|seed=3|tol=1e-10|blocks=48"
    )
