"""Sync verification inside a vLLM worker: every weight the engine computes with vs the trainer's.

The trainer sends a *verify* stream (meta kind "verify", then every weight under its HF name with the
adapted ones merged: exactly what a complete sync would load) through the ordinary sync transport. The
worker compares each tensor as it arrives, on the layer's own device, with the weight the engine
computes with (`vllm_weights`: the layer's kernel applied to an identity, so packed kernels count), and
keeps nothing but the running figures: no rank or worker holds a second copy of the model. With tensor
parallelism each worker compares its own shard: the expected tensor is sliced along the layer's
parallel dimension (column-parallel: rows; row-parallel: columns; vocab-parallel: rows); shards that
several ranks replicate (KV heads when tp > kv heads) map to the same slice.

`result()` gives the count of compared tensors, the largest |difference| (NaN counts as inf), the
worst tensor, the expected names vLLM does not have and the vLLM tensors the stream never covered.
"""

from __future__ import annotations

import math

import torch

from .vllm_weights import _linear_modules, _vocab_rows, linear_weight


def _tp() -> tuple[int, int]:
    try:
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

        return get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()
    except Exception:  # noqa: BLE001 (no parallel state: a single worker)
        return 0, 1


class WeightVerifier:
    def __init__(self, model, tie_word_embeddings: bool = False):
        from vllm.model_executor.layers.linear import RowParallelLinear
        from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

        self.model = model
        self.tp_rank, self.tp_size = _tp()
        self.tied = tie_word_embeddings
        # HF name -> (vLLM module name, part index or None, "weight"|"bias"|"param", sharded dim or None)
        self.index: dict[str, tuple[str, int | None, str, int | None]] = {}
        packed = getattr(model, "packed_modules_mapping", {}) or {}
        linear_params = set()
        for mod_name, module in _linear_modules(model):
            linear_params.update(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
            row = isinstance(module, RowParallelLinear)
            leaf = mod_name.rsplit(".", 1)[-1]
            parts = packed.get(leaf)
            sizes = getattr(module, "output_partition_sizes", None)
            bias = getattr(module, "bias", None)
            has_bias = isinstance(bias, torch.Tensor) and bias.numel() > 0
            names = (
                [(f"{mod_name[: -len(leaf)]}{p}", i) for i, p in enumerate(parts)]
                if parts and sizes and len(parts) == len(sizes)
                else [(mod_name, None)]
            )
            for hf, i in names:
                self.index[f"{hf}.weight"] = (mod_name, i, "weight", 1 if row else 0)
                if has_bias:
                    self.index[f"{hf}.bias"] = (mod_name, i, "bias", None if row else 0)
        vocab_params = set()
        for mod_name, module in model.named_modules():
            if isinstance(module, VocabParallelEmbedding):
                vocab_params.update(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
        self.rows = _vocab_rows(model)
        self.params = dict(model.named_parameters())
        for name, p in self.params.items():
            if name not in linear_params and p.numel() > 0:
                self.index[name] = (name, None, "param", 0 if name in vocab_params else None)
        self._module_cache: tuple[str | None, dict] = (None, {})
        self.compared = 0
        self.max_abs_diff = 0.0
        self.worst = ""
        self.missing: list[str] = []
        self.seen: set[str] = set()

    def _linear(self, mod_name: str) -> dict:
        """{(part, kind): tensor} of one Linear module, computed once per module (the stream is in order)."""
        if self._module_cache[0] == mod_name:
            return self._module_cache[1]
        module = self.model.get_submodule(mod_name)
        w = linear_weight(module)
        sizes = list(getattr(module, "output_partition_sizes", None) or [w.shape[0]])
        out = {}
        for i, chunk in enumerate(torch.split(w, sizes, dim=0)):
            out[(i, "weight")] = chunk
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.numel():
            for i, chunk in enumerate(torch.split(bias.detach(), sizes, dim=0)):
                out[(i, "bias")] = chunk
        if len(sizes) == 1:
            out.update({(None, k): t for (_, k), t in list(out.items())})
        self._module_cache = (mod_name, out)
        return out

    def _local(self, name: str) -> tuple[torch.Tensor, int | None] | None:
        if name not in self.index and name == "lm_head.weight" and self.tied:
            name = next((n for n in self.index if n.endswith("embed_tokens.weight")), name)
        entry = self.index.get(name)
        if entry is None:
            return None
        mod_name, part, kind, dim = entry
        self.seen.add(name)
        if kind == "param":
            p = self.params[mod_name].detach()
            return (p[: self.rows[mod_name]] if mod_name in self.rows else p), dim
        return self._linear(mod_name)[(part, kind)], dim

    def _shard(self, expected: torch.Tensor, local: torch.Tensor, dim: int | None) -> torch.Tensor:
        if dim is None or self.tp_size == 1 or expected.shape[dim] == local.shape[dim]:
            return expected
        shards = expected.shape[dim] // local.shape[dim]
        index = self.tp_rank * shards // self.tp_size
        return expected.narrow(dim, index * local.shape[dim], local.shape[dim])

    @torch.no_grad()
    def consume(self, name: str, expected: torch.Tensor) -> None:
        found = self._local(name)
        if found is None:
            self.missing.append(name)
            return
        local, dim = found
        want = self._shard(expected, local, dim).to(device=local.device, dtype=local.dtype)
        if want.shape != local.shape:
            diff = math.inf
        else:
            d = (local.float() - want.float()).abs()
            diff = float(torch.nan_to_num(d, nan=math.inf).max()) if d.numel() else 0.0
        self.compared += 1
        if self.compared == 1 or diff > self.max_abs_diff:
            self.max_abs_diff, self.worst = max(diff, self.max_abs_diff), name

    def result(self) -> dict:
        uncovered = sorted(set(self.index) - self.seen)
        return {
            "verify_tensors": self.compared,
            "verify_max_abs_diff": self.max_abs_diff,
            "verify_worst": self.worst,
            "verify_missing": self.missing[:20],
            "verify_uncovered": uncovered[:20],
            "verify_n_missing": len(self.missing),
            "verify_n_uncovered": len(uncovered),
            "verify_vllm_tensors": len(self.index),
            "tp_rank": self.tp_rank,
            "tp_size": self.tp_size,
        }
