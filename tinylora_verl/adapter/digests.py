"""Digests that identify a base model, the P matrices and the frozen factors (checkpoint checks, sync).

Each is a function of (module name, tensors) pairs in model order, so it can be computed before a model
is wrapped (load_adapter checks a checkpoint before touching the model) and from a handle's layers alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch

FINGERPRINT_SAMPLES = 65536  # entries sampled per weight: cheap for 7B models, moved by any fine-tune


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().to(torch.float32).cpu().contiguous().view(torch.uint8).numpy().tobytes()


def base_fingerprint(weights: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over each adapted weight's name, shape and a strided bf16 sample of its values.

    bf16 makes it independent of the dtype the model was loaded in; the sample keeps it cheap for
    7B models while any fine-tune (which moves every entry) changes it.
    """
    h = hashlib.sha256()
    for name, weight in weights:
        w = weight.detach().reshape(-1)
        stride = max(1, w.numel() // FINGERPRINT_SAMPLES)
        sample = w[::stride].to(torch.bfloat16).cpu().contiguous()
        h.update(f"{name}|{tuple(weight.shape)}|".encode())
        h.update(sample.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def projection_hash(projections: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 of every module's P [u, r, r] (float32 bytes, with its name and shape), model order.

    P is a pure function of (seed, name, u, r), identical on every platform, so this hash is exact."""
    h = hashlib.sha256()
    for name, P in projections:
        h.update(f"{name}|{tuple(P.shape)}|".encode())
        h.update(_bytes(P))
    return h.hexdigest()


def factor_hash(factors: Iterable[tuple[str, Iterable[torch.Tensor]]]) -> str:
    """sha256 of all frozen factors (U, S, V, P) in float32, model order (bits depend on the BLAS)."""
    h = hashlib.sha256()
    for name, tensors in factors:
        h.update(name.encode())
        for t in tensors:
            h.update(_bytes(t))
    return h.hexdigest()
