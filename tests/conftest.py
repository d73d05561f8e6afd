"""Fixtures for the whole suite: the one tokenizer, a saved tiny model, prompts, the real-data directory.

The builders behind them live in tests/tiny_model.py and tests/helpers.py (import from there).
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import real_data_dir as _real_data_dir
from tests.tiny_model import build_tiny_qwen2, load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (from the GGUF the set-up installs; see tests/tiny_model.py)."""
    return load_tokenizer()


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
    """A saved tiny Qwen2 directory (weights + tokenizer files), as a user's model path would be."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny_qwen2"), seed=0)


@pytest.fixture(scope="session")
def real_data_dir():
    """The full data sets ($TINYLORA_JSONL_DIR); a test that asks for them is skipped when it is unset."""
    return _real_data_dir()


@pytest.fixture(autouse=True)
def _grad_mode_is_not_leaked(request):
    """Every test starts with autograd on and must leave it on: code that switches it off globally (a
    command run in-process) would make later tests' gradients silently vanish."""
    assert torch.is_grad_enabled(), "an earlier test left autograd switched off"
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail(f"{request.node.nodeid} left autograd switched off (torch.set_grad_enabled(False))")
