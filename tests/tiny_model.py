"""A tiny Qwen2 (hidden 64, 2 heads of dim 32, 1 KV head, 2 layers) with the real Qwen2.5 tokenizer.

Tied embeddings by default (like Qwen2.5-0.5B); tie_word_embeddings=False gives a separate lm_head (like
Qwen2.5-7B), which verl builds on the meta device on ranks > 0.

head_dim 32 because vLLM's CPU attention rejects 16. Used by the e2e tests; also runnable:
    python tests/tiny_model.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TOKENIZER_DIR = Path("/work/shared/tokenizers/qwen2.5")
if not TOKENIZER_DIR.is_dir():  # CI checkouts: the tokenizer sits next to the repository
    TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "qwen2.5"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def build_tiny_qwen2(out_dir, seed: int = 0, tie_word_embeddings: bool = True) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(seed)
    config = Qwen2Config(
        hidden_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_hidden_layers=2,
        intermediate_size=128,
        vocab_size=151936,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=1024,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config).to(torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:  # not its config.json: that is Qwen2.5-0.5B's
        shutil.copy(TOKENIZER_DIR / name, out / name)
    return out


if __name__ == "__main__":
    print(build_tiny_qwen2(sys.argv[1]))
