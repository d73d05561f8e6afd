"""The formulas against float64 references written out by hand (loops, no matrix algebra): the functions,
then the same formulas as the handle applies them per module (delta / merged / base state dict views) and
as the two exports write them."""

import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.adapter.support import randomize, small_model
from tinylora_verl.adapter import TinyLoRAConfig, apply_tinylora
from tinylora_verl.adapter.functional import (
    add_lowrank_delta_,
    delta_weight,
    lowrank_delta,
    merged_weight,
    mix,
    random_projections,
)


def hand_delta(U, S, V, P, v, alpha=1.0):
    """Delta W[i, j] = alpha * sum_a sum_b U[i, a] S[a] (sum_k v_k P[k, a, b]) V[j, b], in Python floats."""
    out_f, r = len(U), len(S)
    in_f, u = len(V), len(v)
    M = [[sum(v[k] * P[k][a][b] for k in range(u)) for b in range(r)] for a in range(r)]
    return [
        [
            alpha * sum(U[i][a] * S[a] * M[a][b] * V[j][b] for a in range(r) for b in range(r))
            for j in range(in_f)
        ]
        for i in range(out_f)
    ]


CASES = [  # out, in, r, u, alpha
    (5, 4, 2, 3, 1.0),
    (7, 3, 1, 1, 1.0),
    (4, 6, 3, 13, 0.5),
    (6, 6, 2, 1, 2.0),
]


def _random_case(out_f, in_f, r, u, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(out_f, r, generator=g, dtype=torch.float64)
    S = torch.rand(r, generator=g, dtype=torch.float64) + 0.5
    V = torch.randn(in_f, r, generator=g, dtype=torch.float64)
    P = torch.randn(u, r, r, generator=g, dtype=torch.float64)
    v = torch.randn(u, generator=g, dtype=torch.float64)
    return U, S, V, P, v


@pytest.mark.parametrize("out_f,in_f,r,u,alpha", CASES)
def test_delta_weight_matches_hand_formula(out_f, in_f, r, u, alpha):
    U, S, V, P, v = _random_case(out_f, in_f, r, u)
    ref = torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), alpha), dtype=torch.float64
    )
    got64 = delta_weight(U, S, V, P, v, alpha)
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, ref, rtol=1e-12, atol=1e-12)
    got32 = delta_weight(U.float(), S.float(), V.float(), P.float(), v.float(), alpha)
    torch.testing.assert_close(got32.double(), ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().max() > 1e-2  # the case exercises a non-trivial delta


def test_mix_is_weighted_sum_of_projections():
    P = torch.arange(12, dtype=torch.float64).reshape(3, 2, 2)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    expected = 1.0 * P[0] - 2.0 * P[1] + 0.5 * P[2]
    torch.testing.assert_close(mix(v, P), expected, rtol=0, atol=0)


@pytest.mark.parametrize("out_f,in_f,r,u,alpha", CASES)
def test_lowrank_delta_equals_x_times_delta_transposed(out_f, in_f, r, u, alpha):
    U, S, V, P, v = _random_case(out_f, in_f, r, u, seed=1)
    x = torch.randn(2, 3, in_f, dtype=torch.float64)
    ref = torch.tensor(
        [
            [
                [
                    sum(x[b, t, j].item() * d for j, d in enumerate(row))
                    for row in hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), alpha)
                ]
                for t in range(3)
            ]
            for b in range(2)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(lowrank_delta(x, U, S, V, P, v, alpha), ref, rtol=1e-10, atol=1e-10)


def test_merged_weight_is_out_of_place_and_keeps_dtype():
    U, S, V, P, v = (t.float() for t in _random_case(8, 5, 2, 2, seed=2))
    W = torch.randn(8, 5).to(torch.bfloat16)
    W_before = W.clone()
    merged = merged_weight(W, U, S, V, P, v)
    assert merged.dtype == torch.bfloat16
    assert torch.equal(W, W_before)  # untouched
    ref = (
        W.double()
        + torch.tensor(
            hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist()), dtype=torch.float64
        )
    ).to(torch.bfloat16)
    assert torch.equal(merged, ref)  # one rounding of the exact sum
    assert not torch.equal(merged, W)  # the delta is visible in bf16 here


