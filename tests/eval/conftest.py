"""Fixtures for eval tests: a TinyLoRA adapter on the suite's tiny model (`tiny_model_dir`, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


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
