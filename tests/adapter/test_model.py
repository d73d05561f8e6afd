"""The adapter on a tiny Qwen2 (real tokenizer): no-op at v=0, low-rank == merged, only v trains,
tying shares one tensor, merges never touch the base, disabled() is the base model."""

import copy

import pytest
import torch

from tests.tiny_model import tiny_qwen2, tiny_qwen2_config
from tinylora_verl import TinyLoRAConfig, apply_tinylora
from tinylora_verl.adapter.functional import random_projections
from tinylora_verl.adapter.model import TinyLoRAError
from tinylora_verl.adapter.svd import svd_factors

CONFIGS = [
    dict(budget=4, tie_mode="tiled"),
    dict(budget=2, tie_mode="structured", frozen_rank=1),
    dict(budget=28, tie_mode="none", frozen_rank=3),
    dict(budget=13, tie_mode="all", alpha=0.5),
    dict(budget=8, tie_mode="all", lora_alpha=32),  # the authors' scale: u = 8, 32 / sqrt(2 * 8)
]


def randomize(handle, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    handle.set_vectors(
        [torch.randn(handle.plan.projection_dim, generator=g) * scale for _ in range(handle.plan.num_groups)]
    )


def logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("cfg", CONFIGS)
def test_zero_v_is_bit_identical_then_nonzero_v_changes_output(cfg, prompt_ids):
    ids, mask = prompt_ids
    model = tiny_qwen2()
    base = logits(model, ids, mask)
    handle = apply_tinylora(model, TinyLoRAConfig(**cfg))
    assert torch.equal(logits(model, ids, mask), base)
    randomize(handle)
    assert (logits(model, ids, mask) - base).abs().max() > 1e-3  # the adapter really acts


@pytest.mark.parametrize("cfg", CONFIGS)
def test_lowrank_forward_equals_merged_weights_forward(cfg, prompt_ids):
    ids, mask = prompt_ids
    model = tiny_qwen2()
    reference = copy.deepcopy(model)
    handle = apply_tinylora(model, TinyLoRAConfig(**cfg))
    randomize(handle, seed=1)
    merged = dict(handle.iter_merged_weights())
    assert len(merged) == len(handle.layers) == 14
    reference.load_state_dict({**reference.state_dict(), **merged})
    adapted, via_merge = logits(model, ids, mask), logits(reference, ids, mask)
    torch.testing.assert_close(adapted, via_merge, rtol=1e-4, atol=1e-4)
    assert (adapted - logits(tiny_qwen2(), ids, mask)).abs().max() > 1e-3


def test_layers_hold_the_svd_of_the_full_weight_and_their_own_P():
    model = tiny_qwen2()
    originals = {n: m.weight.detach().clone() for n, m in model.named_modules() if n.endswith("_proj")}
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4, seed=5))
    for name, layer in handle.layers.items():
        f = svd_factors(originals[name], 2, TinyLoRAConfig(budget=4, seed=5).svd_options)
        assert torch.equal(layer.tinylora_U, f.U) and torch.equal(layer.tinylora_S, f.S)
        assert torch.equal(layer.tinylora_V, f.V)
        assert torch.equal(layer.tinylora_P, random_projections(name, 5, handle.plan.projection_dim, 2))


def test_one_optimizer_step_changes_only_v_and_every_group_trains(prompt_ids):
    ids, mask = prompt_ids
    model = tiny_qwen2()
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4, tie_mode="tiled"))
    before = {k: v.clone() for k, v in handle.base_state_dict().items()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == [f"tinylora.v.{g}" for g in range(4)]
    opt = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-2)
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    for g, p in enumerate(handle.trainable_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, f"group {g} got no gradient"
    opt.step()
    assert all((p.detach() != 0).all() for p in handle.trainable_parameters())
    after = handle.base_state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"base tensor {k} changed"


class Float64Toy(torch.nn.Module):
    """Linear layers named like a transformer's, tanh between; float64 all the way (HF models are not:
    their RMSNorm round-trips through float32, which swamps a finite difference)."""

    def __init__(self, layers=3, width=12):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "q_proj": torch.nn.Linear(width, width),
                    "up_proj": torch.nn.Linear(width, 2 * width),
                    "down_proj": torch.nn.Linear(2 * width, width),
                }
            )
            for _ in range(layers)
        )
        self.double()

    def forward(self, x):
        for block in self.layers:
            x = x + block["down_proj"](torch.tanh(block["up_proj"](torch.tanh(block["q_proj"](x)))))
        return (x**2).sum()


