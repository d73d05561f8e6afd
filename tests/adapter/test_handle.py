"""The handle's weight views and exports on the 256-token model, against a float64 reference written out by
hand: W' = W + alpha U diag(S) (sum_i v_i P_i) V^T per adapted module (fast: in the mutation run's tests)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.adapter.support import randomize, small_model
from tinylora_verl.adapter import TinyLoRAConfig, apply_tinylora

CFG = dict(budget=4, frozen_rank=2, alpha=0.75)


def adapted(dtype=None, **cfg):
    model = small_model(dtype=dtype)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    handle = apply_tinylora(model, TinyLoRAConfig(**{**CFG, **cfg}))
    randomize(handle, seed=5)
    return handle, base


def reference_delta(layer) -> torch.Tensor:
    """alpha * U diag(S) M V^T in float64, M = sum_i v_i P_i, by explicit loops over i."""
    U, S, V, P = (
        t.double() for t in (layer.tinylora_U, layer.tinylora_S, layer.tinylora_V, layer.tinylora_P)
    )
    v = layer.v().detach().double()
    M = torch.zeros(P.shape[1:], dtype=torch.float64)
    for i in range(P.shape[0]):
        M += v[i] * P[i]
    return layer.alpha * (U @ torch.diag(S) @ M @ V.T)


def test_delta_weights_are_the_formula_per_module():
    handle, _ = adapted()
    got = dict(handle.iter_delta_weights())
    assert list(got) == [f"{n}.weight" for n in handle.layers]
    for name, layer in handle.layers.items():
        d = got[f"{name}.weight"]
        assert d.dtype == torch.float32 and d.shape == layer.base_layer.weight.shape
        want = reference_delta(layer)
        assert want.abs().max() > 1e-3  # v is not zero: the check can fail
        torch.testing.assert_close(d.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_weight_is_base_plus_delta_in_the_base_dtype(dtype):
    handle, base = adapted(dtype)
    for name, layer in handle.layers.items():
        w = layer.merged_weight()
        assert w.dtype == dtype
        want = base[f"{name}.weight"].double() + reference_delta(layer)
        # float32: the sum to float32 precision; bf16: the float64 sum rounded once (one ulp of slack)
        rtol = 1e-5 if dtype == torch.float32 else 2**-8
        torch.testing.assert_close(w.double(), want.to(dtype).double(), rtol=rtol, atol=1e-6)
        assert torch.equal(layer.base_layer.weight, base[f"{name}.weight"])  # out of place


def test_base_state_dict_has_hf_names_and_the_untouched_or_merged_weights():
    handle, base = adapted()
    plain = handle.base_state_dict()
    assert list(plain) == list(base)  # the HF names, in order: no base_layer., no adapter container
    for k, v in base.items():
        assert torch.equal(plain[k], v), k
    merged = handle.base_state_dict(merged=True)
    assert list(merged) == list(base)
    adapted_names = {f"{n}.weight" for n in handle.layers}
    assert len(adapted_names) == 14
    for k, v in base.items():
        if k in adapted_names:
            layer = handle.layers[k.removesuffix(".weight")]
            torch.testing.assert_close(
                merged[k].double(), v.double() + reference_delta(layer), rtol=1e-5, atol=1e-6
            )
        else:
            assert torch.equal(merged[k], v), k


def test_trainable_parameters_are_the_vectors_and_the_layer_says_what_it_is():
    handle, _ = adapted()
    params = handle.trainable_parameters()
    assert [p.shape for p in params] == [(handle.plan.projection_dim,)] * handle.plan.num_groups
    assert all(a is b for a, b in zip(params, handle.vectors.v))
    assert {id(p) for p in params} == {id(p) for p in handle.model.parameters() if p.requires_grad}
    layer = next(iter(handle.layers.values()))
    assert (
        layer.extra_repr()
        == f"rank=2, u={handle.plan.projection_dim}, group={layer.group}, alpha={layer.alpha}"
    )


def test_peft_export_tensors_multiply_to_the_delta(tmp_path):
    handle, _ = adapted(frozen_rank=3, tie_mode="all", budget=5)
    handle.export_peft_lora(tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["r"] == 3 and cfg["lora_alpha"] == 3 and cfg["peft_type"] == "LORA" and cfg["bias"] == "none"
    assert cfg["target_modules"] == sorted(
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    )
    assert cfg["use_dora"] is False and cfg["use_rslora"] is False and cfg["fan_in_fan_out"] is False
    assert len(tensors) == 2 * len(handle.layers)
    for name, layer in handle.layers.items():
        A = tensors[f"base_model.model.{name}.lora_A.weight"]
        B = tensors[f"base_model.model.{name}.lora_B.weight"]
        assert A.dtype == B.dtype == torch.float32 and A.shape[0] == 3 and B.shape[1] == 3
        torch.testing.assert_close(B.double() @ A.double(), reference_delta(layer), rtol=1e-5, atol=1e-6)


def test_merged_export_saves_the_merged_weights_and_copies_the_tokenizer(tmp_path):
    handle, base = adapted()
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"ours": true}')
    (tok / "unrelated.txt").write_text("x")
    out = tmp_path / "merged"
    handle.export_merged(out)
    assert not (out / "tokenizer.json").exists()
    from tinylora_verl.adapter.export import export_merged

    export_merged(handle, out, tokenizer_dir=tok)
    assert (out / "tokenizer.json").read_text() == '{"ours": true}' and not (out / "unrelated.txt").exists()
    saved = {}
    for f in out.glob("*.safetensors"):
        saved.update(load_file(str(f)))
    name, layer = next(iter(handle.layers.items()))
    torch.testing.assert_close(
        saved[f"{name}.weight"].double(),
        base[f"{name}.weight"].double() + reference_delta(layer),
        rtol=1e-5,
        atol=1e-6,
    )
    assert not any("base_layer" in k or "tinylora" in k for k in saved)
