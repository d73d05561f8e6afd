"""What `TinyLoRAFSDPEngine.get_per_tensor_param` streams to the rollout, on an unsharded tiny model.

First call: every HF weight, `.base_layer.` removed, no adapter container, adapted weights merged.
Later calls: only adapted weights (and fused siblings), each equal to a float64 W + U diag(S) M V^T.
The engine is `TinyLoRAFSDPEngine.unsharded` (no verl constructor, no process group; verl's stream is
the module's state dict): only the sync logic is under test; the e2e tests run it under FSDP2.
"""

import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl import TinyLoRAConfig
from tinylora_verl.sync import wire
from tinylora_verl.verl_seam.engine import TinyLoRAFSDPEngine


def _tiny_model():
    return tiny_qwen2(hidden=32, vocab_size=64)  # the suite's tiny model, smaller: no tokenizer is involved


ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _engine(targets=ALL, sync_mode="full", model=None):
    model = _tiny_model() if model is None else model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    config = TinyLoRAConfig(budget=3, target_modules=targets, seed=1)
    return TinyLoRAFSDPEngine.unsharded(model, config, sync_mode), base


def _reference(engine, name, base):
    layer = engine.tinylora.layers[name]
    U, S, V, P = (
        t.double() for t in (layer.tinylora_U, layer.tinylora_S, layer.tinylora_V, layer.tinylora_P)
    )
    v = engine.tinylora.vectors.v[layer.group].detach().double()
    M = sum(v[i] * P[i] for i in range(P.shape[0]))
    return base[f"{name}.weight"].double() + U @ torch.diag(S) @ M @ V.T


def test_first_then_delta():
    engine, base = _engine()
    with torch.no_grad():
        for i, p in enumerate(engine.tinylora.vectors.v):
            p.copy_(torch.linspace(-0.5, 0.7, p.numel()) * (i + 1))  # non-zero, different per group
    first, peft = engine.get_per_tensor_param()
    first = dict(first)
    assert peft is None
    assert wire.decode_meta(first.pop(wire.META))["kind"] == "full"  # the receiver's guard reads the kind
    assert set(first) == set(base)  # all HF names, nothing else
    adapted = [f"{n}.weight" for n in engine.tinylora.layers]
    for name in adapted:
        want = _reference(engine, name[: -len(".weight")], base)
        assert torch.allclose(first[name].double(), want, atol=1e-5), name
        assert not torch.equal(first[name], base[name])  # the update is in it
    for name in set(base) - set(adapted):
        assert torch.equal(first[name], base[name])

    delta, _ = engine.get_per_tensor_param()
    delta = dict(delta)
    assert wire.decode_meta(delta.pop(wire.META))["kind"] == "delta"
    assert set(delta) == set(adapted)  # only adapted tensors after the first
    for name in adapted:
        assert torch.equal(delta[name], first[name])


def test_resend_all_makes_every_sync_complete():
    """When the rollout discards its weights between syncs (level-2 sleep), every sync carries every weight."""
    engine, base = _engine()
    engine.resend_all = True
    for step in range(3):
        with torch.no_grad():
            for p in engine.tinylora.vectors.v:
                p.fill_(0.1 * (step + 1))
        stream = dict(engine.get_per_tensor_param()[0])
        assert (
            wire.decode_meta(stream.pop(wire.META))["kind"] == "full" and engine.last_sync["kind"] == "full"
        )
        assert set(stream) == set(base), step
        name = next(iter(engine.tinylora.layers))
        want = _reference(engine, name, base)
        assert torch.allclose(stream[f"{name}.weight"].double(), want, atol=1e-5)


def test_delta_includes_fused_siblings():
    engine, base = _engine(targets=("q_proj", "gate_proj"))
    list(engine.get_per_tensor_param()[0])
    names = set(dict(engine.get_per_tensor_param()[0])) - {wire.META}
    want = {
        f"model.layers.{i}.{m}.weight"
        for i in range(2)
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
    }
    assert names == want
    assert torch.equal(
        dict(engine.get_per_tensor_param()[0])["model.layers.0.self_attn.k_proj.weight"],
        base["model.layers.0.self_attn.k_proj.weight"],
    )


def test_disable_adapter_is_base_model():
    engine, _ = _engine()
    with torch.no_grad():
        for p in engine.tinylora.vectors.v:
            p.fill_(0.3)
    x = torch.randint(0, 64, (1, 5))
    on = engine.module(x).logits
    with engine.disable_adapter():
        off = engine.module(x).logits
    with engine.tinylora.disabled():
        ref = engine.module(x).logits
    assert torch.equal(off, ref) and not torch.allclose(on, off)
