"""TinyLoRA cost at a big model's shapes, one decoder layer at a time (`bench/adapter.py --shapes qwen2.5-7b`).

Meant for a GPU machine; a CPU runs it too (fewer tokens). Measured:

1. fwd+bwd of one Qwen2 decoder layer at the real shapes with TinyLoRA on its 7 projections, over the
   same layer frozen (hidden states requiring grad, so backward computes dX and no weight gradient) —
   interleaved rounds, median of per-round ratios. The model is a 1-layer Qwen2 with a small vocabulary,
   so the decoder layer dominates. Weights are random; the cost of a dense layer does not depend on them.
2. randomized rank-r SVD (ours, default options) vs exact `torch.linalg.svd` on a random
   [hidden, intermediate] matrix (a down_proj^T-sized weight): time of each and the speedup.
   A Gaussian matrix has a nearly flat spectrum, so only the time is meaningful here, not the angle.
"""

from __future__ import annotations

import time

import torch

from bench import measure
from tinylora_verl.adapter import apply_tinylora
from tinylora_verl.adapter.svd import SVDOptions, svd_factors

SHAPES = {
    # Qwen2.5-7B-Instruct config.json: 28 layers x 7 projections = 196 modules
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_attention_heads=28,
        num_key_value_heads=4,
        rope_theta=1_000_000.0,
    ),
}
# decoder layers of each entry (not in SHAPES: run_shapes builds a 1-layer model from those keys)
NUM_LAYERS = {"qwen2.5-7b": 28}


def projection_shapes(shape: dict) -> list[tuple[str, int, int]]:
    """(name, out_features, in_features) of the 7 TinyLoRA targets of one Llama/Qwen2 decoder layer."""
    hidden, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * (hidden // shape["num_attention_heads"])
    return [
        ("q_proj", hidden, hidden),
        ("k_proj", kv, hidden),
        ("v_proj", kv, hidden),
        ("o_proj", hidden, hidden),
        ("gate_proj", inter, hidden),
        ("up_proj", inter, hidden),
        ("down_proj", hidden, inter),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_shapes(name: str, tokens: int, rounds: int, device: str | None, log) -> dict:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from bench.workloads import tinylora_config

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32  # bf16 is what a GPU trains in
    shape = SHAPES[name]
    cfg = Qwen2Config(
        **shape,
        num_hidden_layers=1,
        vocab_size=1024,
        max_position_embeddings=max(4096, tokens),
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    with torch.device(dev):
        frozen = Qwen2ForCausalLM(cfg).to(dtype)
        adapted = Qwen2ForCausalLM(cfg).to(dtype)
    adapted.load_state_dict(frozen.state_dict())
    for m in (frozen, adapted):
        for p in m.parameters():
            p.requires_grad_(False)
    frozen.get_input_embeddings().register_forward_hook(lambda mod, i, o: o.requires_grad_(True))
    t0 = time.perf_counter()
    handle = apply_tinylora(adapted, tinylora_config())
    _sync(dev)
    init_s = time.perf_counter() - t0
    ids = torch.randint(0, cfg.vocab_size, (1, tokens), generator=torch.Generator().manual_seed(0)).to(dev)
    log(
        f"{name}: one decoder layer {shape}, {tokens} tokens, {dev} {dtype}; "
        f"{len(handle.layers)} adapted modules, init {init_s:.2f}s"
    )

    def step(model, trainable):
        def run():
            for p in trainable:
                p.grad = None
            model(input_ids=ids, labels=ids).loss.backward()
            _sync(dev)

        return run

    times = measure.interleaved(
        {"frozen": step(frozen, []), "tinylora": step(adapted, handle.trainable_parameters())},
        rounds,
        log=log,
    )
    del frozen, adapted, handle

    W = torch.randn(shape["hidden_size"], shape["intermediate_size"], device=dev, dtype=torch.float32)
    svd_s = {}
    for method in ("randomized", "exact", "randomized"):  # randomized twice: the first call warms up
        _sync(dev)
        t0 = time.perf_counter()
        svd_factors(W, 2, SVDOptions(method=method))
        _sync(dev)
        svd_s[method] = time.perf_counter() - t0
    log(
        f"SVD of a random {tuple(W.shape)} matrix: randomized {svd_s['randomized']:.3f}s, exact {svd_s['exact']:.3f}s"
    )
    return {
        "shape": name,
        "device": str(dev),
        "dtype": str(dtype),
        "tokens": tokens,
        "init_seconds": init_s,
        "fwd_bwd_seconds": times,
        "svd_seconds": svd_s,
        "layer_fwd_bwd_ratio": measure.paired_ratio(times, "tinylora", "frozen"),
        "svd_speedup": svd_s["exact"] / svd_s["randomized"],
    }
