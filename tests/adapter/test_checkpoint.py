"""Checkpoint round trip, size, and every refusal (wrong base, corrupt/truncated files, wrong version)."""

import json
from pathlib import Path

import pytest
import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl import TinyLoRAConfig, apply_tinylora, load_adapter
from tinylora_verl.adapter.checkpoint import CONFIG_NAME, WEIGHTS_NAME, AdapterLoadError
from tinylora_verl.adapter.metadata import seal

REPO = Path(__file__).resolve().parents[2]


def trained(tmp_path, model_seed=0, **cfg):
    model = tiny_qwen2(seed=model_seed)
    handle = apply_tinylora(model, TinyLoRAConfig(**{"budget": 4, **cfg}))
    g = torch.Generator().manual_seed(3)
    handle.set_vectors(
        [torch.randn(handle.plan.projection_dim, generator=g) for _ in range(handle.plan.num_groups)]
    )
    handle.save_adapter(tmp_path / "adapter")
    return model, handle, tmp_path / "adapter"


@pytest.mark.parametrize(
    "cfg",
    [
        dict(budget=4),
        dict(budget=6, tie_mode="structured", frozen_rank=1, seed=9),
        dict(budget=13, tie_mode="all", alpha=0.25),
        dict(budget=8, tie_mode="all", lora_alpha=32),
    ],
)
def test_round_trip_restores_v_and_logits(tmp_path, prompt_ids, cfg):
    ids, mask = prompt_ids
    model, handle, path = trained(tmp_path, **cfg)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
    fresh = tiny_qwen2(seed=0)
    loaded = load_adapter(fresh, path)
    for a, b in zip(handle.get_vectors(), loaded.get_vectors()):
        assert torch.equal(a, b)
    assert loaded.plan.groups == handle.plan.groups and loaded.config == handle.config
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids, attention_mask=mask).logits, want)
    assert any(v.abs().sum() > 0 for v in loaded.get_vectors())


def test_budget_13_checkpoint_of_196_modules_is_a_few_kb(tmp_path):
    model = tiny_qwen2(num_layers=28, vocab_size=256, hidden=32)  # 28 x 7 = 196 modules, like Qwen2.5-7B
    handle = apply_tinylora(model, TinyLoRAConfig(budget=13))
    assert (handle.plan.projection_dim, handle.plan.tie_factor, handle.num_trainable) == (1, 16, 13)
    handle.save_adapter(tmp_path)
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert set(sizes) == {WEIGHTS_NAME, CONFIG_NAME}
    assert sum(sizes.values()) < 6 * 1024, sizes
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    for key in ("format_version", "base_model", "config", "plan", "factor_hash", "vectors_sha256"):
        assert key in meta
    assert meta["config"]["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert meta["plan"]["group_of_module"][:17] == [0] * 16 + [1]


def test_different_base_model_is_refused(tmp_path):
    _, _, path = trained(tmp_path)
    with pytest.raises(AdapterLoadError, match="weights of this model .* differ"):
        load_adapter(tiny_qwen2(seed=1), path)


def test_other_architecture_is_refused(tmp_path):
    _, _, path = trained(tmp_path)
    with pytest.raises(AdapterLoadError, match="has 21 matching modules"):
        load_adapter(tiny_qwen2(num_layers=3), path)


def test_bf16_load_of_the_same_base_is_accepted(tmp_path, prompt_ids):
    _, handle, path = trained(tmp_path)
    loaded = load_adapter(tiny_qwen2(seed=0, dtype=torch.bfloat16), path)
    for a, b in zip(handle.get_vectors(), loaded.get_vectors()):
        assert torch.equal(a, b)


def _corrupt_byte(path: Path, offset_from_end=3):
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0x55
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda p: _corrupt_byte(p / WEIGHTS_NAME), "checksum"),
        (lambda p: (p / WEIGHTS_NAME).write_bytes((p / WEIGHTS_NAME).read_bytes()[:50]), "checksum"),
        (lambda p: (p / WEIGHTS_NAME).unlink(), "does not exist"),
        (lambda p: (p / CONFIG_NAME).write_text((p / CONFIG_NAME).read_text()[:100]), "not valid JSON"),
        (lambda p: (p / CONFIG_NAME).unlink(), "not a TinyLoRA adapter directory"),
        (lambda p: _edit(p, format_version=3), "format_version=3"),
        (lambda p: _edit(p, format="peft"), "is not a tinylora-verl-adapter file"),
        (lambda p: _edit(p, reseal=True, projection_recipe="torch-randn/0"), "P recipe"),
        (lambda p: _edit(p, factor_hash=None, drop="factor_hash"), "lacks the fields"),
    ],
)
def test_damaged_checkpoints_are_refused(tmp_path, damage, match):
    _, _, path = trained(tmp_path)
    damage(path)
    with pytest.raises(AdapterLoadError, match=match):
        load_adapter(tiny_qwen2(seed=0), path)


def _edit(path, drop=None, reseal=False, **changes):
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta.update(changes)
    if drop:
        meta.pop(drop)
    (path / CONFIG_NAME).write_text(json.dumps(seal(meta) if reseal else meta))


def test_vectors_with_wrong_shape_are_refused_even_with_matching_checksum(tmp_path):
    import hashlib

    from safetensors.torch import save_file

    _, _, path = trained(tmp_path)
    save_file({f"v.{g}": torch.zeros(2) for g in range(4)}, str(path / WEIGHTS_NAME))
    _edit(path, reseal=True, vectors_sha256=hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest())
    with pytest.raises(
        AdapterLoadError, match=r"v.0 is torch.float32 of shape \(2,\), expected float32 of shape \(1,\)"
    ):
        load_adapter(tiny_qwen2(seed=0), path)


def test_no_pickle_anywhere_in_the_package():
    """We write no pickle, and read one only through torch's restricted unpickler (weights_only=True:
    tensors, DTensors and plain containers, no code): verl's FSDP checkpoints, measured by the sweep."""
    import re

    offenders = []
    for f in (REPO / "tinylora_verl").rglob("*.py"):
        text = f.read_text()
        for needle in ("import pickle", "torch.save(", "weights_only=False"):
            if needle in text:
                offenders.append(f"{f.relative_to(REPO)}: {needle}")
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{f.relative_to(REPO)}: torch.load({call})")
    assert not offenders, offenders
