"""One variant's train steps in a process of its own; prints one JSON line with its peak resident memory.

    python bench/memory_child.py --model smollm2 --variant tinylora --batch 4 --seq 64 --steps 2

A train step is: zero_grad(set_to_none) -> causal-LM loss -> backward -> AdamW step (torch defaults,
lr 1e-5) over the variant's trainable parameters. Two steps, so the optimizer state (allocated at the
first step) and the next step's activations and gradients are resident together.

Reported: `peak_rss_bytes` = the resident high-water mark (VmHWM) *during the train steps*: it is
reset (`/proc/self/clear_refs` = 5) once the model and variant are built, so loading — which needs
transient copies of the weights and would dominate every variant's peak alike — is not counted, while
everything resident during the step (weights, grads, optimizer state, activations) is;
`rss_after_load_bytes` = resident memory once the variant is built (so the step's own increment is
visible), resident memory split into anonymous and file-backed (memory-mapped weights) after load, after
the steps and after the steps once glibc's `malloc_trim(0)` returned freed heap (docs/adapter.md "Cost"), the number of trainable parameters, and seconds per step (informational; the benchmark's
time ratios come from the in-process interleaved runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.workloads import VARIANTS, load_model, make_batch, make_variant  # noqa: E402


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """VmHWM from /proc/self/status (falls back to ru_maxrss where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def rss_split() -> dict:
    """Resident memory by kind (/proc/self/status, bytes): anonymous (heap, tensors) and file-backed
    (memory-mapped weights, shared libraries)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split(":")
                    out[key.lower()] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def trimmed_rss_split() -> dict:
    """rss_split() after glibc's malloc_trim(0) hands freed heap back to the system (live memory only)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return {}
    return rss_split()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--variant", required=True, choices=VARIANTS)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    work = load_model(args.model)
    variant = make_variant(args.variant, work.model, copy_base=False)
    del work
    ids = make_batch(variant.model, args.batch, args.seq)
    rss_loaded = current_rss_bytes()
    split_loaded = rss_split()
    peak_reset = reset_peak_rss()
    opt = torch.optim.AdamW(variant.trainable, lr=1e-5) if variant.trainable else None
    step_s = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        if opt:
            opt.zero_grad(set_to_none=True)
        loss = variant.model(input_ids=ids, labels=ids).loss
        loss.backward()
        if opt:
            opt.step()
        step_s.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise SystemExit(f"non-finite loss {loss.item()} in {args.variant}")
    peak = peak_rss_bytes()
    split_end = rss_split()
    del loss
    split_trimmed = trimmed_rss_split()
    print(
        json.dumps(
            {
                "variant": args.variant,
                "model": args.model,
                "peak_rss_bytes": peak,
                "peak_excludes_loading": peak_reset,
                "rss_after_load_bytes": rss_loaded,
                # anonymous / file-backed resident bytes: after load, after the steps, and after the steps
                # once malloc_trim(0) returned freed heap (what is live)
                "rss_split_after_load": split_loaded,
                "rss_split_after_steps": split_end,
                "rss_split_after_steps_trimmed": split_trimmed,
                "trainable_params": sum(p.numel() for p in variant.trainable),
                "step_seconds": step_s,
            }
        )
    )


if __name__ == "__main__":
    main()
