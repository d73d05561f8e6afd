"""SFT baseline: the same adapters and budgets as RL, trained on reference solutions with a plain loop.

    trainable = prepare_trainable(model, SFTConfig(kind="tinylora", budget=13, seed=0))
    metrics = train_sft(trainable, tokenizer, train_rows, cfg, val_rows=..., log=print)
    save_trainable(trainable, out_dir, tokenizer_dir=...)

Kinds (what is trainable):
- tinylora: `apply_tinylora` with the budget (planner: u and tie factor), tie mode, frozen rank r, seed and
  scale (`tinylora_lora_alpha`: the authors' scale, TinyLoRAConfig.lora_alpha) — only the v vectors train;
- lora: a peft LoRA of rank `lora_rank` on the same seven projections (lora_alpha as verl's default, 16);
- full: every parameter.
Objective: objective.py (masked next-token loss, token mean over the batch's response tokens).
Optimiser: torch AdamW (betas 0.9/0.999, eps 1e-8), weight decay `weight_decay`, linear warm-up over
`warmup_ratio` of the steps then constant LR, gradient-norm clipping at `max_grad_norm` (None = off).
Data order: shuffled every epoch by a generator seeded with `seed` (the same seed gives TinyLoRA its P).
Early stopping (`eval_every` k > 0 and a `val_score` callback, e.g. sampled validation accuracy): the
score is taken before training and every k steps; training stops once `patience` scores in a row fail to
beat the best, or at `steps`, and the trainable parameters are put back to the best-scoring ones (ties:
the earlier step). The result records the step it kept and the examples seen up to it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..adapter import DEFAULT_TARGETS, TinyLoRAConfig, apply_tinylora
from ..errors import InvalidValue
from .objective import build_examples, collate, mean_loss, nll_sum, pad_id_of

KINDS = ("tinylora", "lora", "full")


@dataclass
class SFTConfig:
    kind: str = field(default="tinylora", metadata={"help": f"what trains: one of {KINDS}"})
    budget: int | None = field(default=13, metadata={"help": "TinyLoRA trainable parameters (planner)"})
    tie_mode: str = field(default="tiled", metadata={"help": "TinyLoRA tie mode"})
    frozen_rank: int = field(default=2, metadata={"help": "TinyLoRA r"})
    tinylora_lora_alpha: float | None = field(
        default=None,
        metadata={
            "help": "TinyLoRA: the authors' scale (TinyLoRAConfig.lora_alpha; a sweep sets 32); None = the paper's formula"
        },
    )
    lora_rank: int = field(default=1, metadata={"help": "rank of the LoRA baseline"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (verl's default)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps (None: from epochs)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training rows when steps is None"})
    batch_size: int = field(default=16, metadata={"help": "examples per optimizer step"})
    micro_batch_size: int = field(default=8, metadata={"help": "examples per forward/backward"})
    max_length: int = field(default=1024, metadata={"help": "longer examples are dropped (and counted)"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "fraction of steps of linear warm-up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping (None: off)"})
    eval_every: int = field(
        default=0, metadata={"help": "early stopping: validation score every N steps (0: off)"}
    )
    patience: int = field(
        default=3, metadata={"help": "early stopping: stop after this many scores without a new best"}
    )
    seed: int = field(default=0, metadata={"help": "data order and TinyLoRA's P"})
    dtype: str = field(default="float32", metadata={"help": "model dtype: float32, bfloat16 or float16"})

    def __post_init__(self) -> None:
        errors = []
        if self.kind not in KINDS:
            errors.append(f"kind={self.kind!r} must be one of {KINDS}")
        if self.kind == "tinylora" and (not isinstance(self.budget, int) or self.budget < 1):
            errors.append(f"budget={self.budget!r} must be a positive integer for TinyLoRA")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            errors.append(f"lr={self.lr!r} must be a positive number")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            errors.append(f"steps={self.steps!r} must be a positive integer or None")
        if self.steps is None and not self.epochs > 0:
            errors.append(f"epochs={self.epochs!r} must be positive")
        for name in ("batch_size", "micro_batch_size", "max_length", "lora_rank", "frozen_rank"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)!r} must be a positive integer")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            errors.append(f"dtype={self.dtype!r} must be float32, bfloat16 or float16")
        for name in ("eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(f"{name}={value!r} must be a non-negative integer")
        if self.eval_every and not self.patience:
            errors.append("patience=0 with eval_every > 0 would stop at the first score; give patience >= 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            errors.append(f"warmup_ratio={self.warmup_ratio!r} must be in [0, 1)")
        if errors:
            raise InvalidValue("invalid SFT settings: " + "; ".join(errors))
        self.lr = float(self.lr)

    @classmethod
    def from_dict(cls, d: dict) -> SFTConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidValue(f"unknown SFT settings {unknown}; valid: {[f.name for f in fields(cls)]}")
        return cls(**d)


@dataclass
class Trainable:
    kind: str
    model: torch.nn.Module  # what forward() is called on (the peft wrapper for lora)
    params: list[torch.nn.Parameter]
    handle: object = None  # TinyLoRAHandle for tinylora

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def prepare_trainable(model: torch.nn.Module, cfg: SFTConfig) -> Trainable:
    """Make `cfg.kind`'s parameters trainable (in place) and freeze the rest."""
    if cfg.kind == "tinylora":
        handle = apply_tinylora(
            model,
            TinyLoRAConfig(
                budget=cfg.budget,
                frozen_rank=cfg.frozen_rank,
                tie_mode=cfg.tie_mode,
                seed=cfg.seed,
                lora_alpha=cfg.tinylora_lora_alpha,
            ),
        )
        return Trainable("tinylora", model, handle.trainable_parameters(), handle)
    if cfg.kind == "lora":
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(DEFAULT_TARGETS),
            ),
        )
        return Trainable("lora", peft_model, [p for p in peft_model.parameters() if p.requires_grad])
    for p in model.parameters():
        p.requires_grad_(True)
    return Trainable("full", model, [p for p in model.parameters()])