def test_merged_weight_in_row_blocks_and_out_dtype(monkeypatch):
    """Blocks of rows (the memory bound) give the float64 sum; a bf16-stored W with out_dtype float32 (the
    rollout receiver's compact copy of a float32 W) gives the same bits as the float32 W itself."""
    import tinylora_verl.adapter.functional as F

    U, S, V, P, v = (t.float() for t in _random_case(9, 5, 2, 3, seed=4))
    W = torch.randn(9, 5).to(torch.bfloat16).float()  # exactly representable in bf16
    whole = merged_weight(W, U, S, V, P, v, 0.7)
    monkeypatch.setattr(F, "MERGE_BLOCK_ELEMENTS", 10)  # 2 rows a block: 5 blocks, the last one short
    blocked = F.merged_weight(W, U, S, V, P, v, 0.7)
    ref = W.double() + torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), 0.7), dtype=torch.float64
    )
    torch.testing.assert_close(blocked.double(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(blocked, whole)
    compact = F.merged_weight(W.to(torch.bfloat16), U, S, V, P, v, 0.7, out_dtype=torch.float32)
    assert compact.dtype == torch.float32 and torch.equal(compact, blocked)


def test_projections_are_deterministic_and_keyed_by_name_and_seed():
    a = random_projections("model.layers.0.self_attn.q_proj", seed=0, u=4, r=2)
    assert a.shape == (4, 2, 2) and a.dtype == torch.float32
    assert torch.equal(a, random_projections("model.layers.0.self_attn.q_proj", seed=0, u=4, r=2))
    assert not torch.equal(a, random_projections("model.layers.1.self_attn.q_proj", seed=0, u=4, r=2))
    assert not torch.equal(a, random_projections("model.layers.0.self_attn.q_proj", seed=1, u=4, r=2))


@pytest.mark.parametrize("r", [1, 2, 4])
def test_projections_are_normal_with_variance_one_over_r(r):
    x = random_projections("stat", seed=3, u=20000 // (r * r) + 1, r=r).double().flatten()
    n = x.numel()
    assert abs(x.mean().item()) < 4 / math.sqrt(n * r)  # mean 0 (4 sigma)
    assert abs(x.var().item() * r - 1.0) < 0.05  # variance 1/r
    within = (x.abs() < 1 / math.sqrt(r)).double().mean().item()  # 68.27 % within one sd
    assert abs(within - 0.6827) < 0.02


def test_projections_identical_across_processes():
    code = (
        "import json, torch; from tinylora_verl.adapter.functional import random_projections as rp;"
        "print(json.dumps(rp('model.layers.3.mlp.down_proj', 7, 3, 2).double().flatten().tolist()))"
    )
    # a different torch RNG state and hash seed in the child must not matter
    env_code = "import torch; torch.manual_seed(123); " + code
    out = subprocess.run(
        [sys.executable, "-c", env_code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "999", "PATH": "/usr/bin:/bin"},
    ).stdout
    child = torch.tensor(json.loads(out), dtype=torch.float64)
    here = random_projections("model.layers.3.mlp.down_proj", 7, 3, 2).double().flatten()
    assert torch.equal(child, here)


def test_bad_projection_sizes_are_refused():
    with pytest.raises(ValueError, match="u >= 1"):
        random_projections("x", 0, u=0, r=2)


def test_alpha_defaults_to_one():
    """delta_weight / lowrank_delta without alpha are the paper's formula (no scale)."""
    U, S, V, P, v = _random_case(5, 4, 2, 3, seed=5)
    ref = torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist()), dtype=torch.float64
    )
    torch.testing.assert_close(delta_weight(U, S, V, P, v), ref, rtol=1e-12, atol=1e-12)
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(lowrank_delta(x, U, S, V, P, v), x @ ref.T, rtol=1e-12, atol=1e-12)
    y = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    want = y + x @ ref.T
    torch.testing.assert_close(add_lowrank_delta_(y.clone(), x, U, S, V, P, v), want, rtol=1e-12, atol=1e-12)


def test_lowrank_delta_casts_x_to_the_factors_dtype():
    """A float32 activation against float64 factors: computed in float64, to the float64 reference."""
    U, S, V, P, v = _random_case(5, 4, 2, 3, seed=7)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(8))  # float32
    ref = (
        x.double()
        @ torch.tensor(
            hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), 0.5), dtype=torch.float64
        ).T
    )
    got = lowrank_delta(x, U, S, V, P, v, 0.5)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_merged_weight_of_bf16_factors_is_summed_in_float32():
    """bf16 W and factors with out_dtype float32: the sum is done in float32 (error ~1e-6 of the float64
    reference from the same bf16 values), not in bf16 (error ~1e-2). r=3 exercises every column k of the
    outer-product sum beyond the first two."""
    U, S, V, P, v = (t.to(torch.bfloat16) for t in _random_case(7, 6, 3, 4, seed=9))
    W = torch.randn(7, 6, generator=torch.Generator().manual_seed(10)).to(torch.bfloat16)
    ref = W.double() + torch.tensor(
        hand_delta(*(t.double().tolist() for t in (U, S, V, P, v)), 1.5), dtype=torch.float64
    )
    got = merged_weight(W, U, S, V, P, v, 1.5, out_dtype=torch.float32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)


