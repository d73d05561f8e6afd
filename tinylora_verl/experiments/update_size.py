"""How far training moved the weights: the size of each run's update, recorded next to its accuracy.

The paper's argument is that RL reaches its accuracy with far smaller updates than SFT; a sweep record
therefore carries, for every trained run, over every weight tensor the base model and the trained model
share (same name and shape; a tied tensor such as SmolLM2's lm_head = embed_tokens counted once):

    delta_fro = sqrt(sum over tensors of ||W' - W||_F^2)      the update's Frobenius norm
    base_fro  = sqrt(sum over tensors of ||W||_F^2)
    relative  = delta_fro / base_fro
    changed   = how many tensors differ at all

accumulated in float64. The trained weights are the *effective* ones: the TinyLoRA adapter or the LoRA
merged into the base (W + Delta W), or the fine-tuned weights themselves. When they are stored in a
narrower dtype than the base (a bf16 checkpoint), the base is rounded to that dtype first, so that the
rounding of the save is not counted as an update.
"""

from __future__ import annotations

import math

import torch


def update_size(base: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> dict:
    """The norms above for two state dicts (name -> tensor)."""
    delta_sq = base_sq = 0.0
    changed = compared = 0
    seen: set[int] = set()
    for name, w in base.items():
        new = trained.get(name)
        if new is None or new.shape != w.shape or not w.is_floating_point():
            continue
        if w.data_ptr() in seen:  # a tied weight: the same storage under a second name
            continue
        seen.add(w.data_ptr())
        w64 = w.detach().double()
        d64 = new.detach().double() - w.detach().to(new.dtype).double()
        base_sq += float((w64 * w64).sum())
        dsq = float((d64 * d64).sum())
        delta_sq += dsq
        changed += dsq > 0
        compared += 1
    if not compared:
        raise ValueError("the two state dicts share no weight tensor: nothing to compare")
    delta_fro, base_fro = math.sqrt(delta_sq), math.sqrt(base_sq)
    return {
        "delta_fro": delta_fro,
        "base_fro": base_fro,
        "relative": delta_fro / base_fro if base_fro else math.inf,
        "changed": changed,
        "tensors": compared,
    }


def base_weights(model_path: str, dtype: str = "float32") -> dict[str, torch.Tensor]:
    """The untrained model's weights, loaded as the runs load it."""
    from ..hf import load_causal_lm

    return load_causal_lm(model_path, dtype=dtype, device="cpu").state_dict()
