"""sync_mode "vector": the rollout side rebuilds, from v alone, exactly what sync_mode "full" sends.

Two engines with the same model and the same v trajectory stream to two simulated rollouts: "full"
applies the received tensors; "vector" feeds the stream (cut into buckets of random sizes, as verl's
bucketed transfer does) through `VectorSyncReceiver` and applies what it returns. After every step
both rollouts must hold bit-identical weights, equal to the trainer's merged weights, and the vector
stream must be ≤ 1 KB after the first sync.
"""

import random

import pytest
import torch

from tests.verl_seam.test_engine_sync import ALL, _engine, _reference, _tiny_model
from tinylora_verl.sync import wire
from tinylora_verl.sync.receiver import VectorSyncReceiver, compact


def _buckets(stream, rng):
    items = list(stream)
    i = 0
    while i < len(items):
        n = rng.randint(1, 5)
        yield items[i:i + n]
        i += n


def _step_v(engine, step):
    with torch.no_grad():
        for g, p in enumerate(engine.tinylora.vectors.v):
            p.copy_(torch.sin(torch.arange(p.numel()) + 0.7 * step + g) * (0.05 + 0.1 * step))


class _Rollout:
    """A rollout engine's weight table; `vector=True` puts a VectorSyncReceiver in front of it."""

    def __init__(self, vector: bool):
        self.weights: dict[str, torch.Tensor] = {}
        self.receiver = VectorSyncReceiver() if vector else None

    def sync(self, stream, rng):
        if self.receiver is None:
            self.weights.update((n, t.clone()) for n, t in stream)
            return
        self.receiver.begin()
        for bucket in _buckets(stream, rng):
            self.weights.update((n, t.clone()) for n, t in self.receiver.consume(bucket))
        self.weights.update(self.receiver.finish("cpu"))


def _run(targets, steps, model_factory=_tiny_model):
    full_engine, base = _engine(targets, "full", model_factory())
    vec_engine, _ = _engine(targets, "vector", model_factory())
    full, vec = _Rollout(False), _Rollout(True)
    rng = random.Random(0)
    history = []
    for step in range(steps):
        _step_v(full_engine, step)
        _step_v(vec_engine, step)
        full.sync(full_engine.get_per_tensor_param()[0], rng)
        vec.sync(vec_engine.get_per_tensor_param()[0], rng)
        history.append((dict(full.weights), dict(vec.weights), dict(vec_engine.last_sync)))
    return full_engine, vec_engine, base, history


@pytest.mark.parametrize("targets", [ALL, ("q_proj", "gate_proj")], ids=["all7", "q+gate"])
def test_vector_equals_full_bit_for_bit(targets):
    full_engine, vec_engine, base, history = _run(targets, steps=4)
    vectors = vec_engine.full_vectors()
    for step, (full_w, vec_w, stats) in enumerate(history):
        assert set(vec_w) == set(full_w) == set(base), step       # every HF weight, no control tensor
        for name in full_w:
            assert torch.equal(vec_w[name], full_w[name]), (step, name)
        assert stats["kind"] == ("setup" if step == 0 else "vector")
    last_full, last_vec, _ = history[-1]
    for name in vec_engine.tinylora.layers:
        key = f"{name}.weight"
        assert torch.equal(last_vec[key], vec_engine._merged(name, vectors))      # == the trainer's merge
        assert torch.allclose(last_vec[key].double(), _reference(vec_engine, name, base), atol=1e-5)
        assert not torch.equal(last_vec[key], base[key])                           # v is in it


def test_vector_stream_is_tiny_after_setup():
    _, vec_engine, _, history = _run(ALL, steps=3)
    setup, later = history[0][2], [h[2] for h in history[1:]]
    assert setup["bytes"] > 10_000
    for stats in later:
        assert stats["tensors"] == 2 and stats["bytes"] <= 1024, stats
    _step_v(vec_engine, 9)
    names = [n for n, _ in vec_engine.get_per_tensor_param()[0]]
    assert names == [wire.META, wire.VECTOR]


def test_stale_vector_is_not_served():
    """v changes between syncs: the rollout must follow the newest v, not a cached merge."""
    _, vec_engine, _, history = _run(ALL, steps=3)
    name = next(iter(vec_engine.tinylora.layers)) + ".weight"
    assert not torch.equal(history[1][1][name], history[2][1][name])


def test_bf16_checkpoint_base_is_kept_in_bf16():
    def bf16_model():
        m = _tiny_model()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(torch.bfloat16).float())   # a bf16 checkpoint loaded in float32
        return m
    full_engine, vec_engine, base, history = _run(ALL, steps=2, model_factory=bf16_model)
    for name in history[-1][0]:
        assert torch.equal(history[-1][0][name], history[-1][1][name])
    kept, dtype = compact(base["model.layers.0.self_attn.q_proj.weight"])
    assert kept.dtype == torch.bfloat16 and dtype == torch.float32
    rough = torch.randn(4, 4)
    kept, dtype = compact(rough)
    assert kept.dtype == torch.float32 and torch.equal(kept, rough)   # not representable: kept exact


def test_vector_before_setup_is_refused():
    r = VectorSyncReceiver()
    r.begin()
    with pytest.raises(RuntimeError, match="no base weights"):
        r.consume([(wire.META, wire.encode_meta({"kind": "vector", "sync": 3}))])


def test_setup_without_v_or_factors_is_refused():
    vec_engine, _ = _engine(ALL, "vector")
    stream = list(vec_engine.get_per_tensor_param()[0])
    r = VectorSyncReceiver()
    r.begin()
    r.consume([x for x in stream if x[0] != wire.VECTOR])
    with pytest.raises(ValueError, match="without tinylora_sync.v"):
        r.finish()
    r.begin()
    r.consume([x for x in stream if not x[0].endswith(".P")])
    with pytest.raises(ValueError, match="incomplete"):
        r.finish()


def test_plain_stream_passes_through():
    r = VectorSyncReceiver()
    r.begin()
    t = torch.randn(3)
    assert r.consume([("model.norm.weight", t)]) == [("model.norm.weight", t)]
    assert r.finish() == []


def test_meta_roundtrip_and_version():
    meta = {"kind": "setup", "modules": [["a.q_proj", 0, 1.0]], "siblings": []}
    assert wire.decode_meta(wire.encode_meta(meta))["modules"] == [["a.q_proj", 0, 1.0]]
    bad = wire.encode_meta({"kind": "vector"})
    raw = bytes(bad.tolist()).replace(b'"version":1', b'"version":9')
    with pytest.raises(ValueError, match="version 9"):
        wire.decode_meta(torch.tensor(list(raw), dtype=torch.uint8))
    with pytest.raises(ValueError, match="kind"):
        wire.encode_meta({"kind": "delta"})
    assert wire.split_factor_name(wire.factor_name("model.layers.0.mlp.up_proj", "V")) == \
        ("model.layers.0.mlp.up_proj", "V")