def test_merged_weight_is_on_the_weights_device_when_the_factors_are_elsewhere():
    """Factors on the CPU, W on another device (here "meta", which holds no values): the factors move to W's
    device and the result is made there, with W's shape and dtype."""
    U, S, V, P, v = (t.float() for t in _random_case(6, 5, 3, 2, seed=11))
    W = torch.empty(6, 5, dtype=torch.bfloat16, device="meta")
    got = merged_weight(W, U, S, V, P, v)
    assert got.device.type == "meta" and got.shape == (6, 5) and got.dtype == torch.bfloat16


def _reference_projections(name, seed, u, r):
    """The recipe written out again (checkpoints regenerate P from it, so its bits are part of the format):
    little-endian 64-bit words of BLAKE2b-512("tinylora/blake2b-boxmuller/1/seed=S/NAME/u=U/r=R#BLOCK"), the top
    53 bits of each word -> (k + 0.5) / 2^53, pairs (a, b) -> sqrt(-2 ln a) (cos 2 pi b, sin 2 pi b), the first
    u*r*r of them, scaled by 1/sqrt(r), in float64."""
    import hashlib

    n = u * r * r
    words = []
    block = 0
    while len(words) < n + 1:
        key = f"tinylora/blake2b-boxmuller/1/seed={seed}/{name}/u={u}/r={r}#{block}"
        digest = hashlib.blake2b(key.encode(), digest_size=64).digest()
        words += [int.from_bytes(digest[i : i + 8], "little") for i in range(0, 64, 8)]
        block += 1
    uni = [((w >> 11) + 0.5) / 2.0**53 for w in words]
    normals = []
    for i in range(0, n, 2):
        a, b = uni[i], uni[i + 1]
        normals += [math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * b)]
        normals += [math.sqrt(-2 * math.log(a)) * math.sin(2 * math.pi * b)]
    return [x / math.sqrt(r) for x in normals[:n]]


