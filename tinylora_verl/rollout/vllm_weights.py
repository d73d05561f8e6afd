"""The weights a vLLM model computes with, under HF checkpoint names, one tensor at a time.

vLLM's CPU backend repacks every Linear weight into a kernel format after loading (oneDNN / sgl packed)
and may drop `.weight`; vLLM fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`. So the weight
of a Linear is read back by applying the layer's own kernel to an identity matrix: x = I gives
x Wᵀ = Wᵀ exactly in fp32 and bf16 (every output is one product with 1 plus exact zeros), packed
kernels included, on CPU and GPU alike. Fused layers are split back into their HF parts with the model's
`packed_modules_mapping`; every other parameter is read directly.

Used by the sync verification (`TinyLoRAWorkerExtension.tinylora_verify`, streamed: one tensor alive at
a time) and by the CPU sleep emulation (`cpu_sleep.py`, which needs every checkpoint tensor's name and
shape to overwrite it). With tensor parallelism each worker sees its own shard (`tp_rank`, `tp_size` say
which rows / columns).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def _linear_modules(model):
    from vllm.model_executor.layers.linear import LinearBase

    for name, module in model.named_modules():
        if isinstance(module, LinearBase) and getattr(module, "quant_method", None) is not None:
            yield name, module


@torch.no_grad()
def linear_weight(module, device: torch.device | str | None = None) -> torch.Tensor:
    """The [N, K] weight a vLLM Linear computes with: its own kernel applied to an identity matrix (this
    worker's shard; fused layers come back stacked in `output_partition_sizes` order)."""
    first = next((p for p in module.parameters(recurse=False) if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    dev = device if device is not None else (first.device if first is not None else "cpu")
    eye = torch.eye(module.input_size_per_partition, dtype=dtype, device=dev)  # [K, K]
    return module.quant_method.apply(module, eye, bias=None).t().contiguous()  # [N, K]


@torch.no_grad()
def effective_weights(model, device: torch.device | str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, weight as the engine computes with it) for every weight of `model`, one at a time.

    Linear weights come back as this worker's shard ([N_local, K_local]); other parameters as stored
    (vocab-parallel embeddings may carry padding rows past the vocabulary).
    """
    packed = getattr(model, "packed_modules_mapping", {}) or {}
    linear_params = set()
    for mod_name, module in _linear_modules(model):
        linear_params.update(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
        w = linear_weight(module, device)
        leaf = mod_name.rsplit(".", 1)[-1]
        parts = packed.get(leaf)
        sizes = getattr(module, "output_partition_sizes", None)
        if parts and sizes and len(parts) == len(sizes):
            prefix = mod_name[: -len(leaf)]
            for part, chunk in zip(parts, torch.split(w, list(sizes), dim=0)):
                yield f"{prefix}{part}.weight", chunk
        else:
            yield f"{mod_name}.weight", w
        del w
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.numel():
            if parts and sizes and len(parts) == len(sizes):
                for part, chunk in zip(parts, torch.split(bias.detach(), list(sizes), dim=0)):
                    yield f"{prefix}{part}.bias", chunk
            else:
                yield f"{mod_name}.bias", bias.detach()
    rows = _vocab_rows(model)
    for name, param in model.named_parameters():
        if name not in linear_params and param.numel() > 0:
            yield name, param.detach()[: rows[name]] if name in rows else param.detach()


def _vocab_rows(model) -> dict[str, int]:
    """Parameter name -> rows that hold real vocabulary entries (vLLM pads vocab-parallel embeddings)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    out = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, VocabParallelEmbedding):
            for p, param in module.named_parameters(recurse=False):
                if param.shape[0] > module.org_vocab_size:
                    out[f"{mod_name}.{p}" if mod_name else p] = module.org_vocab_size
    return out


def weight_specs(model) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(HF name, shape, dtype) of every checkpoint tensor `effective_weights` would yield, without
    computing any (shapes of Linear parts from the layer's partition sizes; tensor parallel size 1)."""
    packed = getattr(model, "packed_modules_mapping", {}) or {}
    specs, linear_params = [], set()
    for mod_name, module in _linear_modules(model):
        params = list(module.named_parameters(recurse=False))
        linear_params.update(f"{mod_name}.{p}" for p, _ in params)
        first = next((p for _, p in params if p.is_floating_point()), None)
        dtype = first.dtype if first is not None else torch.float32
        k = module.input_size_per_partition
        leaf = mod_name.rsplit(".", 1)[-1]
        parts = packed.get(leaf)
        sizes = list(getattr(module, "output_partition_sizes", None) or [module.output_size_per_partition])
        if parts and len(parts) == len(sizes):
            prefix = mod_name[: -len(leaf)]
            specs.extend((f"{prefix}{part}.weight", (n, k), dtype) for part, n in zip(parts, sizes))
        else:
            specs.append((f"{mod_name}.weight", (sum(sizes), k), dtype))
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.numel():
            if parts and len(parts) == len(sizes):
                specs.extend((f"{prefix}{part}.bias", (n,), bias.dtype) for part, n in zip(parts, sizes))
            else:
                specs.append((f"{mod_name}.bias", tuple(bias.shape), bias.dtype))
    rows = _vocab_rows(model)
    for name, param in model.named_parameters():
        if name not in linear_params and param.numel() > 0:
            shape = (rows[name], *param.shape[1:]) if name in rows else tuple(param.shape)
            specs.append((name, shape, param.dtype))
    return specs
