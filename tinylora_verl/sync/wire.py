"""The `vector` sync wire format: control tensors that travel in verl's ordinary (name, tensor) stream.

verl moves weights to the rollout engines as a stream of named tensors (colocated: ZMQ + CUDA IPC or
shared memory; disaggregated: a checkpoint-engine backend). The vector protocol rides on that stream
with three kinds of reserved names, none of which can clash with an HF weight name:

    tinylora_sync.meta                 uint8 JSON, always the FIRST tensor of a TinyLoRA stream
    tinylora_sync.factor.<module>.<F>  F in U, S, V, P: the frozen factors (setup streams only)
    tinylora_sync.v                    float32 [groups, u]: every group's vector

A *setup* stream (the first sync, and the first after a checkpoint load) is: meta (kind "setup": the
adapted modules in model order with their group and alpha, and the unadapted siblings that vLLM fuses
with them), the factors, the model's weights with the adapted ones as their pristine base (not merged),
then v. A *vector* stream is meta (kind "vector", sync number) then v: 2 tensors, ~100 bytes.

`sync_mode: full` streams start with a meta tensor too (kind "full": every weight, adapted ones merged;
kind "delta": only the adapted weights and their fused siblings), so a rollout worker knows whether the
stream rewrites every weight — a partial stream must never land on weights a level-2 sleep discarded.
A *verify* stream (meta kind "verify", then every weight as a full stream has it) is compared with the
engine's weights and never loaded (tinylora_verl/rollout/verify.py).
"""

from __future__ import annotations

import json

import torch

PREFIX = "tinylora_sync."
META = PREFIX + "meta"
VECTOR = PREFIX + "v"
FACTOR = PREFIX + "factor."
FACTOR_NAMES = ("U", "S", "V", "P")
VERSION = 1
KINDS = ("setup", "vector", "full", "delta", "verify")
# streams that rewrite every weight of the model (safe after a level-2 sleep), and those that do not
COMPLETE_KINDS = ("setup", "full")
PARTIAL_KINDS = ("vector", "delta")


def encode_meta(meta: dict) -> torch.Tensor:
    """A JSON dict as a uint8 tensor (the stream carries tensors only)."""
    if meta.get("kind") not in KINDS:
        raise ValueError(f"meta kind must be one of {KINDS}, got {meta.get('kind')!r}")
    raw = json.dumps({"version": VERSION, **meta}, separators=(",", ":")).encode()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def decode_meta(tensor: torch.Tensor) -> dict:
    meta = json.loads(bytes(tensor.detach().cpu().to(torch.uint8).tolist()).decode())
    if meta.get("version") != VERSION:
        raise ValueError(
            f"TinyLoRA sync stream version {meta.get('version')!r}; this rollout worker reads "
            f"version {VERSION}: install the same tinylora_verl on trainer and rollout nodes"
        )
    return meta


def factor_name(module: str, factor: str) -> str:
    return f"{FACTOR}{module}.{factor}"


def split_factor_name(name: str) -> tuple[str, str]:
    """`tinylora_sync.factor.<module>.<F>` -> (module, F)."""
    module, _, factor = name[len(FACTOR) :].rpartition(".")
    if factor not in FACTOR_NAMES or not module:
        raise ValueError(f"malformed factor tensor name {name!r}")
    return module, factor