@pytest.mark.parametrize("tie_mode,budget", [("tiled", 3), ("structured", 6), ("none", 9)])
def test_gradient_matches_finite_differences_in_float64(tie_mode, budget):
    model = Float64Toy()
    handle = apply_tinylora(
        model,
        TinyLoRAConfig(
            budget=budget,
            tie_mode=tie_mode,
            svd_dtype="float64",
            target_modules=("q_proj", "up_proj", "down_proj"),
        ),
    )
    handle.vectors.double()
    randomize(handle, scale=0.1)
    x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model(x).backward()
    eps = 1e-6
    for p in handle.trainable_parameters():
        for k in range(p.numel()):
            with torch.no_grad():
                p[k] += eps
                up = model(x).item()
                p[k] -= 2 * eps
                down = model(x).item()
                p[k] += eps
            fd = (up - down) / (2 * eps)
            assert abs(p.grad[k].item() - fd) < 1e-6 * max(1.0, abs(fd)), (p.grad[k].item(), fd)
            assert abs(fd) > 1e-4  # a gradient that silently vanished would not pass as "equal"


def test_tied_modules_share_one_tensor():
    model = tiny_qwen2()
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4, tie_mode="tiled"))
    layers = list(handle.layers.values())
    for group, members in enumerate(handle.plan.groups):
        tensors = {id(handle.layers[m].v()) for m in members}
        assert tensors == {id(handle.vectors.v[group])}
    assert len({id(layer.v()) for layer in layers}) == 4
    # writing the shared tensor is seen by every member of the group, and only by them
    with torch.no_grad():
        handle.vectors.v[1].fill_(3.0)
    for name, layer in handle.layers.items():
        assert bool((layer.v() == 3.0).all()) == (handle.plan.group_of[name] == 1)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == handle.num_trainable == 4


def test_thousand_merges_leave_base_bit_identical_in_bf16():
    model = tiny_qwen2(dtype=torch.bfloat16)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    randomize(handle, scale=1e-3)
    base = {n: layer.base_layer.weight.detach().clone() for n, layer in handle.layers.items()}
    first = dict(handle.iter_merged_weights())
    for _ in range(1000):
        for name, w in handle.iter_merged_weights():
            assert torch.equal(w, first[name])
    for name, layer in handle.layers.items():
        assert torch.equal(layer.base_layer.weight, base[name])
        assert first[f"{name}.weight"].dtype == torch.bfloat16
    # the scenario can detect drift: in-place add/subtract of the same delta does move a bf16 weight
    w = base["model.layers.0.self_attn.q_proj"].clone()
    delta = dict(handle.iter_delta_weights())["model.layers.0.self_attn.q_proj.weight"].to(torch.bfloat16)
    for _ in range(1000):
        w += delta
        w -= delta
    assert not torch.equal(w, base["model.layers.0.self_attn.q_proj"])


def test_disabled_runs_the_base_model_and_restores(prompt_ids):
    ids, mask = prompt_ids
    model = tiny_qwen2()
    base = logits(model, ids, mask)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    randomize(handle)
    adapted = logits(model, ids, mask)
    with handle.disabled():
        assert torch.equal(logits(model, ids, mask), base)
    assert torch.equal(logits(model, ids, mask), adapted)
    with pytest.raises(RuntimeError):
        with handle.disabled():
            raise RuntimeError("boom")
    assert torch.equal(logits(model, ids, mask), adapted)


def test_bf16_model_runs_adapter_arithmetic_in_float32(prompt_ids):
    ids, mask = prompt_ids
    model = tiny_qwen2(dtype=torch.bfloat16)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    layer = next(iter(handle.layers.values()))
    assert layer.tinylora_U.dtype == torch.float32
    randomize(handle)
    out = logits(model, ids, mask)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_refusals():
    model = tiny_qwen2()
    apply_tinylora(model, TinyLoRAConfig(budget=4))
    with pytest.raises(TinyLoRAError, match="already has TinyLoRA"):
        apply_tinylora(model, TinyLoRAConfig(budget=4))
    with pytest.raises(TinyLoRAError, match="Linear layers are named"):
        apply_tinylora(tiny_qwen2(), TinyLoRAConfig(budget=4, target_modules=("query",)))
    with pytest.raises(TinyLoRAError, match="below the 14 modules"):
        apply_tinylora(tiny_qwen2(), TinyLoRAConfig(budget=4, tie_mode="none"))
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        meta = Qwen2ForCausalLM(tiny_qwen2_config())
    with pytest.raises(TinyLoRAError, match="meta device"):
        apply_tinylora(meta, TinyLoRAConfig(budget=4))


