"""Export a trained adapter to formats other tools serve.

- PEFT LoRA (rank r): A = V^T [r, in], B = alpha U diag(S) M [out, r], lora_alpha = r so peft's
  scaling alpha/r is 1. B A = alpha U diag(S) M V^T = Delta W exactly, so vLLM `--enable-lora` and
  peft serve the same function. Tied modules get their own (A, B) pair: LoRA has no tying.
- Merged HF model: the base state dict with W_base + Delta W substituted, saved by the model's own
  save_pretrained (config, generation config and tokenizer files copied alongside when given).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .functional import mix
from .model import TinyLoRAHandle

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "tokenizer.model",
    "generation_config.json",
)


def peft_lora_tensors(handle: TinyLoRAHandle) -> dict[str, torch.Tensor]:
    """{'base_model.model.<module>.lora_A.weight': [r, in], '...lora_B.weight': [out, r]} in float32."""
    out = {}
    for name, layer in handle.layers.items():
        M = mix(layer.v().detach().to(layer.tinylora_P.dtype), layer.tinylora_P)  # [r, r]
        B = (layer.tinylora_U * (layer.alpha * layer.tinylora_S)) @ M  # [out, r]
        A = layer.tinylora_V.T  # [r, in]
        out[f"base_model.model.{name}.lora_A.weight"] = A.float().cpu().contiguous()
        out[f"base_model.model.{name}.lora_B.weight"] = B.float().cpu().contiguous()
    return out


def export_peft_lora(handle: TinyLoRAHandle, directory: str | os.PathLike) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    r = handle.config.frozen_rank
    cfg = getattr(handle.model, "config", None)
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": getattr(cfg, "_name_or_path", None),
        "r": r,
        "lora_alpha": r,  # scaling = lora_alpha / r = 1: B A is Delta W exactly
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in handle.layers}),
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
    }
    save_file(peft_lora_tensors(handle), str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    return out


def export_merged(
    handle: TinyLoRAHandle, directory: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None
) -> Path:
    """Save a plain HF model directory whose weights are W_base + Delta W (no adapter needed to serve it)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = handle.base_state_dict(merged=True)
    handle.model.save_pretrained(str(out), state_dict=state)
    if tokenizer_dir is not None:
        for fname in TOKENIZER_FILES:
            src = Path(tokenizer_dir) / fname
            if src.is_file() and not (out / fname).exists():
                shutil.copy2(src, out / fname)
    return out