def num_steps(cfg: SFTConfig, n_examples: int) -> int:
    return cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * n_examples / cfg.batch_size))


def _order(n: int, seed: int):
    """Endless example indices: a fresh permutation per epoch from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from torch.randperm(n, generator=gen).tolist()


def train_sft(
    trainable: Trainable,
    tokenizer,
    train_rows: list[dict],
    cfg: SFTConfig,
    val_rows: list[dict] | None = None,
    metrics_path: str | Path | None = None,
    log=print,
    val_score=None,
) -> dict:
    """Train in place; returns summary metrics (losses before/after, steps, seconds, dropped examples;
    with early stopping the scores, the step kept and the examples seen up to it).

    val_score: () -> float, higher is better (the model as it is now); used when cfg.eval_every > 0."""
    examples, dropped = build_examples(tokenizer, train_rows, cfg.max_length)
    if not examples:
        raise InvalidValue(f"no training example fits max_length={cfg.max_length} tokens ({dropped} dropped)")
    val_examples = build_examples(tokenizer, val_rows, cfg.max_length)[0] if val_rows else []
    pad_id, model = pad_id_of(tokenizer), trainable.model
    steps = num_steps(cfg, len(examples))
    warmup = int(cfg.warmup_ratio * steps)
    optimizer = torch.optim.AdamW(trainable.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    model.eval()  # no dropout: the loss is a deterministic function of the parameters
    result = {
        "train_examples": len(examples),
        "dropped_examples": dropped,
        "steps": steps,
        "num_trainable": trainable.num_trainable,
    }
    if val_examples:
        result["val_loss_before"] = mean_loss(model, val_examples, pad_id, cfg.micro_batch_size)
    order, losses, t0 = _order(len(examples), cfg.seed), [], time.perf_counter()
    sink = open(metrics_path, "a") if metrics_path else None
    stopper = _EarlyStop(trainable, cfg, val_score, sink, log) if cfg.eval_every and val_score else None
    try:
        if stopper:
            stopper.score(0)
        for step in range(1, steps + 1):
            batch_examples = [examples[next(order)] for _ in range(cfg.batch_size)]
            n_tokens = sum(len(e.response_ids) for e in batch_examples)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for i in range(0, len(batch_examples), cfg.micro_batch_size):
                loss = (
                    nll_sum(model, collate(batch_examples[i : i + cfg.micro_batch_size], pad_id)) / n_tokens
                )
                loss.backward()
                total += float(loss.detach())
            # max_norm inf: measure the norm, clip nothing
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable.params, cfg.max_grad_norm or math.inf)
            row = {
                "step": step,
                "loss": total,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            optimizer.step()
            scheduler.step()
            losses.append(total)
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            if log and (step == 1 or step == steps or step % max(1, steps // 10) == 0):
                log(
                    f"step {step}/{steps} loss {total:.4f} lr {row['lr']:.3g} grad_norm {row['grad_norm']:.3g}"
                )
            if stopper and step % cfg.eval_every == 0 and stopper.score(step):
                break
        if stopper:
            result.update(stopper.restore_best(cfg.batch_size))
    finally:
        if sink:
            sink.close()
    result.update(
        first_loss=losses[0],
        final_loss=losses[-1],
        steps_run=len(losses),
        train_seconds=round(time.perf_counter() - t0, 2),
    )
    result.setdefault("examples_seen", len(losses) * cfg.batch_size)
    if val_examples:
        result["val_loss"] = mean_loss(model, val_examples, pad_id, cfg.micro_batch_size)
    return result


class _EarlyStop:
    """Scores the model every cfg.eval_every steps, keeps a copy of the best parameters, says when to stop."""

    def __init__(self, trainable: Trainable, cfg: SFTConfig, val_score, sink, log) -> None:
        self.trainable, self.cfg, self.val_score, self.sink, self.log = trainable, cfg, val_score, sink, log
        self.best: tuple[float, int] | None = None  # (score, step)
        self.best_params: list[torch.Tensor] = []
        self.scores: list[tuple[int, float]] = []
        self.since_best = 0

    def score(self, step: int) -> bool:
        """Score the model after `step` steps; True when training should stop."""
        value = float(self.val_score())
        self.scores.append((step, value))
        if self.sink:
            self.sink.write(json.dumps({"step": step, "val_score": value}) + "\n")
            self.sink.flush()
        if self.best is None or value > self.best[0]:
            self.best, self.since_best = (value, step), 0
            self.best_params = [p.detach().clone() for p in self.trainable.params]
        else:
            self.since_best += 1
        if self.log:
            self.log(
                f"step {step}: validation score {value:.4f} (best {self.best[0]:.4f} at step {self.best[1]})"
            )
        return self.since_best >= self.cfg.patience

    def restore_best(self, batch_size: int) -> dict:
        with torch.no_grad():
            for p, best in zip(self.trainable.params, self.best_params):
                p.copy_(best)
        return {
            "val_scores": self.scores,
            "best_step": self.best[1],
            "best_val_score": self.best[0],
            "examples_seen": self.best[1] * batch_size,
        }


def save_trainable(trainable: Trainable, out_dir: str | Path, tokenizer=None) -> Path:
    """tinylora -> OUT/adapter (our format); lora -> OUT/lora_adapter (peft); full -> OUT/model (HF)."""
    out = Path(out_dir)
    if trainable.kind == "tinylora":
        path = out / "adapter"
        trainable.handle.save_adapter(path)
    elif trainable.kind == "lora":
        path = out / "lora_adapter"
        trainable.model.save_pretrained(path)
    else:
        path = out / "model"
        trainable.model.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    return path


def settings_dict(cfg: SFTConfig) -> dict:
    return asdict(cfg)
