"""Rank-0 SVD time at Qwen2.5-7B shapes, against the training process group's collective timeout.

    python bench/svd_time.py                  # one synthetic Qwen2.5-7B layer: {randomized, exact} x {1, all threads}
    python bench/svd_time.py --quick          # 1 thread only (what a verl training rank gets under Ray)
    python bench/svd_time.py --out /tmp/svd_time.json

Why: under verl's FSDP engine only rank 0 holds the full weights when TinyLoRA goes in, so
`apply_tinylora_from_rank0` (tinylora_verl/verl_seam/engine.py) computes every factor on rank 0 while the
other ranks already wait in a collective (`broadcast_object_list`, then FSDP's load). If rank 0 takes
longer than the process group's timeout, the waiting ranks' collective times out and the job dies.
docs/performance_svd.md has the figures and the timeout the GPU presets set.

What is timed, per setting (SVD method x torch threads): `apply_tinylora` on one synthetic decoder layer
(the 7 projections as nn.Linear, float32 N(0, 0.02) weights, fixed seed, no factor cache), then the
handle's `base_fingerprint` and `factor_hash` — exactly rank 0's work in `apply_tinylora_from_rank0`
before the broadcast. Each module's `svd_factors` call is timed too (a timing wrapper around it). One
layer x `NUM_LAYERS` (28 for Qwen2.5-7B, 196 modules) is the projection. Weights are random: the
randomized method's cost depends on the shape only; LAPACK's exact SVD depends on the values a little.
The SVD runs on CPU in float32 on rank 0 because verl loads rank 0's model on CPU in float32 for training.

Threads: Ray sets OMP_NUM_THREADS=1 in actors that reserve no CPU, and verl's GPU workers reserve only a
GPU, so a GPU run's rank 0 does its SVD on one thread unless OMP_NUM_THREADS is set; "all" is every core
this process may use (os.sched_getaffinity). On a shared machine multi-threaded LAPACK can be far slower
than one thread (bench/adapter.py's docstring); the load average before and after each setting is recorded.

Not timed: verl's loading of the HF checkpoint on rank 0 (it precedes the SVD inside the same wait).
One repetition per setting by default; settings that would start after --budget-s seconds are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tinylora_verl and bench

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.shapes import NUM_LAYERS, SHAPES, projection_shapes  # noqa: E402
from tinylora_verl.adapter import TinyLoRAConfig, apply_tinylora  # noqa: E402
from tinylora_verl.adapter import prepare as adapter_model  # noqa: E402  (where apply_tinylora calls svd_factors)
from tinylora_verl.adapter.svd import SVD_METHODS  # noqa: E402

# A toy layer for the smoke test (tests/bench/test_bench_svd_time.py); not a real model.
TOY = dict(hidden_size=64, intermediate_size=160, num_attention_heads=4, num_key_value_heads=2)
ALL_SHAPES = {**SHAPES, "toy": TOY}
ALL_LAYERS = {**NUM_LAYERS, "toy": 2}
# Reference timeouts (seconds) the projection is compared with: torch's NCCL default, and what torch gives
# verl's process group, whose backend string "cpu:gloo,cuda:nccl" is not Backend.NCCL and so gets
# torch's other default (distributed_c10d._get_default_timeout), applied to the NCCL part as well.
TIMEOUTS_S = {"torch NCCL default": 600, "torch default for verl's backend string": 1800}


def log(msg: str) -> None:
    print(msg, flush=True)


class SyntheticLayer(nn.Module):
    """One decoder layer's 7 projections, named as in HF Llama/Qwen2 (self_attn.*, mlp.*), no forward."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.self_attn, self.mlp = nn.Module(), nn.Module()
        for name, w in weights.items():
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
            lin.weight = nn.Parameter(
                w, requires_grad=False
            )  # shared, not copied: apply_tinylora only reads it
            (self.mlp if name in ("gate_proj", "up_proj", "down_proj") else self.self_attn).add_module(
                name, lin
            )


def synthetic_weights(shape: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(out_f, in_f, generator=gen).mul_(0.02)
        for name, out_f, in_f in projection_shapes(shape)
    }


@contextmanager
def timed_svd(names_by_ptr: dict[int, str], record: dict[str, float]):
    """Time every svd_factors call apply_tinylora makes, keyed by the module whose weight it factors."""
    original = adapter_model.svd_factors

    def wrapper(W, r, opts):
        t0 = time.perf_counter()
        f = original(W, r, opts)
        record[names_by_ptr[W.data_ptr()]] = time.perf_counter() - t0
        return f

    adapter_model.svd_factors = wrapper
    try:
        yield
    finally:
        adapter_model.svd_factors = original