@pytest.mark.parametrize("u,r", [(3, 3), (1, 1), (2, 2)])
def test_projections_follow_the_recipe_bit_for_bit(u, r):
    """u*r*r odd (27, 1) and even (8); 27 normals need 4 hash blocks. The float32 P is the float64
    reference rounded once."""
    name = "model.layers.2.mlp.up_proj"
    got = random_projections(name, 11, u, r)
    ref = torch.tensor(_reference_projections(name, 11, u, r), dtype=torch.float64).reshape(u, r, r)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref.to(torch.float32))


def test_projection_values_are_pinned():
    """A change of recipe must bump PROJECTION_RECIPE and keep the old branch: these values are in every
    checkpoint's factor hash."""
    got = random_projections("model.layers.0.self_attn.q_proj", 5, 3, 2).double().flatten().tolist()
    pinned = [-0.36893659830093384, 1.1935685873031616, -0.23028786480426788, -0.04140603169798851]
    assert got[:4] == pinned


def test_mix_casts_v_to_the_projections_dtype():
    """The trainable v may be float64 (or bf16) while P is float32: M comes out in P's dtype."""
    P = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    got = mix(v, P)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, 1.0 * P[0] - 2.0 * P[1] + 0.5 * P[2], rtol=0, atol=0)


def test_stable_uniforms_are_the_hash_words_top_53_bits_plus_a_half():
    """The float64 uniforms themselves (the float32 P hides a change of one unit in 2^53)."""
    import hashlib

    from tinylora_verl.adapter.functional import _stable_uniforms

    digests = [hashlib.blake2b(f"k#{b}".encode(), digest_size=64).digest() for b in range(2)]
    words = [int.from_bytes(d[i : i + 8], "little") for d in digests for i in range(0, 64, 8)]
    assert _stable_uniforms("k", 11) == [((w >> 11) + 0.5) / 2.0**53 for w in words[:11]]


