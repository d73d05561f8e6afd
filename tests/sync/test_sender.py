"""What `SyncSender` streams to the rollout (sync/sender.py), on a plain tiny model.

First call: every HF weight, `.base_layer.` removed, no adapter container, adapted weights merged.
Later calls: only adapted weights (and fused siblings), each equal to a float64 W + U diag(S) M V^T.
The sender's `get_per_tensor_param` is this sender fed with verl's FSDP stream; the e2e tests run it
under FSDP2 and compare vLLM's weights with the trainer's bit for bit.
"""

import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl import TinyLoRAConfig, apply_tinylora
from tinylora_verl.sync import wire
from tinylora_verl.sync.sender import SyncSender


def _tiny_model():
    return tiny_qwen2(hidden=32, vocab_size=64)  # the suite's tiny model, smaller: no tokenizer is involved


ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _sender(targets=ALL, sync_mode="full", model=None):
    model = _tiny_model() if model is None else model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    config = TinyLoRAConfig(budget=3, target_modules=targets, seed=1)
    return SyncSender(apply_tinylora(model, config), model, sync_mode), base


def _reference(sender, name, base):
    layer = sender.handle.layers[name]
    U, S, V, P = (
        t.double() for t in (layer.tinylora_U, layer.tinylora_S, layer.tinylora_V, layer.tinylora_P)
    )
    v = sender.handle.vectors.v[layer.group].detach().double()
    M = sum(v[i] * P[i] for i in range(P.shape[0]))
    return base[f"{name}.weight"].double() + U @ torch.diag(S) @ M @ V.T


def test_first_then_delta():
    sender, base = _sender()
    with torch.no_grad():
        for i, p in enumerate(sender.handle.vectors.v):
            p.copy_(torch.linspace(-0.5, 0.7, p.numel()) * (i + 1))  # non-zero, different per group
    first = dict(sender.stream())
    assert wire.decode_meta(first.pop(wire.META))["kind"] == "full"  # the receiver's guard reads the kind
    assert set(first) == set(base)  # all HF names, nothing else
    adapted = [f"{n}.weight" for n in sender.handle.layers]
    for name in adapted:
        want = _reference(sender, name[: -len(".weight")], base)
        assert torch.allclose(first[name].double(), want, atol=1e-5), name
        assert not torch.equal(first[name], base[name])  # the update is in it
    for name in set(base) - set(adapted):
        assert torch.equal(first[name], base[name])

    delta = dict(sender.stream())
    assert wire.decode_meta(delta.pop(wire.META))["kind"] == "delta"
    assert set(delta) == set(adapted)  # only adapted tensors after the first
    for name in adapted:
        assert torch.equal(delta[name], first[name])


def test_resend_all_makes_every_sync_complete():
    """When the rollout discards its weights between syncs (level-2 sleep), every sync carries every weight."""
    sender, base = _sender()
    sender.resend_all = True
    for step in range(3):
        with torch.no_grad():
            for p in sender.handle.vectors.v:
                p.fill_(0.1 * (step + 1))
        stream = dict(sender.stream())
        assert wire.decode_meta(stream.pop(wire.META))["kind"] == "full" and sender.last["kind"] == "full"
        assert set(stream) == set(base), step
        name = next(iter(sender.handle.layers))
        want = _reference(sender, name, base)
        assert torch.allclose(stream[f"{name}.weight"].double(), want, atol=1e-5)


def test_delta_includes_fused_siblings():
    sender, base = _sender(targets=("q_proj", "gate_proj"))
    list(sender.stream())
    names = set(dict(sender.stream())) - {wire.META}
    want = {
        f"model.layers.{i}.{m}.weight"
        for i in range(2)
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
    }
    assert names == want
    assert torch.equal(
        dict(sender.stream())["model.layers.0.self_attn.k_proj.weight"],
        base["model.layers.0.self_attn.k_proj.weight"],
    )


def test_resend_verify_and_counts():
    """`resend()` makes only the next sync complete; the verify stream is every weight merged, carries the
    current sync number and neither counts as a sync nor changes what the next one sends; `last` counts
    the tensors and bytes of the stream as consumed."""
    sender, base = _sender()
    with torch.no_grad():
        for p in sender.handle.vectors.v:
            p.fill_(0.2)
    first = list(sender.stream())
    assert sender.last == {
        "mode": "full",
        "kind": "full",
        "sync": 1,
        "tensors": len(first),
        "bytes": sum(t.numel() * t.element_size() for _, t in first),
    }
    verify = dict(sender.verify_stream())
    meta = wire.decode_meta(verify.pop(wire.META))
    assert (meta["kind"], meta["sync"]) == ("verify", 1)
    first = dict(first)
    first.pop(wire.META)
    assert set(verify) == set(first) and all(torch.equal(verify[k], first[k]) for k in first)
    assert sender.last["sync"] == 1 and sender.count == 1  # verifying is not a sync
    assert wire.decode_meta(dict(sender.stream())[wire.META])["kind"] == "delta"
    sender.resend()
    meta = wire.decode_meta(dict(sender.stream())[wire.META])
    assert (meta["kind"], meta["sync"]) == ("full", 3)
    assert wire.decode_meta(dict(sender.stream())[wire.META])["kind"] == "delta"  # only the next one


def test_complete_stream_reads_the_given_weights_only_when_complete():
    """The engine passes verl's stream as a callable: it is called for the complete sync only (a delta
    must not start verl's all-gather of every weight)."""
    sender, base = _sender()
    with torch.no_grad():
        for p in sender.handle.vectors.v:
            p.fill_(0.2)
    calls = []

    def weights():
        calls.append(1)
        return base.items()  # stands in for verl's stream: the module's names, unmerged

    first = dict(sender.stream(weights))
    name = next(iter(sender.handle.layers))
    assert calls == [1]
    assert torch.allclose(first[f"{name}.weight"].double(), _reference(sender, name, base), atol=1e-5)
    list(sender.stream(weights))
    assert calls == [1]
