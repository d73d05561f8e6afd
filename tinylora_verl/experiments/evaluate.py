"""Held-out evaluation of a trained run: generate on every eval set, score with eval/scoring.py.

Two generation backends, same prompts (the model's chat template with add_generation_prompt, as verl's
rollout and `tinylora-verl eval` render them), same scoring and output files:
- "vllm": tinylora_verl/eval/generate.py on a model directory (the adapter merged into a temporary copy
  first, as `tinylora-verl eval --adapter` does). The paper's path; what GPUs should use.
- "hf": transformers `generate` on the model already in memory (the adapter applied, nothing merged or
  written), left-padded batches. On CPU with a small model this skips vLLM's ~30 s engine start per run.
"auto" picks vllm when CUDA is available, else hf. run_one.py chooses the model (and, for vLLM, writes the
servable copy and frees the training model first). evaluate() writes OUT/samples/<set>.jsonl,
OUT/summary.csv and OUT/summary.md and returns {set: summary dict}; each set's dict also holds its
per-prompt mean scores (per_prompt, prompt_ids) for intervals over problems.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from ..errors import InvalidValue
from ..eval.scoring import Completion, score_benchmark, summarize, write_samples, write_summary
from .tasks import read_rows, reward_for

BACKENDS = ("auto", "hf", "vllm")


@dataclass
class EvalConfig:
    backend: str = "auto"  # auto | hf | vllm
    n: int = 1  # samples per prompt
    temperature: float = 1.0  # 0 = greedy (the authors' eval: T 1.0, top-p 0.95)
    top_p: float = 0.95
    max_tokens: int = 4096  # response token limit
    seed: int = 0
    limit: int | None = None  # first N prompts of each set
    batch_size: int = 64  # prompts per HF generate call

    def __post_init__(self) -> None:
        errors = []
        if self.backend not in BACKENDS:
            errors.append(f"eval.backend={self.backend!r} must be one of {BACKENDS}")
        if not isinstance(self.n, int) or self.n < 1:
            errors.append(f"eval.n={self.n!r} must be a positive integer")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            errors.append("eval.temperature must be >= 0 and eval.top_p in (0, 1]")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            errors.append(f"eval.max_tokens={self.max_tokens!r} must be a positive integer")
        if errors:
            raise InvalidValue("invalid eval settings: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidValue(f"unknown eval settings {unknown}; valid: {[f.name for f in fields(cls)]}")
        return cls(**d)

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "vllm" if torch.cuda.is_available() else "hf"


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = eos if eos is not None else tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


@torch.no_grad()
def generate_hf(model, tokenizer, prompts: list[list[dict]], cfg: EvalConfig) -> list[list[Completion]]:
    """cfg.n completions per chat prompt with transformers' generate (greedy when temperature is 0)."""
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    sample = cfg.temperature > 0
    kwargs = {
        "do_sample": sample,
        "max_new_tokens": cfg.max_tokens,
        "num_return_sequences": cfg.n,
        "pad_token_id": pad,
        "eos_token_id": eos,
    }
    kwargs.update(
        {"temperature": cfg.temperature, "top_p": cfg.top_p}
        if sample
        else {"temperature": None, "top_p": None, "top_k": None}
    )
    torch.manual_seed(cfg.seed)
    results: list[list[Completion]] = []
    try:
        for i in range(0, len(prompts), cfg.batch_size):
            texts = [
                tokenizer.apply_chat_template(
                    [dict(m) for m in p], tokenize=False, add_generation_prompt=True
                )
                for p in prompts[i : i + cfg.batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :]  # [b * n, new]
            for k in range(0, out.shape[0], cfg.n):
                group = []
                for seq in out[k : k + cfg.n].tolist():
                    stop = next((j for j, t in enumerate(seq) if t in eos), None)
                    tokens = seq if stop is None else seq[: stop + 1]
                    group.append(
                        Completion(
                            tokenizer.decode(tokens, skip_special_tokens=True),
                            len(tokens),
                            "length" if stop is None else "stop",
                        )
                    )
                results.append(group)
    finally:
        tokenizer.padding_side = side
    return results


def generate_vllm(model_dir: str, prompts: list[list[dict]], cfg: EvalConfig) -> list[list[Completion]]:
    from ..eval.generate import SamplingConfig, generate

    return generate(
        model_dir,
        prompts,
        SamplingConfig(
            n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed
        ),
    )


def evaluate(eval_sets: dict[str, str], cfg: EvalConfig, out_dir, generate_fn) -> dict[str, dict]:
    """Generate (generate_fn(prompts) -> completions) on every set in one call, score, write, summarise."""
    loaded = {name: read_rows(path, cfg.limit) for name, path in eval_sets.items()}
    prompts = [row["prompt"] for rows in loaded.values() for row in rows]
    completions = generate_fn(prompts)
    summary, start = [], 0
    for name, rows in loaded.items():
        reward = reward_for(rows[0]["data_source"]) if rows else "math"
        records = score_benchmark(name, reward, rows, completions[start : start + len(rows)])
        start += len(rows)
        write_samples(out_dir, name, records)
        summary.append((summarize(name, records), per_prompt(records)))
    write_summary(out_dir, [row for row, _ in summary], title="Held-out evaluation")
    return {row.benchmark: {**asdict(row), **prompts} for row, prompts in summary}


def accuracy_on(rows: list[dict], generate_fn) -> float:
    """Mean score of generate_fn's completions on verl rows (no files written): early stopping's metric."""
    records = score_benchmark(
        "val", reward_for(rows[0]["data_source"]), rows, generate_fn([r["prompt"] for r in rows])
    )
    return summarize("val", records).accuracy


def per_prompt(records: list[dict]) -> dict[str, list]:
    """{"prompt_ids": each prompt's index in its set, "per_prompt": its mean score}: what a bootstrap over
    problems (experiments/intervals.py) resamples; prompts in the order of the set's rows."""
    scores: dict[int, list[float]] = {}
    for r in records:
        scores.setdefault(r["index"], []).append(float(r["score"]))
    return {"prompt_ids": list(scores), "per_prompt": [sum(v) / len(v) for v in scores.values()]}