@pytest.mark.parametrize("out_f,in_f,r,u,alpha", CASES)
def test_add_lowrank_delta_in_place_equals_y_plus_the_hand_delta(out_f, in_f, r, u, alpha):
    """Same dtype (the float32 CPU path): y + x ΔWᵀ accumulated into y in place; value and the gradients
    with respect to x, v and y equal the float64 formula (dL/dy = g, dL/dx = g ΔW, dL/dv_k = Σ g ⊙ x (∂ΔW/∂v_k)ᵀ)."""
    U, S, V, P, v = _random_case(out_f, in_f, r, u, seed=11)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, in_f, dtype=torch.float64, generator=g).requires_grad_(True)
    y0 = torch.randn(2, 3, out_f, dtype=torch.float64, generator=g).requires_grad_(True)
    v = v.clone().requires_grad_(True)
    y = y0 * 1.0  # a non-leaf, as a linear layer's output is
    got = add_lowrank_delta_(y, x, U, S, V, P, v, alpha)
    assert got.data_ptr() == y.data_ptr()  # accumulated into the base output, no new [tokens, out] tensor
    D = torch.tensor(
        hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), v.tolist(), alpha), dtype=torch.float64
    )
    torch.testing.assert_close(got, y0 + x @ D.T, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn(2, 3, out_f, dtype=torch.float64, generator=g)
    gx, gv, gy = torch.autograd.grad(got, (x, v, y0), grad_out)
    torch.testing.assert_close(gy, grad_out, rtol=0, atol=0)
    torch.testing.assert_close(gx, grad_out @ D, rtol=1e-10, atol=1e-10)
    for k in range(u):  # ΔW is linear in v: ∂ΔW/∂v_k = ΔW(e_k)
        e = torch.zeros(u, dtype=torch.float64)
        e[k] = 1.0
        Dk = torch.tensor(
            hand_delta(U.tolist(), S.tolist(), V.tolist(), P.tolist(), e.tolist(), alpha), dtype=torch.float64
        )
        torch.testing.assert_close(gv[k], (grad_out * (x @ Dk.T)).sum(), rtol=1e-10, atol=1e-10)


def test_add_lowrank_delta_of_a_bf16_output_keeps_float32_arithmetic():
    """bf16 base output over float32 factors (FSDP2 bf16 compute, the GPU presets): not in place; the update
    is computed in float32 and cast, then added in bf16 — the same bits as `y + lowrank_delta(...)`."""
    U, S, V, P, v = (t.float() for t in _random_case(6, 5, 2, 3, seed=13))
    g = torch.Generator().manual_seed(14)
    x = torch.randn(4, 5, generator=g).to(torch.bfloat16)
    y = torch.randn(4, 6, generator=g).to(torch.bfloat16)
    before = y.clone()
    got = add_lowrank_delta_(y, x, U, S, V, P, v, 0.5)
    assert got.dtype == torch.bfloat16 and torch.equal(y, before)
    assert torch.equal(got, before + lowrank_delta(x, U, S, V, P, v, 0.5).to(torch.bfloat16))


# ---- the handle: the formulas per module, and the exports -------------------------------------------
HANDLE_CFG = dict(budget=4, frozen_rank=2, alpha=0.75)


def adapted(dtype=None, **cfg):
    model = small_model(dtype=dtype)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    handle = apply_tinylora(model, TinyLoRAConfig(**{**HANDLE_CFG, **cfg}))
    randomize(handle, seed=5)
    return handle, base


def reference_delta(layer) -> torch.Tensor:
    """A layer's alpha * U diag(S) M V^T in float64, M = sum_i v_i P_i, by an explicit loop over i."""
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
    handle.model.config._name_or_path = "org/base"
    with torch.no_grad():  # v held in bf16 (a model cast after apply_tinylora): mixed in P's float32
        for p in handle.vectors.v:
            p.data = p.data.to(torch.bfloat16)
    out = tmp_path / "new" / "peft"  # created with its parents
    handle.export_peft_lora(out)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert json.loads((out / "adapter_config.json").read_text()) == {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "org/base",
        "r": 3,
        "lora_alpha": 3,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "target_modules": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
    }
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


def test_layer_forward_is_the_base_output_plus_x_delta_and_the_base_when_disabled():
    handle, base = adapted()
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    name, layer = next(iter(handle.layers.items()))
    assert layer.alpha == 0.75
    W = base[f"{name}.weight"].double()
    bias = base[f"{name}.bias"].double()  # Qwen2's q/k/v projections have one
    want = x.double() @ (W + reference_delta(layer)).T + bias
    with torch.no_grad():
        torch.testing.assert_close(layer(x).double(), want, rtol=1e-5, atol=1e-6)
        with handle.disabled():
            assert torch.equal(layer(x), layer.base_layer(x))
        assert handle.vectors.enabled


@pytest.mark.parametrize("bad", ["U", "V", "P"])
def test_a_layer_refuses_factors_that_do_not_fit_its_weight(bad):
    from tinylora_verl.adapter.layer import TinyLoRALinear, TinyLoRAVectors

    base = torch.nn.Linear(6, 5)  # W [5, 6]
    shapes = {"U": (5, 2), "S": (2,), "V": (6, 2), "P": (3, 2, 2)}
    shapes[bad] = {"U": (4, 2), "V": (5, 2), "P": (3, 2, 3)}[bad]
    f = {k: torch.zeros(v) for k, v in shapes.items()}
    with pytest.raises(ValueError) as err:
        TinyLoRALinear(base, f["U"], f["S"], f["V"], f["P"], 0, TinyLoRAVectors(1, 3))
    assert str(err.value) == (
        f"factor shapes U{shapes['U']} S(2,) V{shapes['V']} P{shapes['P']} do not fit a weight of shape (5, 6) "
        "at rank 2"
    )


def test_peft_export_of_a_model_without_an_hf_config(tmp_path):
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(8, 8)

    handle = apply_tinylora(Plain(), TinyLoRAConfig(budget=1, target_modules=["q_proj"]))
    handle.export_peft_lora(tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] is None and cfg["target_modules"] == ["q_proj"]
