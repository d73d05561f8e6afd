"""Helpers for the adapter's refusal tests: a small model (no tokenizer, 256-token vocabulary, built in
milliseconds), a fixed batch, and a snapshot of everything a refused call must leave as it was."""

from __future__ import annotations

import torch

from tests.tiny_model import tiny_qwen2


def small_model(seed: int = 0, **kw):
    """A 2-layer tiny Qwen2 (14 adapted modules: q/k/v/o [64|32 x 64], gate/up [128 x 64], down [64 x 128])."""
    return tiny_qwen2(seed=seed, vocab_size=256, **kw)


IDS = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(0))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def snapshot(model) -> dict:
    """Module classes by name, requires_grad flags, and every tensor of the state dict (cloned)."""
    return {
        "modules": [(n, type(m).__name__) for n, m in model.named_modules()],
        "grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "attrs": hasattr(model, "tinylora"),
    }


def assert_unchanged(model, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"], "a refused call changed the model's modules"
    assert after["grad"] == before["grad"], "a refused call changed requires_grad flags"
    assert after["attrs"] == before["attrs"], "a refused call left a TinyLoRA container"
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        torch.testing.assert_close(after["state"][k], v, rtol=0, atol=0, equal_nan=True, msg=f"{k} changed")


def randomize(handle, seed: int = 0, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    handle.set_vectors(
        [torch.randn(handle.plan.projection_dim, generator=g) * scale for _ in range(handle.plan.num_groups)]
    )
