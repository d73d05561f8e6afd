"""What lets a tool run any subset of the adapter tests, in any order (mutmut, docs/testing.md): parametrize
ids made of [A-Za-z0-9_.=-] only (a command line cannot address ids holding brackets, quotes or regex
escapes, nor ids that change between two collections), and a seeded global RNG at the start of each test."""

import re

import pytest
import torch


def pytest_make_parametrize_id(config, val, argname):
    if isinstance(val, torch.Tensor):  # random values would give another id at each collection
        return f"tensor{'x'.join(map(str, val.shape))}"
    text = val if isinstance(val, str) else getattr(val, "__name__", None) or repr(val)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:40] or argname


@pytest.fixture(autouse=True)
def _seed_torch():
    """Each test starts from the same global RNG state, whatever ran before it: a tool that runs a subset of
    the tests (mutmut runs those that reach a mutant) must see the values a full run sees."""
    torch.manual_seed(0)
