"""The per-step `tinylora/rounded_away_frac` diagnostic: every row vs every 16th row, side by side.

    python bench/rounded_away.py                    # SmolLM2-135M-Instruct (the CPU demo's model)
    python bench/rounded_away.py --model-dir DIR    # any local HF model directory

TinyLoRA (the demo's: budget 13, r=2, tiled) on the model, v set to a few sizes a run goes through
(|v_i| = 1e-3 .. 1e-1). For each, the fraction of ΔW entries below half a bf16 ulp of W is counted over
every row (stride 1) and over every 16th row (the trainer's ROUNDED_AWAY_ROW_STRIDE), interleaved rounds on
one thread; printed: seconds of each, their ratio, and the estimate's error |frac_16 − frac_1|.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402


def counts(handle, stride: int) -> float:
    from tinylora_verl.sync.diagnostics import rounded_away_counts

    small = total = 0
    for layer in handle.layers.values():
        s, t = rounded_away_counts(
            layer.base_layer.weight.detach(),
            layer.tinylora_U,
            layer.tinylora_S,
            layer.tinylora_V,
            layer.tinylora_P,
            handle.vectors.v[layer.group].detach(),
            layer.alpha,
            stride=stride,
        )
        small, total = small + s, total + t
    return small / total


def main(argv=None) -> int:
    from tinylora_verl import TinyLoRAConfig, apply_tinylora
    from tinylora_verl.verl_seam.engine import ROUNDED_AWAY_ROW_STRIDE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="local HF model directory (default: SmolLM2-135M)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.model_dir is None:
        from tinylora_verl.smollm2 import ensure_smollm2

        args.model_dir = str(ensure_smollm2())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=13))
    stride = ROUNDED_AWAY_ROW_STRIDE
    print(
        f"{len(handle.layers)} adapted modules; stride {stride}; {args.rounds} interleaved rounds, 1 thread"
    )
    print(
        f"{'|v_i|':>7} | {'frac, all rows':>14} | {'frac, 1/16':>10} | {'|error|':>8} | {'s all':>6} | "
        f"{'s 1/16':>6} | ratio"
    )
    g = torch.Generator().manual_seed(0)
    for size in (1e-3, 1e-2, 1e-1):
        with torch.no_grad():
            for p in handle.vectors.v:
                p.copy_(size * torch.sign(torch.randn(p.shape, generator=g)))
        fracs = {}
        fns = {
            "all": lambda f=fracs: f.__setitem__("all", counts(handle, 1)),
            "sampled": lambda f=fracs: f.__setitem__("sampled", counts(handle, stride)),
        }
        times = measure.interleaved(fns, rounds=args.rounds, warmup=0)
        ratio = measure.paired_ratio(times, "sampled", "all")
        print(
            f"{size:>7.0e} | {fracs['all']:>14.6f} | {fracs['sampled']:>10.6f} | "
            f"{abs(fracs['all'] - fracs['sampled']):>8.2e} | {measure.median(times['all']):>6.3f} | "
            f"{measure.median(times['sampled']):>6.3f} | {ratio:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