def time_setting(weights: dict[str, torch.Tensor], method: str, threads: int, frozen_rank: int) -> dict:
    """Rank 0's TinyLoRA work for one layer with `method` on `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = TinyLoRAConfig(
            budget=None, projection_dim=1, tie_mode="none", frozen_rank=frozen_rank, svd_method=method
        )
        warm = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
        adapter_model.svd_factors(warm, frozen_rank, cfg.svd_options)  # LAPACK / thread-pool start-up
        layer = SyntheticLayer(weights)
        names = {w.data_ptr(): name for name, w in weights.items()}
        module_s: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with timed_svd(names, module_s):
            handle = apply_tinylora(layer, cfg)
        t1 = time.perf_counter()
        handle.base_fingerprint(), handle.factor_hash()
        t2 = time.perf_counter()
        load_after = os.getloadavg()[0]
    finally:
        torch.set_num_threads(before)
    return {
        "method": method,
        "threads": threads,
        "module_s": {n: module_s[n] for n in weights},
        "svd_sum_s": sum(module_s.values()),
        "apply_s": t1 - t0,
        "identity_s": t2 - t1,
        "layer_s": t2 - t0,
        "loadavg_1min": [load_before, load_after],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def settings(quick: bool, methods: tuple[str, ...]) -> list[tuple[str, int]]:
    cores = len(os.sched_getaffinity(0))
    threads = [1] if quick or cores == 1 else [1, cores]
    return [(m, t) for t in threads for m in methods]  # 1 thread first: it is what a Ray worker gets


def run(shape_name: str, quick: bool, methods: tuple[str, ...], budget_s: float, frozen_rank: int) -> dict:
    shape = ALL_SHAPES[shape_name]
    layers = ALL_LAYERS[shape_name]
    weights = synthetic_weights(shape)
    n_params = sum(w.numel() for w in weights.values())
    log(
        f"{shape_name}: one synthetic layer, {len(weights)} projections "
        f"({', '.join(f'{n} {tuple(w.shape)}' for n, w in weights.items())}), {n_params / 1e6:.1f}M float32 "
        f"parameters; x{layers} layers = {layers * len(weights)} modules; r={frozen_rank}"
    )
    start = time.perf_counter()
    rows, skipped = [], []
    for method, threads in settings(quick, methods):
        if time.perf_counter() - start > budget_s:
            skipped.append({"method": method, "threads": threads, "reason": f"--budget-s {budget_s:g} spent"})
            log(f"skip {method} x {threads} thread(s): --budget-s {budget_s:g} spent")
            continue
        row = time_setting(weights, method, threads, frozen_rank)
        row["projected_s"] = row["layer_s"] * layers
        row["within"] = {k: row["projected_s"] < v for k, v in TIMEOUTS_S.items()}
        rows.append(row)
        log(
            f"{method} x {threads} thread(s): layer {row['layer_s']:.2f}s "
            f"(svd {row['svd_sum_s']:.2f}s, identity {row['identity_s']:.2f}s), "
            f"projected x{layers}: {row['projected_s']:.0f}s; load {row['loadavg_1min'][0]:.1f}->"
            f"{row['loadavg_1min'][1]:.1f}"
        )
    return {
        "shape": shape_name,
        "layers": layers,
        "modules_per_layer": len(weights),
        "modules": layers * len(weights),
        "projections": {n: list(w.shape) for n, w in weights.items()},
        "dtype": "float32",
        "frozen_rank": frozen_rank,
        "cores": len(os.sched_getaffinity(0)),
        "timeouts_s": TIMEOUTS_S,
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "wall_s": time.perf_counter() - start,
        "settings": rows,
        "skipped": skipped,
    }


def table(result: dict) -> str:
    names = list(result["projections"])
    refs = list(result["timeouts_s"].items())
    head = (
        ["method", "threads"]
        + [f"{n} (s)" for n in names]
        + ["layer (s)", f"x{result['layers']} layers (s)"]
        + [f"< {v} s" for _, v in refs]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["settings"]:
        cells = (
            [r["method"], str(r["threads"])]
            + [f"{r['module_s'][n]:.2f}" for n in names]
            + [f"{r['layer_s']:.2f}", f"{r['projected_s']:.1f}"]
            + ["yes" if r["within"][k] else "NO" for k, _ in refs]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shapes",
        choices=sorted(ALL_SHAPES),
        default="qwen2.5-7b",
        help="layer shapes (toy: a tiny layer for the smoke test)",
    )
    ap.add_argument("--quick", action="store_true", help="1 thread only (skip the all-threads settings)")
    ap.add_argument(
        "--methods", default=",".join(SVD_METHODS), help=f"comma-separated subset of {SVD_METHODS}"
    )
    ap.add_argument("--frozen-rank", type=int, default=TinyLoRAConfig().frozen_rank)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=600.0,
        help="start no new setting after this many seconds (the ones left are listed as skipped)",
    )
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in SVD_METHODS]
    if bad or not methods:
        ap.error(f"--methods must be a comma-separated subset of {SVD_METHODS}, got {args.methods!r}")
    result = run(args.shapes, args.quick, methods, args.budget_s, args.frozen_rank)
    log("")
    log(table(result))
    for s in result["skipped"]:
        log(f"skipped: {s['method']} x {s['threads']} thread(s) ({s['reason']})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
