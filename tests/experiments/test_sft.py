"""SFT objective and loop on a tiny Qwen2 with the suite's tokenizer (SmolLM2's)."""

from __future__ import annotations

import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl.experiments.objective import Example, build_example, collate, mean_loss, nll_sum
from tinylora_verl.experiments.sft import SFTConfig, prepare_trainable, train_sft
from tinylora_verl.experiments.tasks import arithmetic_rows


def _reference_loss(model, examples: list[Example]) -> float:
    """Masked next-token cross-entropy written out: each example alone (no padding), float64 log-softmax,
    only response tokens counted, token mean over the whole set."""
    total, count = 0.0, 0
    for ex in examples:
        ids = torch.tensor([ex.prompt_ids + ex.response_ids])
        logits = model(input_ids=ids).logits[0].double()  # [T, V]
        logp = torch.log_softmax(logits, dim=-1)
        start = len(ex.prompt_ids)
        for t in range(start, ids.shape[1]):  # token t predicted at t - 1
            total -= float(logp[t - 1, ids[0, t]])
            count += 1
    return total / count


def test_example_is_generation_prompt_plus_answer_and_end_of_turn(tokenizer):
    prompt = [{"role": "user", "content": "What is 12 + 30?"}]
    ex = build_example(tokenizer, prompt, "#### 42")
    gen_prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert ex.prompt_ids == tokenizer(gen_prompt, add_special_tokens=False)["input_ids"]  # what eval feeds
    assert tokenizer.decode(ex.response_ids) == "#### 42<|im_end|>"
    assert ex.response_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_batched_masked_loss_equals_hand_written_float64_cross_entropy(tokenizer):
    model = tiny_qwen2(seed=3, dtype=torch.float64)
    prompts = [
        "What is 2 + 3?",
        "Natalia sold clips to 48 of her friends in April, and then half as many in May.",
    ]
    answers = ["#### 5", "She sold 48 / 2 = 24 in May.\n#### 72"]
    examples = [
        build_example(tokenizer, [{"role": "user", "content": p}], a) for p, a in zip(prompts, answers)
    ]
    assert len(examples[0]) != len(examples[1])  # padding is exercised
    batch = collate(examples, pad_id=tokenizer.pad_token_id)
    assert batch.n_tokens == sum(len(e.response_ids) for e in examples)  # prompt and padding masked
    with torch.no_grad():
        got = float(nll_sum(model, batch)) / batch.n_tokens
        want = _reference_loss(model, examples)
        assert abs(got - want) < 1e-10 * abs(want)
        assert abs(
            mean_loss(model, examples, tokenizer.pad_token_id, micro_batch_size=1) - want
        ) < 1e-10 * abs(want)
        # the same tokens scored with the prompt included would be a different number (the mask matters)
        unmasked = collate(
            [Example(e.prompt_ids[:1], e.prompt_ids[1:] + e.response_ids) for e in examples],
            tokenizer.pad_token_id,
        )
        assert abs(float(nll_sum(model, unmasked)) / unmasked.n_tokens - want) > 1e-3


def _rows(n: int) -> list[dict]:
    return arithmetic_rows({"kind": "arithmetic", "op": "add", "n_train": n, "n_val": 4, "n_test": 4})[
        "train"
    ]


def test_tinylora_sft_changes_only_v_and_lowers_the_loss(tokenizer):
    # initializer_range 0.2: logits of the default 0.02 init are nearly uniform over 152k tokens, and no
    # 7-parameter update moves them much; with larger weights 8 steps lower the loss by ~0.4 nats
    model = tiny_qwen2(seed=1, initializer_range=0.2)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SFTConfig(kind="tinylora", budget=7, lr=0.1, steps=8, batch_size=8, micro_batch_size=8, seed=0)
    trainable = prepare_trainable(model, cfg)
    assert trainable.num_trainable == 7
    rows = _rows(16)
    from tinylora_verl.experiments.objective import build_examples

    examples = build_examples(tokenizer, rows, 512)[0]
    before = mean_loss(model, examples, tokenizer.pad_token_id)
    metrics = train_sft(trainable, tokenizer, rows, cfg, log=None)
    after = mean_loss(model, examples, tokenizer.pad_token_id)
    assert after < before - 0.2, (before, after)
    assert metrics["steps"] == 8 and metrics["num_trainable"] == 7
    v = torch.cat(trainable.handle.get_vectors())
    assert (v != 0).sum() >= 6  # (nearly) every group's v moved from zero
    state = trainable.handle.base_state_dict()
    assert set(state) == set(base)
    assert all(torch.equal(state[k], base[k]) for k in base)  # every base weight bit-identical


