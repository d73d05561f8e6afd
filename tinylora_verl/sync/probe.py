"""What the rollout engine's weights do to the policy, measured on a fixed probe batch (pure torch).

The rollout engine computes with W_roll = dtype_roll(W + ΔW(v)) (the merge rounded to vLLM's dtype; the
sync verifier proves the engine holds exactly these bits). The trainer computes with W and ΔW(v) apart
(y = W x + ΔW x). Three forwards of the *same* module on the same tokens, with the same kernels and
compute dtype, differ only in their weights:

* train — the trainer's policy (adapter on);
* base  — the adapter off (what the policy was before training);
* roll  — every adapted layer computes with W_roll instead (`rollout_weights`).

From them, averaged over the probe's tokens (full-vocabulary KL, float64):

* `rollout_kl`  = KL(train ‖ roll): how far the policy that samples is from the one being trained;
* `effect_kl`   = KL(train ‖ base): the adapter's whole effect on the policy;
* `effect_kept` = 1 − rollout_kl / effect_kl: the share of that effect the rollout keeps (1: all of it,
  0: the merge rounded it away, as if the adapter were off; undefined — NaN — while effect_kl is 0).

W is the weight the forward sees. Under FSDP2 mixed precision that is the compute-dtype copy of the master
weight, so W_roll here equals the engine's exactly when the master weights are representable in the
compute dtype (checkpoints released in bf16, or float32 compute); otherwise it differs by one rounding
of W. `rounded_away_frac` (diagnostics.py) counts entries; this measures the policy.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from ..adapter.functional import merged_weight


@contextlib.contextmanager
def rollout_weights(layers, dtype: torch.dtype, vectors=None):
    """Inside the block, every TinyLoRA layer in `layers` ({name: TinyLoRALinear}) outputs
    x W_roll^T + b with W_roll = dtype(W + ΔW(v)), computed from the weight its forward sees.

    `vectors` (one v per group): the v the rollout merged with — the full float32 master copy that the
    sync sends; default: the v the layer's forward sees (under FSDP2 mixed precision, a compute-dtype copy).
    A forward hook replaces the layer's output, so it works inside wrappers that swap the weight in for
    the forward (FSDP2 un-sharding) and needs no change to the layer."""

    def hook(layer, args, output):
        x = args[0]
        base = layer.base_layer
        W = merged_weight(
            base.weight,
            layer.tinylora_U,
            layer.tinylora_S,
            layer.tinylora_V,
            layer.tinylora_P,
            layer.v() if vectors is None else vectors[layer.group],
            layer.alpha,
            out_dtype=dtype,
        )
        return F.linear(x, W.to(x.dtype), None if base.bias is None else base.bias.to(x.dtype))

    handles = [layer.register_forward_hook(hook) for layer in layers.values()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# positions whose float64 log-softmax is held at once by `mean_kl` (bounds its memory at large vocabularies)
KL_CHUNK_POSITIONS = 256


def mean_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over positions where `mask` is true of KL(p ‖ q) = Σ_v p(v) (log p(v) − log q(v)), float64.

    logits_* [batch, seq, vocab], mask [batch, seq]."""
    return mean_kls(logits_p, [logits_q], mask)[0]


def mean_kls(logits_p: torch.Tensor, others: list[torch.Tensor], mask: torch.Tensor) -> list[float]:
    """[mean_kl(logits_p, q, mask) for q in others], with p's float64 log-softmax computed once per chunk."""
    sel = mask.bool()
    if not sel.any():
        raise ValueError("the probe mask selects no position")
    p, qs = logits_p[sel], [q[sel] for q in others]
    totals = [0.0] * len(qs)
    for i in range(0, p.shape[0], KL_CHUNK_POSITIONS):
        lp = torch.log_softmax(p[i : i + KL_CHUNK_POSITIONS].double(), dim=-1)
        prob = lp.exp()
        for k, q in enumerate(qs):
            lq = torch.log_softmax(q[i : i + KL_CHUNK_POSITIONS].double(), dim=-1)
            totals[k] += (prob * (lp - lq)).sum().item()
    return [t / p.shape[0] for t in totals]


def effect_kept(rollout_kl: float, effect_kl: float) -> float:
    """1 − rollout_kl / effect_kl; NaN when the adapter has no effect yet (effect_kl == 0)."""
    return 1.0 - rollout_kl / effect_kl if effect_kl > 0 else math.nan


def probe_batch(rows, sequences: int, tokens: int) -> dict:
    """A fixed probe from token rows (1-D tensors of real tokens, e.g. verl's jagged `input_ids` unbound):
    the first `sequences` rows, at most `tokens` of each, right-padded with 0
    -> {"input_ids", "attention_mask"} [K, T] on the CPU."""
    if sequences < 1 or tokens < 1:
        raise ValueError(f"a probe needs sequences >= 1 and tokens >= 1, got {sequences}, {tokens}")
    rows = [r.reshape(-1)[:tokens].detach().cpu() for r in list(rows)[:sequences]]
    rows = [r for r in rows if r.numel()]
    if not rows:
        raise ValueError("the probe's rows have no token")
    width = max(r.numel() for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : r.numel()], mask[i, : r.numel()] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def probe(
    forward, layers, disabled, dtype: torch.dtype, mask: torch.Tensor, vectors=None, cache=None
) -> dict:
    """The three forwards and the metrics above.

    forward(): the model's logits [batch, seq, vocab] on the probe batch; disabled(): a context manager
    that switches the adapter off; layers: {name: TinyLoRALinear}; dtype: the rollout engine's weight
    dtype; mask [batch, seq]: positions to average over; vectors: the v the rollout merged with (see
    `rollout_weights`); cache: a dict kept by the caller between calls on the same batch — the base
    policy's logits do not depend on v, so they are computed once and kept there (on the host)."""
    train = forward()
    with rollout_weights(layers, dtype, vectors):
        roll = forward()
    if cache is not None and "base" in cache:
        base = cache["base"].to(train.device)
    else:
        with disabled():
            base = forward()
        if cache is not None:
            cache["base"] = base.cpu()
    rollout_kl, effect_kl = mean_kls(train, [roll, base], mask)
    return {
        "tinylora/rollout_kl": rollout_kl,
        "tinylora/effect_kl": effect_kl,
        "tinylora/effect_kept": effect_kept(rollout_kl, effect_kl),
    }
