"""The rollout-policy probe (sync/probe.py) against float64 references written out by hand."""

import copy
import math

import pytest
import torch

from tinylora_verl import TinyLoRAConfig, apply_tinylora
from tinylora_verl.sync.probe import effect_kept, mean_kl, probe, probe_batch, rollout_weights


def _kl_ref(p_logits, q_logits) -> float:
    """KL(p ‖ q) of one position, in Python floats."""
    lse_p = math.log(sum(math.exp(x) for x in p_logits))
    lse_q = math.log(sum(math.exp(x) for x in q_logits))
    return sum(
        math.exp(a - lse_p) * ((a - lse_p) - (b - lse_q)) for a, b in zip(p_logits, q_logits, strict=True)
    )


def test_mean_kl_matches_hand_reference():
    torch.manual_seed(0)
    p, q = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    want = [_kl_ref(p[b, s].tolist(), q[b, s].tolist()) for b, s in ((0, 0), (0, 1), (1, 0))]
    assert mean_kl(p, q, mask) == pytest.approx(sum(want) / 3, rel=1e-12, abs=1e-15)
    assert mean_kl(p, p, mask) == 0.0
    with pytest.raises(ValueError, match="no position"):
        mean_kl(p, q, torch.zeros(2, 3))


def test_mean_kl_chunks_give_the_same_mean(monkeypatch):
    from tinylora_verl.sync import probe as probe_mod

    torch.manual_seed(1)
    p, q, mask = torch.randn(3, 5, 11), torch.randn(3, 5, 11), torch.ones(3, 5)
    whole = mean_kl(p, q, mask)
    monkeypatch.setattr(probe_mod, "KL_CHUNK_POSITIONS", 2)
    assert mean_kl(p, q, mask) == pytest.approx(whole, rel=1e-12)


def test_effect_kept_definition():
    assert effect_kept(0.0, 0.2) == 1.0
    assert effect_kept(0.2, 0.2) == 0.0
    assert effect_kept(0.05, 0.2) == pytest.approx(0.75)
    assert math.isnan(effect_kept(0.0, 0.0))


def test_probe_batch_packs_and_truncates_rows():
    rows = [torch.tensor([5, 6, 7, 9]), torch.tensor([3, 4]), torch.tensor([8] * 6)]
    got = probe_batch(rows, sequences=2, tokens=3)
    assert got["input_ids"].tolist() == [[5, 6, 7], [3, 4, 0]]
    assert got["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    # verl's jagged input_ids unbind to such rows
    nested = torch.nested.nested_tensor(rows, layout=torch.jagged)
    assert probe_batch(nested.unbind(), sequences=3, tokens=8)["attention_mask"].sum().item() == 12
    with pytest.raises(ValueError, match="sequences >= 1"):
        probe_batch(rows, sequences=0, tokens=3)


def _model(seed=0):
    """A tiny Qwen2 whose weights are bf16-representable, as released checkpoints are."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_hidden_layers=2,
        intermediate_size=48,
        vocab_size=97,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def _setup(v_scale: float):
    model = _model()
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4, svd_method="exact"))
    with torch.no_grad():
        for i, v in enumerate(handle.vectors.v):
            v.copy_(torch.linspace(-1, 1, v.numel()) * v_scale * (i + 1))
    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79], [2, 71, 82, 81, 82, 84, 59, 0]])
    mask = torch.tensor([[1] * 8, [1] * 7 + [0]])

    def forward(m=model):
        return m(input_ids=ids, attention_mask=mask).logits

    return model, handle, ids, mask, forward


def _hand_rollout_model(model, handle, dtype):
    """A plain copy of the base model whose adapted weights are dtype(W + ΔW), ΔW in float64 by hand."""
    plain = copy.deepcopy(model)
    for name, layer in handle.layers.items():
        U, S, V, P = (getattr(layer, f"tinylora_{f}").double() for f in "USVP")
        v = layer.v().detach().double()
        M = sum(v[i] * P[i] for i in range(v.numel()))
        dW = layer.alpha * U @ torch.diag(S) @ M @ V.T
        W = layer.base_layer.weight.detach().double()
        parent, _, leaf = name.rpartition(".")
        target = plain.get_submodule(parent)
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=layer.base_layer.bias is not None)
        with torch.no_grad():
            lin.weight.copy_((W + dW).to(dtype).float())
            if layer.base_layer.bias is not None:
                lin.bias.copy_(layer.base_layer.bias)
        setattr(target, leaf, lin)
    return plain


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_rollout_forward_is_the_hand_merged_model(dtype):
    model, handle, ids, mask, forward = _setup(v_scale=0.3)
    with torch.no_grad(), rollout_weights(handle.layers, dtype):
        got = forward()
        want = forward(_hand_rollout_model(model, handle, dtype))
    assert (got - want).abs().max() < 1e-4
    # and the probe's rollout_kl is the hand model's KL against the trainer policy
    with torch.no_grad():
        train = forward()
    ref = mean_kl(train, want, mask)
    out = probe(forward, handle.layers, handle.disabled, dtype, mask)
    assert out["tinylora/rollout_kl"] == pytest.approx(ref, rel=1e-3, abs=1e-9)


def test_float32_rollout_keeps_the_whole_effect():
    _, handle, _, mask, forward = _setup(v_scale=0.3)
    out = probe(forward, handle.layers, handle.disabled, torch.float32, mask)
    assert out["tinylora/effect_kl"] > 1e-4
    assert out["tinylora/rollout_kl"] < 1e-6 * out["tinylora/effect_kl"] + 1e-10
    assert out["tinylora/effect_kept"] > 0.999


def test_bf16_rollout_loses_an_update_below_half_an_ulp():
    """ΔW far below half a bf16 ulp of W: the bf16 merge rounds back to W, the rollout is the base model."""
    _, handle, _, mask, forward = _setup(v_scale=1e-6)
    out = probe(forward, handle.layers, handle.disabled, torch.bfloat16, mask)
    assert out["tinylora/effect_kl"] > 0
    assert out["tinylora/effect_kept"] == pytest.approx(0.0, abs=1e-6)
    # a large update survives bf16 mostly
    _, handle, _, mask, forward = _setup(v_scale=0.3)
    big = probe(forward, handle.layers, handle.disabled, torch.bfloat16, mask)
    assert 0.5 < big["tinylora/effect_kept"] < 1.0


def test_vectors_override_is_what_the_rollout_merges_with():
    model, handle, _, mask, forward = _setup(v_scale=0.3)
    zeros = [torch.zeros_like(v) for v in handle.vectors.v]
    out = probe(forward, handle.layers, handle.disabled, torch.float32, mask, vectors=zeros)
    # v = 0 on the rollout side: the rollout is the base policy, nothing kept
    assert out["tinylora/rollout_kl"] == pytest.approx(out["tinylora/effect_kl"], rel=1e-6)


def test_base_logits_are_cached_and_reused():
    _, handle, _, mask, forward = _setup(v_scale=0.3)
    cache = {}
    first = probe(forward, handle.layers, handle.disabled, torch.bfloat16, mask, cache=cache)
    assert set(cache) == {"base"}
    calls = []

    def counting():
        calls.append(handle.vectors.enabled)
        return forward()

    again = probe(counting, handle.layers, handle.disabled, torch.bfloat16, mask, cache=cache)
    assert calls == [True, True]  # the adapter-off forward was not run again
    assert again == first
