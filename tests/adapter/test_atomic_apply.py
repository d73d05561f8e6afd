"""apply_tinylora refuses before it touches the model: after any refusal the model is exactly as it was
(modules, requires_grad flags, weights, no container) and the right config then applies to the same object
and gives the same outputs as on a fresh copy."""

import logging
import re
import time

import pytest
import torch

from tests.adapter.support import assert_unchanged, logits, randomize, small_model, snapshot
from tinylora_verl.adapter import (
    TinyLoRAConfig,
    TinyLoRAConfigError,
    TinyLoRAError,
    TinyLoRAUserError,
    apply_tinylora,
)
from tinylora_verl.adapter import layer as layer_mod
from tinylora_verl.adapter import prepare as prepare_mod

GOOD = dict(budget=4, seed=3)


def expected_logits(cfg=GOOD):
    h = apply_tinylora(small_model(), TinyLoRAConfig(**cfg))
    randomize(h, seed=7)
    return logits(h.model)


def apply_good_and_compare(model):
    handle = apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert len(handle.layers) == 14
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"tinylora.v.{g}" for g in range(4)
    ]
    randomize(handle, seed=7)
    assert torch.equal(logits(model), expected_logits())


def _nan_in_last_module(model):
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[3, 5] = float("nan")

    def undo(m):  # the base is good again
        with torch.no_grad():
            m.model.layers[1].mlp.down_proj.weight.nan_to_num_(0.0)

    return undo


REFUSALS = [
    # (config kwargs or a callable building the call, exception type, message)
    (
        dict(budget=4, frozen_rank=33),
        TinyLoRAConfigError,
        "frozen_rank=33 exceeds min\\(out, in\\)=32 of .*k_proj",
    ),
    (dict(budget=4, tie_factor=15), TinyLoRAError, "tie_factor=15 exceeds the 14 modules"),
    (dict(budget=4, tie_mode="none"), TinyLoRAError, "below the 14 modules"),
    (dict(budget=4, target_modules=["query"]), TinyLoRAError, "Linear layers are named"),
    (dict(budget=4, tie_mode="all", projection_dim=3), TinyLoRAError, "conflicts with projection_dim"),
    (
        dict(budget=None, projection_dim=(1 << 22) // 4, tie_mode="all"),
        TinyLoRAConfigError,
        "needs 58720256 random P entries, over the 4194304 limit .*u <= 74898 here",
    ),
]


@pytest.mark.parametrize("cfg,exc,match", REFUSALS, ids=[f"refusal-{i}" for i in range(len(REFUSALS))])
def test_refused_config_leaves_the_model_as_it_was(cfg, exc, match):
    model = small_model()
    before = snapshot(model)
    start = time.perf_counter()
    with pytest.raises(exc, match=match):
        apply_tinylora(model, TinyLoRAConfig(**cfg))
    assert time.perf_counter() - start < 2.0  # refused before any P generation or SVD
    assert_unchanged(model, before)
    apply_good_and_compare(model)


def test_requires_grad_flags_survive_a_refusal_unchanged():
    model = small_model()
    model.model.embed_tokens.weight.requires_grad_(False)  # a caller's own choice, kept as it was
    before = snapshot(model)
    with pytest.raises(TinyLoRAConfigError):
        apply_tinylora(model, TinyLoRAConfig(budget=4, frozen_rank=40))
    assert_unchanged(model, before)
    assert model.model.layers[0].self_attn.q_proj.weight.requires_grad
    assert not model.model.embed_tokens.weight.requires_grad


def test_nan_weight_found_during_the_svds_refuses_without_a_change():
    model = small_model()
    undo = _nan_in_last_module(model)
    before = snapshot(model)
    with pytest.raises(TinyLoRAError, match="model.layers.1.mlp.down_proj.weight holds NaN or inf"):
        apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert_unchanged(model, before)  # 13 earlier modules were decomposed, none was wrapped
    undo(model)
    handle = apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert (
        len(handle.layers) == 14
        and torch.isfinite(handle.layers["model.layers.1.mlp.down_proj"].tinylora_U).all()
    )


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda m: apply_tinylora(m, {"budget": 4}), TinyLoRAConfigError, "config must be a TinyLoRAConfig"),
        (
            lambda m: apply_tinylora(m, TinyLoRAConfig(**GOOD), compute_factors="no"),
            TinyLoRAConfigError,
            "True or False",
        ),
        (lambda m: apply_tinylora(m, _mutated(seed=2**64)), TinyLoRAConfigError, "seed=18446744073709551616"),
        (lambda m: apply_tinylora(m, _mutated(alpha=float("inf"))), TinyLoRAConfigError, "alpha=inf"),
        (
            lambda m: apply_tinylora(m, _mutated(target_modules=None)),
            TinyLoRAConfigError,
            "target_modules=None",
        ),
        (
            lambda m: apply_tinylora("model", TinyLoRAConfig(**GOOD)),
            TinyLoRAError,
            "must be a torch.nn.Module",
        ),
    ],
)
def test_bad_arguments_are_user_errors_and_change_nothing(call, exc, match):
    model = small_model()
    before = snapshot(model)
    with pytest.raises(exc, match=match) as err:
        call(model)
    assert isinstance(err.value, TinyLoRAUserError)
    assert_unchanged(model, before)
    apply_good_and_compare(model)


