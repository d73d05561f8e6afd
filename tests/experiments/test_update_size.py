"""update_size: the weight update's norms against a hand-written float64 reference, tied weights counted
once, a narrower stored dtype not counted as an update, and the effective weights of each SFT kind."""

from __future__ import annotations

import math

import pytest
import torch

from tinylora_verl.experiments.update_size import update_size


def test_norms_match_a_hand_computed_reference():
    base = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([2.0, -1.0]), "c": torch.ones(3)}
    trained = {
        "a": torch.tensor([[1.5, 2.0], [3.0, 3.0]]),  # differences 0.5 and -1
        "b": torch.tensor([2.0, -1.0]),  # unchanged
        "c": torch.ones(4),  # other shape: not compared
        "d": torch.zeros(2),  # not in the base: not compared
    }
    out = update_size(base, trained)
    delta = math.sqrt(0.5**2 + 1.0**2)
    norm = math.sqrt(1 + 4 + 9 + 16 + 4 + 1)
    assert out["delta_fro"] == pytest.approx(delta, rel=1e-12)
    assert out["base_fro"] == pytest.approx(norm, rel=1e-12)
    assert out["relative"] == pytest.approx(delta / norm, rel=1e-12)
    assert (out["changed"], out["tensors"]) == (1, 2)


def test_a_tied_weight_is_counted_once():
    shared = torch.tensor([3.0, 4.0])
    base = {"embed.weight": shared, "lm_head.weight": shared}
    out = update_size(
        base, {"embed.weight": torch.tensor([3.0, 5.0]), "lm_head.weight": torch.tensor([3.0, 5.0])}
    )
    assert (out["delta_fro"], out["base_fro"], out["tensors"]) == (1.0, 5.0, 1)


def test_a_bf16_checkpoint_of_an_untrained_model_is_no_update():
    torch.manual_seed(0)
    base = {"w": torch.randn(16, 16)}
    out = update_size(base, {"w": base["w"].to(torch.bfloat16)})
    assert out["delta_fro"] == 0.0 and out["changed"] == 0
    moved = base["w"].to(torch.bfloat16).clone()
    moved[0, 0] += 1.0
    assert update_size(base, {"w": moved})["changed"] == 1


def test_nothing_in_common_is_an_error():
    with pytest.raises(ValueError, match="share no weight tensor"):
        update_size({"a": torch.ones(2)}, {"b": torch.ones(2)})


@pytest.mark.parametrize("kind", ["tinylora", "lora", "full"])
def test_sft_update_is_the_effective_weight_change(kind, tiny_model_dir):
    """The run's recorded update equals ||W' - W|| recomputed from the merged model, for each kind."""
    from tinylora_verl.experiments.run_one import _sft_update
    from tinylora_verl.experiments.sft import SFTConfig, prepare_trainable
    from tinylora_verl.hf import load_causal_lm

    model = load_causal_lm(str(tiny_model_dir))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = prepare_trainable(model, SFTConfig(kind=kind, budget=3, seed=0))
    with torch.no_grad():  # a known step on every trainable tensor
        for p in trainable.params:
            p.add_(0.01)
    x = torch.tensor([[1, 2, 3, 4]])
    before = trainable.model(input_ids=x).logits
    out = _sft_update(trainable, str(tiny_model_dir), "float32")
    after = trainable.model(input_ids=x).logits  # a LoRA is merged now: the same function
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    merged = (
        trainable.model.state_dict() if kind != "tinylora" else trainable.handle.base_state_dict(merged=True)
    )
    ref = math.sqrt(
        sum(
            float(((merged[k].double() - base[k].double()) ** 2).sum())
            for k in base
            if k != "lm_head.weight" or "model.embed_tokens.weight" not in base
        )
    )
    assert out["delta_fro"] == pytest.approx(ref, rel=1e-9) and out["delta_fro"] > 0
    if kind == "full":
        assert out["changed"] == out["tensors"]
    else:
        assert 0 < out["changed"] < out["tensors"]


def _shards(tmp_path, states):
    for rank, state in enumerate(states):
        torch.save(state, tmp_path / f"model_world_size_{len(states)}_rank_{rank}.pt")
    return tmp_path


def test_actor_weights_joins_fsdp_shards_in_float32(tmp_path):
    """Two ranks' FSDP2 shards (real DTensors: each rank's local rows of a Shard(0) weight, a replicated
    bias), and a plain tensor, as verl's checkpoint stores them; read with the restricted unpickler."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard

    from tinylora_verl.experiments.rl import actor_weights

    w = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 7  # not representable in bf16
    b = torch.tensor([0.1, 0.2, 0.3])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))

        def shard(rows):  # one rank's piece of w, as FSDP2 holds it
            return DTensor.from_local(
                w[rows].clone(), mesh, [Shard(0)], run_check=False, shape=w.shape, stride=w.stride()
            )

        bias = DTensor.from_local(b, mesh, [Replicate()], run_check=False)
        states = [
            {"model.w": shard(slice(0, 2)), "model.b": bias, "x": torch.ones(2)},
            {"model.w": shard(slice(2, 4)), "model.b": bias, "x": torch.ones(2)},
        ]
        _shards(tmp_path, states)
    finally:
        dist.destroy_process_group()
    got = actor_weights(tmp_path)
    assert set(got) == {"model.w", "model.b", "x"}
    assert torch.equal(got["model.w"], w) and torch.equal(got["model.b"], b)
    (tmp_path / "model_world_size_2_rank_1.pt").unlink()
    with pytest.raises(RuntimeError, match="no complete set of model_world_size"):
        actor_weights(tmp_path)


def test_actor_weights_merges_verls_lora_exactly(tmp_path):
    import json

    from tinylora_verl.experiments.rl import actor_weights

    W = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    A, B = torch.tensor([[0.5, -0.25]]), torch.tensor([[0.01], [0.02], [-0.03]])
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    state = {
        f"{prefix}.base_layer.weight": W,
        f"{prefix}.lora_A.default.weight": A,
        f"{prefix}.lora_B.default.weight": B,
        "base_model.model.model.norm.weight": torch.ones(2),
    }
    (tmp_path / "lora_train_meta.json").write_text(json.dumps({"r": 1, "lora_alpha": 16}))
    got = actor_weights(_shards(tmp_path, [state]))
    assert set(got) == {"model.layers.0.self_attn.q_proj.weight", "model.norm.weight"}
    want = [[W[i][j].item() + 16 * B[i][0].item() * A[0][j].item() for j in range(2)] for i in range(3)]
    assert torch.allclose(
        got["model.layers.0.self_attn.q_proj.weight"].double(),
        torch.tensor(want, dtype=torch.float64),
        rtol=0,
        atol=1e-6,
    )
