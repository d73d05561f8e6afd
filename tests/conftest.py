"""Shared fixtures: tiny random Qwen2 models built from a config, with the real Qwen2.5 tokenizer.

Nothing is downloaded: the tokenizer comes from ../shared/tokenizers/qwen2.5 (beside the repo).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TOKENIZER_DIR = SHARED / "tokenizers" / "qwen2.5"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)


def tiny_qwen2_config(
    num_layers: int = 2, vocab_size: int = 151936, hidden: int = 64, tie_word_embeddings=True, **kw
):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        **kw,
    )


def tiny_qwen2(seed: int = 0, dtype=torch.float32, **kw):
    """A random Qwen2ForCausalLM (head_dim 32, as vLLM CPU needs >= 32); same seed -> same weights."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config(**kw)).eval()
    # HF's init leaves some weights at exact zeros/ones; perturb so every module has a distinct spectrum.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.to(dtype)  # the same float32 weights, rounded: a bf16 copy of the same base


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    if not TOKENIZER_DIR.is_dir():
        pytest.fail(f"the Qwen2.5 tokenizer is expected at {TOKENIZER_DIR} (../shared beside the repo)")
    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.fixture(scope="session")
def prompt_ids(tokenizer):
    msgs = [
        [{"role": "user", "content": "What is 17 + 25? Put the answer after ####."}],
        [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April."}],
    ]
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Qwen2 directory (weights + real tokenizer files), as a user's model path would be."""
    out = tmp_path_factory.mktemp("tiny_qwen2")
    tiny_qwen2(seed=0).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (TOKENIZER_DIR / name).exists():
            shutil.copy2(TOKENIZER_DIR / name, out / name)
    return out


def qwen_module_names(num_layers: int) -> list[str]:
    """The 7 adapted projections per layer, in the order a Qwen2/Llama model lists them."""
    names = []
    for i in range(num_layers):
        names += [f"model.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        names += [f"model.layers.{i}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    return names
