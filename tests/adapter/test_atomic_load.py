"""load_adapter checks module names, base fingerprint, tying and P before any SVD and before it touches the
model; after a refusal the model is exactly as it was and the right adapter loads into the same object."""

import json
import re
import shutil

import pytest
import torch

from tests.adapter.support import assert_unchanged, logits, randomize, small_model, snapshot
from tinylora_verl.adapter import (
    AdapterLoadError,
    TinyLoRAConfig,
    apply_tinylora,
    load_adapter,
)
from tinylora_verl.adapter import prepare as prepare_mod
from tinylora_verl.adapter.metadata import CONFIG_NAME, seal


def exactly(message: str) -> str:
    """A pytest.raises pattern matching this whole message and nothing else."""
    return "^" + re.escape(message) + "$"


def named(model, name: str):
    model.config._name_or_path = name  # what the checkpoint records as the base model
    return model


def trained(path, model_seed=0, model_kw=None, **cfg):
    handle = apply_tinylora(
        named(small_model(model_seed, **(model_kw or {})), f"org/base-{model_seed}"),
        TinyLoRAConfig(**{"budget": 4, **cfg}),
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
    model = named(small_model(seed=1), "org/other")
    before = snapshot(model)
    forbid_svd(monkeypatch)
    message = (
        "the adapter was trained on base model 'org/base-0', but the weights of this model ('org/other') "
        "differ from it (fingerprint mismatch): load the adapter on the base model it was trained on"
    )
    with pytest.raises(AdapterLoadError, match=exactly(message)):
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
    message = (
        "the adapter was trained on 14 modules of 'org/base-0' (Qwen2ForCausalLM); this model "
        "({}) has {} matching modules with other names: load it on the base model it was trained on"
    )
    with pytest.raises(AdapterLoadError, match=exactly(message.format("Qwen2ForCausalLM", 21))):
        load_adapter(model, wrong)
    assert_unchanged(model, before)

    class Wrapper(torch.nn.Module):  # the same 14 modules under other names
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    with pytest.raises(AdapterLoadError, match=exactly(message.format("Wrapper", 14))):
        load_adapter(Wrapper(small_model()), wrong)
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


EDITED = (
    "{path} was edited after it was saved (metadata_sha256 does not match its contents): the seed, frozen "
    "rank, alpha, tying and hashes it records define the adapter and cannot be changed — restore the file "
    "from the checkpoint it came from, or train a new adapter with the settings you want"
)
OTHER_P = (
    "{path}: the P matrices its config regenerates (seed=4, frozen_rank=2, u=1) are not the ones it was "
    "trained with (P is identical on every platform, so the recorded settings were changed): restore the "
    "file from the checkpoint it came from"
)
OTHER_TYING = (
    "{path}: the tying it records (u=1, 4 groups) differs from the one its config gives here (u=1, 7 "
    "groups); the metadata is inconsistent (edited by hand?): restore it from the checkpoint it came from"
)


@pytest.mark.parametrize(
    "reseal,change,message",
    [
        (False, dict(seed=4), EDITED),
        (True, dict(seed=4), OTHER_P),
        (True, dict(tie_mode="structured", budget=7), OTHER_TYING),
    ],
)
def test_edited_checkpoint_is_refused_then_the_original_loads_into_the_same_model(
    tmp_path, monkeypatch, reseal, change, message
):
    original, want = trained(tmp_path / "a")
    edited = tmp_path / "edited"
    shutil.copytree(original, edited)
    _forge(edited, reseal, **change)
    model = small_model()
    before = snapshot(model)
    forbid_svd(monkeypatch)
    match = exactly(message.format(path=edited / CONFIG_NAME))
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


def test_load_into_a_model_on_the_meta_device_is_refused(tmp_path):
    path, _ = trained(tmp_path / "a")
    with torch.device("meta"):
        model = small_model()
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(model, path)
    assert str(err.value) == (
        f"the adapter in {path} cannot be applied to this model: "
        "model.layers.0.self_attn.q_proj.weight is on the meta device: apply TinyLoRA to materialised, "
        "unsharded weights (before FSDP wraps the model), or pass compute_factors=False in a process that "
        "will receive the factors from one that holds the full weights"
    )
