"""load_adapter checks module names, base fingerprint, tying and P before any SVD and before it touches the
model; after a refusal the model is exactly as it was and the right adapter loads into the same object."""

import json
import shutil

import pytest
import torch

from tests.adapter.support import assert_unchanged, logits, randomize, small_model, snapshot
from tinylora_verl.adapter import AdapterLoadError, TinyLoRAConfig, apply_tinylora, load_adapter
from tinylora_verl.adapter import prepare as prepare_mod
from tinylora_verl.adapter.metadata import CONFIG_NAME, seal


def trained(path, model_seed=0, model_kw=None, **cfg):
    handle = apply_tinylora(
        small_model(model_seed, **(model_kw or {})), TinyLoRAConfig(**{"budget": 4, **cfg})
    )
    randomize(handle, seed=model_seed + 11)
    handle.save_adapter(path)
    return path, logits(handle.model)


def refuse_then_load_right(model, wrong, match, right, want):
    before = snapshot(model)
    with pytest.raises(AdapterLoadError, match=match):
        load_adapter(model, wrong)
    assert_unchanged(model, before)
    handle = load_adapter(model, right)
    assert torch.equal(logits(model), want)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"tinylora.v.{g}" for g in range(handle.plan.num_groups)
    ]


def forbid_svd(monkeypatch):
    """From here on, any SVD fails the test with another exception than the expected refusal."""

    def boom(*a, **k):
        raise AssertionError("the SVD ran before the checks")

    monkeypatch.setattr(prepare_mod, "svd_factors", boom)


def test_other_base_model_is_refused_before_the_svd_then_its_own_adapter_loads(tmp_path, monkeypatch):
    wrong, _ = trained(tmp_path / "a", model_seed=0)
    right, want = trained(tmp_path / "b", model_seed=1)
    model = small_model(seed=1)
    before = snapshot(model)
    forbid_svd(monkeypatch)
    with pytest.raises(AdapterLoadError, match="fingerprint mismatch"):
        load_adapter(model, wrong)
    assert_unchanged(model, before)
    monkeypatch.undo()
    refuse_then_load_right(model, wrong, "fingerprint mismatch", right, want)


def test_other_architecture_is_refused_before_the_svd(tmp_path, monkeypatch):
    wrong, _ = trained(tmp_path / "a")
    right, want = trained(tmp_path / "b", model_kw=dict(num_layers=3))
    model = small_model(num_layers=3)
    before = snapshot(model)
    forbid_svd(monkeypatch)
    with pytest.raises(AdapterLoadError, match="trained on 14 modules .* has 21 matching modules"):
        load_adapter(model, wrong)
    assert_unchanged(model, before)
    monkeypatch.undo()
    refuse_then_load_right(model, wrong, "has 21 matching modules", right, want)


def test_rank_the_model_cannot_hold_is_refused_then_the_right_adapter_loads(tmp_path):
    wrong, _ = trained(tmp_path / "a", frozen_rank=20)  # k_proj is 32 x 64 here ...
    right, want = trained(tmp_path / "b", model_kw=dict(hidden=32))  # ... and 16 x 32 here
    model = small_model(hidden=32)
    refuse_then_load_right(
        model, wrong, "cannot be applied to this model: frozen_rank=20 exceeds", right, want
    )


def _forge(path, reseal, **config):
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta["config"].update(config)
    (path / CONFIG_NAME).write_text(json.dumps(seal(meta) if reseal else meta))


@pytest.mark.parametrize(
    "reseal,change,match",
    [
        (False, dict(seed=4), "edited after it was saved"),
        (True, dict(seed=4), "P matrices its config regenerates"),
        (True, dict(tie_mode="structured", budget=7), "the tying it records"),
    ],
)
def test_edited_checkpoint_is_refused_then_the_original_loads_into_the_same_model(
    tmp_path, monkeypatch, reseal, change, match
):
    original, want = trained(tmp_path / "a")
    edited = tmp_path / "edited"
    shutil.copytree(original, edited)
    _forge(edited, reseal, **change)
    model = small_model()
    before = snapshot(model)
    forbid_svd(monkeypatch)
    with pytest.raises(AdapterLoadError, match=match):
        load_adapter(model, edited)
    assert_unchanged(model, before)
    monkeypatch.undo()
    refuse_then_load_right(model, edited, match, original, want)


def test_load_into_a_model_that_already_has_tinylora_is_refused_unchanged(tmp_path):
    path, want = trained(tmp_path / "a")
    model = small_model()
    load_adapter(model, path)
    before = snapshot(model)
    with pytest.raises(AdapterLoadError, match="already has TinyLoRA applied"):
        load_adapter(model, path)
    assert_unchanged(model, before)
    assert torch.equal(logits(model), want)


def test_override_of_a_defining_setting_is_refused(tmp_path):
    path, want = trained(tmp_path / "a")
    model = small_model()
    with pytest.raises(AdapterLoadError, match="cannot override \\['seed'\\]"):
        load_adapter(model, path, seed=1)
    with pytest.raises(AdapterLoadError, match="(?s)invalid config .*svd_cache_dir=5"):
        load_adapter(model, path, svd_cache_dir=5)
    load_adapter(model, path, svd_cache_dir=str(tmp_path / "cache"))
    assert torch.equal(logits(model), want)