def _mutated(**changes):
    cfg = TinyLoRAConfig(**GOOD)
    for k, v in changes.items():
        setattr(cfg, k, v)  # bypasses __post_init__: apply_tinylora validates again
    return cfg


def test_cache_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    model = small_model()
    before = snapshot(model)
    for bad, message in (
        (
            tmp_path / "f",
            "svd_cache_dir={!r} is a file, not a directory: give a directory (it is created if missing) or None "
            "for no cache",
        ),
        (
            tmp_path / "f" / "sub",
            "svd_cache_dir={!r} cannot be created (Not a directory): give a writable directory or None for no "
            "cache",
        ),
    ):
        with pytest.raises(TinyLoRAConfigError, match="^" + re.escape(message.format(str(bad))) + "$"):
            apply_tinylora(model, TinyLoRAConfig(**GOOD, svd_cache_dir=str(bad)))
        assert_unchanged(model, before)
    cache = tmp_path / "new" / "nested" / "cache"  # created with its parents
    h = apply_tinylora(model, TinyLoRAConfig(**GOOD, svd_cache_dir=str(cache)))
    assert len(list(cache.glob("*.safetensors"))) == 14
    randomize(h, seed=7)
    assert torch.equal(logits(model), expected_logits())
    again = apply_tinylora(small_model(), TinyLoRAConfig(**GOOD, svd_cache_dir=str(cache)))  # it exists now
    randomize(again, seed=7)
    assert torch.equal(logits(again.model), expected_logits())


def test_failure_while_swapping_layers_in_is_rolled_back(monkeypatch):
    """The last phase cannot fail on valid input; if it ever does (a bug, an interrupt), it is undone."""
    real, calls = layer_mod.TinyLoRALinear, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("tinylora_verl.adapter.model.TinyLoRALinear", flaky)
    model = small_model()
    model.model.norm.weight.requires_grad_(False)
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert len(calls) == 9  # eight layers had been swapped in
    assert_unchanged(model, before)
    monkeypatch.setattr("tinylora_verl.adapter.model.TinyLoRALinear", real)
    model.model.norm.weight.requires_grad_(True)
    apply_good_and_compare(model)


def test_failure_after_the_base_was_frozen_restores_the_requires_grad_flags():
    model = small_model()
    model.model.norm.weight.requires_grad_(False)
    before = snapshot(model)

    def refuse(name, module):
        raise RuntimeError("add_module failed")

    model.add_module = refuse  # the last step of install, after the base parameters were frozen
    with pytest.raises(RuntimeError, match="add_module failed"):
        apply_tinylora(model, TinyLoRAConfig(**GOOD))
    del model.add_module
    assert_unchanged(model, before)
    assert model.model.layers[0].mlp.up_proj.weight.requires_grad


def test_second_apply_is_refused_and_the_first_handle_keeps_working():
    model = small_model()
    handle = apply_tinylora(model, TinyLoRAConfig(**GOOD))
    randomize(handle, seed=7)
    before = snapshot(model)
    with pytest.raises(TinyLoRAError, match="already has TinyLoRA"):
        apply_tinylora(model, TinyLoRAConfig(budget=13))
    assert_unchanged(model, before)
    assert torch.equal(logits(model), expected_logits())


