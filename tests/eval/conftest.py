"""Fixtures for eval tests: a tiny random Qwen2 saved with the real Qwen2.5 tokenizer, and a TinyLoRA adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TOKENIZER_DIR = SHARED / "tokenizers" / "qwen2.5"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)


def _tiny_qwen2(seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )  # head_dim 32: vLLM CPU rejects 16
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    if not TOKENIZER_DIR.is_dir():
        pytest.fail(f"the Qwen2.5 tokenizer is expected at {TOKENIZER_DIR}")
    out = tmp_path_factory.mktemp("tiny_qwen2")
    _tiny_qwen2().save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy2(TOKENIZER_DIR / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A 13-parameter TinyLoRA adapter on the tiny model with a non-zero v (so merging changes weights)."""
    import torch

    from tinylora_verl import TinyLoRAConfig, apply_tinylora
    from tinylora_verl.hf import load_causal_lm

    model = load_causal_lm(str(tiny_model_dir))
    handle = apply_tinylora(model, TinyLoRAConfig(budget=13))
    with torch.no_grad():
        for v in handle.vectors.v:
            v.copy_(torch.linspace(-3.0, 3.0, v.numel()))
    out = tmp_path_factory.mktemp("adapter")
    handle.save_adapter(out)
    return out
