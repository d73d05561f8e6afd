"""Parametrize ids made of [A-Za-z0-9_.=-] only: tools that pass test ids back to pytest on a command line
(mutmut, docs/testing.md) cannot address ids holding brackets, quotes or regex escapes, nor ids that change
between two collections."""

import re

import torch


def pytest_make_parametrize_id(config, val, argname):
    if isinstance(val, torch.Tensor):  # random values would give another id at each collection
        return f"tensor{'x'.join(map(str, val.shape))}"
    text = val if isinstance(val, str) else getattr(val, "__name__", None) or repr(val)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:40] or argname
