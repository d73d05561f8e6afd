"""The SFT objective: masked next-token loss on reference solutions (shared by `sft` and `surface`).

An example is a chat prompt (a verl row's `prompt`) followed by its reference solution:
    prompt_ids   = tokenize(chat_template(prompt, add_generation_prompt=True))      exactly what eval feeds
    response_ids = tokenize(chat_template(prompt + [assistant: solution])[len(prompt text):])
                   i.e. "<solution><end-of-turn>", trailing newlines dropped
Prompt and response are tokenized separately, so training conditions on the very tokens generation starts
from. Only response tokens are scored: loss = sum over response tokens of -log p(token | prefix), divided
by the number of response tokens in the batch (token mean; prompt and padding tokens are masked out).

Batches are left-padded (every response ends at the last position) with explicit position ids, so a row's
logits equal those of the row alone; only the last max(response length) + 1 positions go through the LM
head (`logits_to_keep`), which is most of the cost of a short-answer batch on a 49k/152k vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InvalidValue

IGNORE = -100


@dataclass
class Example:
    prompt_ids: list[int]
    response_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [b, L] left-padded
    attention_mask: torch.Tensor  # [b, L]
    position_ids: torch.Tensor  # [b, L] 0.. over real tokens
    labels: torch.Tensor  # [b, K-1] target of each kept position (IGNORE outside responses)
    keep: int  # K = logits_to_keep

    @property
    def n_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def solution_of(row: dict) -> str:
    """The reference solution of a verl row: `extra_info.solution`."""
    extra = row.get("extra_info") or {}
    solution = extra.get("solution") if isinstance(extra, dict) else None
    if not isinstance(solution, str) or not solution.strip():
        raise InvalidValue(
            f"row {extra.get('index', '?')} ({row.get('data_source')}) has no reference solution "
            "in extra_info.solution; SFT needs one (prepare gsm8k/math data again with this "
            "version of `tinylora-verl prepare`, or use an arithmetic task)"
        )
    return solution


def build_example(tokenizer, prompt: list[dict], solution: str) -> Example:
    messages = [dict(m) for m in prompt]
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": solution}], tokenize=False
    )
    if full_text.startswith(prompt_text):
        response_text = full_text[len(prompt_text) :].rstrip("\n")
    else:  # a template that rewrites earlier turns once an answer follows: answer + end of sequence
        response_text = solution + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    return Example(list(prompt_ids), list(response_ids))


def build_examples(tokenizer, rows: list[dict], max_length: int) -> tuple[list[Example], int]:
    """(examples, number dropped for being longer than max_length tokens)."""
    examples, dropped = [], 0
    for row in rows:
        ex = build_example(tokenizer, list(row["prompt"]), solution_of(row))
        if len(ex) > max_length:
            dropped += 1
            continue
        examples.append(ex)
    return examples, dropped


def collate(examples: list[Example], pad_id: int) -> Batch:
    if any(not e.prompt_ids or not e.response_ids for e in examples):
        raise ValueError(
            "every example needs a non-empty prompt (the first response token is predicted from it) "
            "and a non-empty response"
        )
    L = max(len(e) for e in examples)
    R = max(len(e.response_ids) for e in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), L), dtype=torch.long)
    labels = torch.full((len(examples), R), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        seq = e.prompt_ids + e.response_ids
        ids[i, L - len(seq) :] = torch.tensor(seq)
        mask[i, L - len(seq) :] = 1
        labels[i, R - len(e.response_ids) :] = torch.tensor(e.response_ids)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, mask, position_ids, labels, keep=R + 1)


def nll_sum(model, batch: Batch) -> torch.Tensor:
    """Sum over response tokens of -log p (in at least float32; float64 for a float64 model)."""
    device = next(model.parameters()).device
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        logits_to_keep=batch.keep,
        use_cache=False,
    )
    logits = out.logits[:, :-1]  # [b, R, V]: position t predicts t+1
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        batch.labels.to(device).reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


@torch.no_grad()
def mean_loss(model, examples: list[Example], pad_id: int, micro_batch_size: int = 16) -> float:
    """Token-mean masked loss over `examples` (evaluation: no gradients)."""
    total, count = 0.0, 0
    for i in range(0, len(examples), micro_batch_size):
        batch = collate(examples[i : i + micro_batch_size], pad_id)
        total += float(nll_sum(model, batch))
        count += batch.n_tokens
    return total / max(count, 1)


def pad_id_of(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise InvalidValue("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return int(pad)