def test_prepare_reads_no_weight_values(monkeypatch):
    """The checks and P need names and shapes only; the SVD phase is the first to read weights."""
    model = small_model()
    seen = []
    monkeypatch.setattr(
        prepare_mod, "svd_factors", lambda W, r, o: seen.append(1) or (_ for _ in ()).throw(AssertionError)
    )
    p = prepare_mod.prepare(model, TinyLoRAConfig(**GOOD))
    assert seen == [] and p.plan.num_groups == 4 and len(p.projections) == 14


def test_refusals_and_the_inexact_budget_warning_in_full(caplog, monkeypatch):
    model = small_model()
    with pytest.raises(TinyLoRAError) as err:
        apply_tinylora("model", TinyLoRAConfig(**GOOD))
    assert str(err.value) == "model must be a torch.nn.Module, got str"
    with pytest.raises(TinyLoRAConfigError) as err:
        apply_tinylora(model, {"budget": 4})
    assert str(err.value) == (
        "config must be a TinyLoRAConfig, got dict: use TinyLoRAConfig(**settings) or "
        "TinyLoRAConfig.from_dict(settings)"
    )
    with pytest.raises(TinyLoRAError) as err:
        apply_tinylora(model, TinyLoRAConfig(budget=4, target_modules=["query"]))
    assert str(err.value) == (
        "no nn.Linear named ['query'] in this model; its Linear layers are named ['down_proj', 'gate_proj', "
        "'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj']: set target_modules to some of those"
    )
    with torch.device("meta"):
        meta = small_model()
    with pytest.raises(TinyLoRAError) as err:
        apply_tinylora(meta, TinyLoRAConfig(**GOOD))
    assert str(err.value) == (
        "model.layers.0.self_attn.q_proj.weight is on the meta device: apply TinyLoRA to materialised, "
        "unsharded weights (before FSDP wraps the model), or pass compute_factors=False in a process that "
        "will receive the factors from one that holds the full weights"
    )
    undo = _nan_in_last_module(model)
    with pytest.raises(TinyLoRAError) as err:
        apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert str(err.value) == (
        "model.layers.1.mlp.down_proj.weight holds NaN or inf values: the base model is damaged; reload it "
        "from its checkpoint before applying TinyLoRA"
    )
    undo(model)
    caplog.set_level(logging.WARNING, logger=prepare_mod.__name__)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=30, tie_mode="none", seed=3))
    plan = handle.plan
    assert not plan.exact and plan.num_trainable == 28
    assert [r.getMessage() for r in caplog.records] == [
        f"TinyLoRA budget 30 is not reachable exactly with 14 modules; using {plan.num_trainable} trainable "
        f"parameters (u={plan.projection_dim}, tie_factor={plan.tie_factor})"
    ]
    with pytest.raises(TinyLoRAError) as err:
        apply_tinylora(model, TinyLoRAConfig(**GOOD))
    assert str(err.value) == (
        "this model already has TinyLoRA applied; use the handle you got, or load the base model again"
    )


def test_limits_are_inclusive(monkeypatch):
    """frozen_rank equal to the smallest weight side (32, k_proj) and a P of exactly the entry limit apply."""
    handle = apply_tinylora(small_model(), TinyLoRAConfig(budget=4, frozen_rank=32))
    assert handle.layers["model.layers.0.self_attn.k_proj"].tinylora_S.shape == (32,)
    monkeypatch.setattr(prepare_mod, "MAX_PROJECTION_ENTRIES", 14 * 1 * 2 * 2)  # modules * u * r^2 of GOOD
    apply_tinylora(small_model(), TinyLoRAConfig(**GOOD))
    monkeypatch.setattr(prepare_mod, "MAX_PROJECTION_ENTRIES", 14 * 1 * 2 * 2 - 1)
    with pytest.raises(TinyLoRAConfigError, match="needs 56 random P entries, over the 55 limit"):
        apply_tinylora(small_model(), TinyLoRAConfig(**GOOD))


def test_no_config_means_the_default_config():
    handle = apply_tinylora(small_model())
    assert handle.config == TinyLoRAConfig()