def test_without_computing_factors_on_meta_weights_then_filled_like_verls_fsdp2_load(prompt_ids):
    """compute_factors=False (a rank > 0 that verl built on the meta device, untied embeddings): same plan,
    same factor shapes and dtypes, nothing read; once every tensor is materialised and overwritten with
    the full-weight process's state dict and buffers (what verl's FSDP2 load broadcasts), it is that model."""
    from transformers import Qwen2ForCausalLM

    ids, mask = prompt_ids
    cfg = TinyLoRAConfig(budget=4, svd_dtype="float64")
    full = tiny_qwen2(tie_word_embeddings=False)
    ref = apply_tinylora(full, cfg)
    randomize(ref)
    with torch.device("meta"):
        meta = Qwen2ForCausalLM(tiny_qwen2_config(tie_word_embeddings=False))
    h = apply_tinylora(meta, cfg, compute_factors=False)
    assert h.plan == ref.plan and list(h.layers) == list(ref.layers)
    assert [p.shape for p in h.trainable_parameters()] == [p.shape for p in ref.trainable_parameters()]
    for name, layer in h.layers.items():
        for b in ("tinylora_U", "tinylora_S", "tinylora_V", "tinylora_P"):
            mine, theirs = getattr(layer, b), getattr(ref.layers[name], b)
            assert (
                mine.is_meta and mine.shape == theirs.shape and mine.dtype == theirs.dtype == torch.float64
            ), b
    meta.to_empty(device="cpu")
    meta.load_state_dict(full.state_dict())
    assert h.factor_hash() != ref.factor_hash()  # factors are not in the state dict ...
    theirs = dict(full.named_buffers())
    with torch.no_grad():
        for name, buf in meta.named_buffers():  # ... they come with the buffers
            buf.copy_(theirs[name])
    assert h.factor_hash() == ref.factor_hash()
    assert h.base_fingerprint() == ref.base_fingerprint()
    assert torch.equal(logits(meta, ids, mask), logits(full, ids, mask))


def test_without_computing_factors_keeps_shapes_and_the_seeded_P():
    cfg = TinyLoRAConfig(budget=4)
    ref = apply_tinylora(tiny_qwen2(), cfg)
    h = apply_tinylora(tiny_qwen2(), cfg, compute_factors=False)
    for name, layer in h.layers.items():
        assert torch.equal(layer.tinylora_P, ref.layers[name].tinylora_P)
        assert layer.tinylora_U.shape == ref.layers[name].tinylora_U.shape
        assert layer.tinylora_V.shape == ref.layers[name].tinylora_V.shape
    with pytest.raises(ValueError, match="frozen_rank=65"):
        apply_tinylora(tiny_qwen2(), TinyLoRAConfig(budget=4, frozen_rank=65), compute_factors=False)


@pytest.mark.parametrize(
    "cfg,u,want",
    [
        (dict(budget=4), 1, 1.0),
        (dict(budget=13, tie_mode="all", alpha=0.5), 13, 0.5),
        (dict(budget=4, lora_alpha=32), 1, 32 / 2**0.5),
        (dict(budget=8, tie_mode="all", lora_alpha=32), 8, 32 / 4),
        (dict(budget=6, tie_mode="all", frozen_rank=3, alpha=2, lora_alpha=8), 6, 2 * 8 / 18**0.5),
    ],
)
def test_every_layer_gets_the_configured_scale(cfg, u, want):
    """alpha, or alpha * lora_alpha / sqrt(r u) in the authors' convention (docs/parity.md), on every layer."""
    handle = apply_tinylora(tiny_qwen2(), TinyLoRAConfig(**cfg))
    assert handle.plan.projection_dim == u
    assert [layer.alpha for layer in handle.layers.values()] == [pytest.approx(want, rel=1e-12)] * 14
    assert TinyLoRAConfig(**cfg).scale(u) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad", [0, True, "32"])
def test_lora_alpha_must_be_a_non_zero_number(bad):
    from tinylora_verl.adapter import TinyLoRAConfigError

    with pytest.raises(TinyLoRAConfigError, match="lora_alpha="):
        TinyLoRAConfig(lora_alpha=bad)