def test_micro_batches_accumulate_to_the_full_batch_gradient(tokenizer, tmp_path):
    """One step over 8 examples: 4 micro-batches of 2 give the same gradient as one of 8 (token mean over the
    whole batch, not a mean of micro-batch means) and the same update."""
    import json

    rows, norms, got = _rows(8), [], []
    for micro in (8, 2):
        model = tiny_qwen2(seed=1, initializer_range=0.2)
        cfg = SFTConfig(
            kind="tinylora",
            budget=7,
            lr=0.1,
            steps=1,
            batch_size=8,
            micro_batch_size=micro,
            max_grad_norm=None,
        )
        trainable = prepare_trainable(model, cfg)
        train_sft(trainable, tokenizer, rows, cfg, metrics_path=tmp_path / f"m{micro}.jsonl", log=None)
        norms.append(json.loads((tmp_path / f"m{micro}.jsonl").read_text())["grad_norm"])
        got.append(torch.cat(trainable.handle.get_vectors()))
    assert norms[0] > 0 and abs(norms[0] - norms[1]) < 1e-5 * norms[0], norms
    assert torch.allclose(got[0], got[1], atol=1e-5)


def test_lora_and_full_kinds_train_what_they_say(tokenizer):
    rows = _rows(8)
    for kind, check in (
        ("lora", lambda n, changed: n < 20_000 and changed == {"lora"}),
        ("full", lambda n, changed: changed == {"base"}),
    ):
        model = tiny_qwen2(seed=2)
        base = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = SFTConfig(kind=kind, lr=1e-3, steps=2, batch_size=4, micro_batch_size=4)
        trainable = prepare_trainable(model, cfg)
        train_sft(trainable, tokenizer, rows, cfg, log=None)
        changed = set()
        for name, p in trainable.model.named_parameters():
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            if "lora_" in name:
                changed.add("lora") if p.requires_grad else None
            elif not torch.equal(p.detach(), base[key]):
                changed.add("base")
        assert check(trainable.num_trainable, changed), (kind, trainable.num_trainable, changed)


def test_early_stopping_keeps_the_best_scored_parameters(tokenizer, tmp_path):
    """Scores 0.1, 0.3, 0.2, 0.3, 0.2 at steps 0, 2, 4, 6, 8 (eval_every 2, patience 3): the step-2 score is
    not beaten (a tie is not a new best) three times in a row, so training stops after step 8 and v is put
    back, bit for bit, to what a plain 2-step run of the same settings ends with."""
    import json

    rows = _rows(16)
    settings = dict(kind="tinylora", budget=7, lr=0.1, batch_size=4, micro_batch_size=4, seed=0)
    plain = prepare_trainable(tiny_qwen2(seed=1, initializer_range=0.2), SFTConfig(steps=2, **settings))
    train_sft(plain, tokenizer, rows, SFTConfig(steps=2, **settings), log=None)

    cfg = SFTConfig(steps=50, eval_every=2, patience=3, **settings)
    trainable = prepare_trainable(tiny_qwen2(seed=1, initializer_range=0.2), cfg)
    scores = iter([0.1, 0.3, 0.2, 0.3, 0.2, 0.9])
    metrics = train_sft(
        trainable,
        tokenizer,
        rows,
        cfg,
        metrics_path=tmp_path / "m.jsonl",
        log=None,
        val_score=lambda: next(scores),
    )
    assert metrics["val_scores"] == [(0, 0.1), (2, 0.3), (4, 0.2), (6, 0.3), (8, 0.2)]
    assert (metrics["best_step"], metrics["best_val_score"], metrics["steps_run"]) == (2, 0.3, 8)
    assert metrics["examples_seen"] == 2 * 4
    for got, want in zip(trainable.handle.get_vectors(), plain.handle.get_vectors()):
        assert torch.equal(got, want)
    logged = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["val_score"] for r in logged if "val_score" in r] == [0.1, 0.3, 0.2, 0.3, 0.2]
    assert sum("loss" in r for r in logged) == 8


def test_early_stopping_settings_are_checked():
    import pytest

    from tinylora_verl.errors import InvalidValue

    with pytest.raises(InvalidValue, match="patience=0 with eval_every > 0"):
        SFTConfig(eval_every=5, patience=0)
    with pytest.raises(InvalidValue, match="eval_every=-1 must be a non-negative integer"):
        SFTConfig(eval_every=-1)
    assert SFTConfig(steps=3).eval_every == 0  # off unless asked for
