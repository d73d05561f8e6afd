"""Helpers shared by the test modules (import them from here, not from conftest).

Real data: the checks that need the full data sets read them from $TINYLORA_JSONL_DIR, a directory laid
out as docs/data.md describes (gsm8k/train.jsonl, math500/test.jsonl, ...; the same variable is
`tinylora-verl prepare`'s offline default). Unset, those checks are skipped with the reason; set to
something that is not such a directory, they fail. `.ci/run` sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinylora_verl.data.sources import JSONL_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
FIXTURE_JSONL = REPO / "tests" / "fixtures" / "jsonl"  # a few real rows in the same layout (its README)


def real_data_dir(*files: str) -> Path:
    """$TINYLORA_JSONL_DIR holding `files` (relative paths); skips the calling test when it is unset."""
    value = os.environ.get(JSONL_DIR_ENV, "").strip()
    if not value:
        pytest.skip(f"needs the full data sets: set {JSONL_DIR_ENV} to their JSONL directory (docs/data.md)")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.fail(f"{JSONL_DIR_ENV}={value}: no such directory")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        pytest.fail(f"{JSONL_DIR_ENV}={value} has no {', '.join(missing)} (layout: docs/data.md)")
    return path


def qwen_module_names(num_layers: int) -> list[str]:
    """The 7 adapted projections per layer, in the order a Qwen2/Llama model lists them."""
    names = []
    for i in range(num_layers):
        names += [f"model.layers.{i}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        names += [f"model.layers.{i}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    return names


# `tinylora-verl sweep` of two tiny SFT runs (two learning rates, 2 steps, HF greedy eval): the argument
# list without --out/--model, shared by the local and the real-Ray sweep tests
TINY_SFT_SWEEP_ARGS = [
    "sweep",
    "--arithmetic",
    "add",
    "--n-train",
    "8",
    "--n-val",
    "4",
    "--n-test",
    "4",
    "--methods",
    "sft",
    "--budgets",
    "2",
    "--lrs",
    "0.01,0.1",
    "--seeds",
    "0",
    "--set",
    "base_eval=false",
    "--set",
    "sft.steps=2",
    "--set",
    "sft.batch_size=4",
    "--set",
    "eval={backend: hf, temperature: 0, max_tokens: 4}",
]
