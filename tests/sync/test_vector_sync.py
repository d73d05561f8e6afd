"""sync_mode "vector": the rollout side rebuilds, from v alone, exactly what sync_mode "full" sends.

Two senders with the same model and the same v trajectory stream to two simulated rollouts: "full"
applies the received tensors; "vector" feeds the stream (cut into buckets of random sizes, as verl's
bucketed transfer does) through `VectorSyncReceiver` and applies what it returns. After every step
both rollouts must hold bit-identical weights, equal to the trainer's merged weights, and the vector
stream must be ≤ 1 KB after the first sync.
"""

import random

import pytest
import torch

from tests.sync.test_sender import ALL, _reference, _sender, _tiny_model
from tinylora_verl.sync import wire
from tinylora_verl.sync.receiver import VectorSyncReceiver, compact


def _buckets(stream, rng):
    items = list(stream)
    i = 0
    while i < len(items):
        n = rng.randint(1, 5)
        yield items[i : i + n]
        i += n


def _step_v(sender, step):
    with torch.no_grad():
        for g, p in enumerate(sender.handle.vectors.v):
            p.copy_(torch.sin(torch.arange(p.numel()) + 0.7 * step + g) * (0.05 + 0.1 * step))


class _Rollout:
    """A rollout sender's weight table behind a VectorSyncReceiver (as in our vLLM worker, for both modes)."""

    def __init__(self, vector: bool):
        self.weights: dict[str, torch.Tensor] = {}
        self.receiver = VectorSyncReceiver()

    def sync(self, stream, rng):
        self.receiver.begin()
        for bucket in _buckets(stream, rng):
            self.weights.update((n, t.clone()) for n, t in self.receiver.consume(bucket))
        self.weights.update(self.receiver.finish("cpu"))


def _run(targets, steps, model_factory=_tiny_model):
    full_sender, base = _sender(targets, "full", model_factory())
    vec_sender, _ = _sender(targets, "vector", model_factory())
    full, vec = _Rollout(False), _Rollout(True)
    rng = random.Random(0)
    history = []
    for step in range(steps):
        _step_v(full_sender, step)
        _step_v(vec_sender, step)
        full.sync(full_sender.stream(), rng)
        vec.sync(vec_sender.stream(), rng)
        history.append((dict(full.weights), dict(vec.weights), dict(vec_sender.last)))
    return full_sender, vec_sender, base, history


@pytest.mark.parametrize("targets", [ALL, ("q_proj", "gate_proj")], ids=["all7", "q+gate"])
def test_vector_equals_full_bit_for_bit(targets):
    full_sender, vec_sender, base, history = _run(targets, steps=4)
    vectors = vec_sender.vectors()
    for step, (full_w, vec_w, stats) in enumerate(history):
        assert set(vec_w) == set(full_w) == set(base), step  # every HF weight, no control tensor
        for name in full_w:
            assert torch.equal(vec_w[name], full_w[name]), (step, name)
        assert stats["kind"] == ("setup" if step == 0 else "vector")
    last_full, last_vec, _ = history[-1]
    for name in vec_sender.handle.layers:
        key = f"{name}.weight"
        assert torch.equal(last_vec[key], vec_sender.merged(name, vectors))  # == the trainer's merge
        assert torch.allclose(last_vec[key].double(), _reference(vec_sender, name, base), atol=1e-5)
        assert not torch.equal(last_vec[key], base[key])  # v is in it


def test_vector_stream_is_tiny_after_setup():
    _, vec_sender, _, history = _run(ALL, steps=3)
    setup, later = history[0][2], [h[2] for h in history[1:]]
    assert setup["bytes"] > 10_000
    for stats in later:
        assert stats["tensors"] == 2 and stats["bytes"] <= 1024, stats
    _step_v(vec_sender, 9)
    names = [n for n, _ in vec_sender.stream()]
    assert names == [wire.META, wire.VECTOR]


def test_stale_vector_is_not_served():
    """v changes between syncs: the rollout must follow the newest v, not a cached merge."""
    _, vec_sender, _, history = _run(ALL, steps=3)
    name = next(iter(vec_sender.handle.layers)) + ".weight"
    assert not torch.equal(history[1][1][name], history[2][1][name])


def test_bf16_checkpoint_base_is_kept_in_bf16():
    def bf16_model():
        m = _tiny_model()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(torch.bfloat16).float())  # a bf16 checkpoint loaded in float32
        return m

    full_sender, vec_sender, base, history = _run(ALL, steps=2, model_factory=bf16_model)
    for name in history[-1][0]:
        assert torch.equal(history[-1][0][name], history[-1][1][name])
    kept, dtype = compact(base["model.layers.0.self_attn.q_proj.weight"])
    assert kept.dtype == torch.bfloat16 and dtype == torch.float32
    rough = torch.randn(4, 4)
    kept, dtype = compact(rough)
    assert kept.dtype == torch.float32 and torch.equal(kept, rough)  # not representable: kept exact


def test_vector_before_setup_is_refused():
    r = VectorSyncReceiver()
    r.begin()
    with pytest.raises(RuntimeError, match="no base weights"):
        r.consume([(wire.META, wire.encode_meta({"kind": "vector", "sync": 3}))])


def test_setup_without_v_or_factors_is_refused():
    vec_sender, _ = _sender(ALL, "vector")
    stream = list(vec_sender.stream())
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
    assert list(r.finish()) == []


def test_meta_roundtrip_and_version():
    meta = {"kind": "setup", "modules": [["a.q_proj", 0, 1.0]], "siblings": []}
    assert wire.decode_meta(wire.encode_meta(meta))["modules"] == [["a.q_proj", 0, 1.0]]
    bad = wire.encode_meta({"kind": "vector"})
    raw = bytes(bad.tolist()).replace(b'"version":1', b'"version":9')
    with pytest.raises(ValueError, match="version 9"):
        wire.decode_meta(torch.tensor(list(raw), dtype=torch.uint8))
    with pytest.raises(ValueError, match="kind"):
        wire.encode_meta({"kind": "partial"})
    assert wire.split_factor_name(wire.factor_name("model.layers.0.mlp.up_proj", "V")) == (
        "model.layers.0.mlp.up_proj",
        "V",
    )


@pytest.mark.parametrize("mode", ["full", "vector"])
def test_partial_stream_after_discard_is_refused(mode):
    """After a level-2 sleep (weights discarded) the receiver refuses delta/vector streams before loading
    anything, accepts a complete one, and accepts partial streams again after it."""
    sender, _ = _sender(ALL, mode)
    rollout, rng = _Rollout(mode == "vector"), random.Random(0)
    _step_v(sender, 1)
    rollout.sync(sender.stream(), rng)  # complete (full / setup)
    _step_v(sender, 2)
    rollout.sync(sender.stream(), rng)  # partial, on kept weights: fine
    assert sender.last["kind"] == ("vector" if mode == "vector" else "delta")
    rollout.receiver.weights_discarded()
    _step_v(sender, 3)
    partial = list(sender.stream())
    before = {k: v.clone() for k, v in rollout.weights.items()}
    with pytest.raises(RuntimeError, match="level-2 sleep"):
        rollout.sync(partial, rng)
    assert before.keys() == rollout.weights.keys() and all(
        torch.equal(before[k], rollout.weights[k]) for k in before
    )
    sender.resend()  # the next stream is complete again
    rollout.sync(sender.stream(), rng)
    assert not rollout.receiver.discarded
    _step_v(sender, 4)
    rollout.sync(sender.stream(), rng)  # partial streams accepted again


def test_plain_stream_clears_discard():
    r = VectorSyncReceiver()
    r.weights_discarded()
    r.begin()
    r.consume([("model.norm.weight", torch.ones(2))])  # verl's own stream: every weight, no meta
    assert list(r.finish()) == [] and not r.discarded


def test_sleep_rule():
    from tinylora_verl.sync.sleep import rollout_discards_weights, sleep_level

    assert sleep_level("full") == 2 and sleep_level("vector") == 1
    on = {"enable_sleep_mode": True, "free_cache_engine": True}
    assert rollout_discards_weights(on, "full") and not rollout_discards_weights(on, "vector")
    assert not rollout_discards_weights({**on, "free_cache_engine": False}, "full")
    assert not rollout_discards_weights({**on, "enable_sleep_mode": False}, "full")
    with pytest.raises(ValueError, match="sync_mode"):
        sleep_level("delta")


def test_finish_checks_first_then_builds_one_module_at_a_time(monkeypatch):
    """finish() validates before yielding and merges lazily: the caller loads each module before the next
    one is built (the rollout side's memory bound; bench/receiver_memory.py measures it)."""
    import tinylora_verl.sync.receiver as R

    sender, _ = _sender(ALL, "vector")
    r = VectorSyncReceiver()
    r.begin()
    r.consume(list(sender.stream()))
    list(r.finish())
    _step_v(sender, 1)
    r.begin()
    r.consume(list(sender.stream()))
    calls = []
    real = R.merged_weight
    monkeypatch.setattr(R, "merged_weight", lambda *a, **k: calls.append(1) or real(*a, **k))
    it = r.finish()
    assert calls == []
    next(it)
    assert len(calls) == 1
    next(it)
    assert len(calls) == 2
    assert len(list(it)) + 2 == len(r.modules) + len(r.siblings) and len(calls) == len(r.modules)
