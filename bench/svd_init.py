"""TinyLoRA init: quality and time of each SVD method, side by side in one run (issue 16 item 4, "Init").

    python bench/svd_init.py                  # SmolLM2-135M-Instruct (210 modules) + engineered close-gap matrices
    python bench/svd_init.py --quick          # tiny random Qwen2, no peft rounds beyond one (the test runs this)
    python bench/svd_init.py --out /tmp/svd_init.json

Quality, per method (`svd_factors(W, r=2, SVDOptions(method=...))` with the adapter's defaults otherwise),
against the float64 exact SVD of each weight (bench/svd_quality.py):

- the largest principal angle between the top-r U (and V) subspaces, maximised over the modules whose
  relative gap (s_r - s_{r+1}) / s_r exceeds 1e-2 (the target is < 1e-2 rad there; below that gap the
  top-r subspace is barely defined), and also reported over all modules;
- the relative energy shortfall 1 - ||Q_U^T W||_F^2 / (s_1^2 + ... + s_r^2) (Q_U an orthonormal basis of
  U), and the same for V, maximised over every module (target < 1e-6).

Two sets of weights: the real SmolLM2 projections, and "engineered" ones: for each distinct projection
shape, a real SmolLM2 weight's singular vectors and spectrum with s_3 moved to s_2 (1 - 1.5e-3), so
s_2 and s_3 are 0.15 % apart over a real, flat tail (float64, stored as float32 like a model weight).

Time, interleaved (shuffled order per round, bench/measure.py), on the whole model:
peft TinyLoRA's `get_peft_model` (bench/workloads.py `peft_tinylora_config`: a float32
`torch.linalg.svd` per module) against our `apply_tinylora` with each SVD method; ratios are medians of
per-round ratios. Per-module SVD times are summed per method, also interleaved per module.

One torch thread (what a verl GPU worker gets under Ray; bench/adapter.py's docstring).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tinylora_verl and bench

import torch  # noqa: E402

from bench import measure  # noqa: E402
from bench.svd_quality import max_principal_angle  # noqa: E402
from bench.workloads import BUDGET, FROZEN_RANK, TIE_MODE, load_model, our_plan, peft_tinylora_config  # noqa: E402
from tinylora_verl.adapter import DEFAULT_TARGETS, TinyLoRAConfig, apply_tinylora  # noqa: E402
from tinylora_verl.adapter.model import find_target_modules  # noqa: E402
from tinylora_verl.adapter.svd import SVD_METHODS, SVDOptions, svd_factors  # noqa: E402

GAP_GATE = 1e-2  # angles count where (s_r - s_{r+1}) / s_r > this
ANGLE_TARGET = 1e-2
ENERGY_TARGET = 1e-6
SPEEDUP_TARGET = 20.0
CLOSE_GAP = 1.5e-3  # engineered: s_3 = s_2 (1 - CLOSE_GAP)


def log(msg: str) -> None:
    print(msg, flush=True)


def energy_shortfall(W64: torch.Tensor, B: torch.Tensor, optimal: float, side: str) -> float:
    """1 - captured / optimal energy of W64 on span(B) (left: ||Q^T W||_F^2, right: ||W Q||_F^2)."""
    Q, _ = torch.linalg.qr(B.to(torch.float64))
    captured = (Q.T @ W64 if side == "U" else W64 @ Q).pow(2).sum().item()
    return 1.0 - captured / optimal


def engineered(weights: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """One matrix per distinct shape: a real weight's SVD with s_3 = s_2 (1 - CLOSE_GAP)."""
    out, seen = [], set()
    for name, W in weights:
        if tuple(W.shape) in seen:
            continue
        seen.add(tuple(W.shape))
        U, S, Vh = torch.linalg.svd(W.detach().to(torch.float64), full_matrices=False)
        S = S.clone()
        S[2] = S[1] * (1 - CLOSE_GAP)
        out.append((f"engineered{tuple(W.shape)} from {name}", ((U * S) @ Vh).to(torch.float32)))
    return out


def quality(named: list[tuple[str, torch.Tensor]], methods: list[str], seed: int = 0) -> dict:
    """Per method: worst angles (gated and all), worst energy shortfall, summed per-module seconds."""
    res = {m: {"angle_gated": 0.0, "angle_all": 0.0, "energy": -math.inf, "seconds": 0.0} for m in methods}
    rng = random.Random(seed)
    rows = []
    for name, W in named:
        W = W.detach()
        W64 = W.to(torch.float64)
        U, S, Vh = torch.linalg.svd(W64, full_matrices=False)
        r = FROZEN_RANK
        gap = float((S[r - 1] - S[r]) / S[r - 1]) if S.numel() > r else 1.0
        optimal = S[:r].pow(2).sum().item()
        order = list(methods)
        rng.shuffle(order)
        row = {"module": name, "shape": list(W.shape), "rel_gap": gap}
        for m in order:
            t0 = time.perf_counter()
            f = svd_factors(W, r, SVDOptions(method=m))
            dt = time.perf_counter() - t0
            a = max(max_principal_angle(U[:, :r], f.U), max_principal_angle(Vh[:r].T, f.V))
            e = max(energy_shortfall(W64, f.U, optimal, "U"), energy_shortfall(W64, f.V, optimal, "V"))
            q = res[m]
            q["seconds"] += dt
            q["angle_all"] = max(q["angle_all"], a)
            if gap > GAP_GATE:
                q["angle_gated"] = max(q["angle_gated"], a)
            q["energy"] = max(q["energy"], e)
            row[m] = {"angle": a, "energy": e, "seconds": dt}
        rows.append(row)
    return {
        "methods": res,
        "modules": len(named),
        "min_rel_gap": min(r["rel_gap"] for r in rows),
        "rows": rows,
    }


def init_times(base, methods: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds to attach peft TinyLoRA and ours (one per SVD method), interleaved; deep copies not timed."""
    plan = our_plan(base)

    def ours(method):
        def run():
            model = copy.deepcopy(base)
            cfg = TinyLoRAConfig(budget=BUDGET, tie_mode=TIE_MODE, frozen_rank=FROZEN_RANK, svd_method=method)
            t0 = time.perf_counter()
            apply_tinylora(model, cfg)
            return time.perf_counter() - t0

        return run

    def peft():
        from peft import get_peft_model

        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        get_peft_model(model, peft_tinylora_config(len(plan.modules), plan.num_groups, plan.projection_dim))
        return time.perf_counter() - t0

    fns = {"peft-tinylora": peft, **{f"ours-{m}": ours(m) for m in methods}}
    rng = random.Random(1)
    out: dict[str, list[float]] = {n: [] for n in fns}
    for i in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for n in order:
            gc.collect()
            out[n].append(fns[n]())
        log(f"  init round {i + 1}/{rounds}: " + ", ".join(f"{n} {out[n][-1]:.2f}s" for n in fns))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny random Qwen2, one init round")
    ap.add_argument(
        "--model", default=None, help="smollm2 (default) or a synthetic name from bench/workloads.py"
    )
    ap.add_argument("--rounds", type=int, default=None, help="interleaved init rounds (default 3; --quick 1)")
    ap.add_argument("--methods", default="randomized,krylov,exact", help=f"subset of {SVD_METHODS}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in SVD_METHODS for m in methods):
        ap.error(f"--methods must be a comma-separated subset of {SVD_METHODS}")
    model_name = args.model or ("tiny-qwen2" if args.quick else "smollm2")
    rounds = args.rounds or (1 if args.quick else 3)
    wl = load_model(model_name)
    base = wl.model
    for p in base.parameters():
        p.requires_grad_(False)
    log(f"model: {wl.note}; torch threads {torch.get_num_threads()}")
    weights = [(n, m.weight) for n, m in find_target_modules(base, DEFAULT_TARGETS)]

    log(f"[1/3] quality on {len(weights)} real modules")
    real = quality(weights, methods)
    log("[2/3] quality on engineered close-gap matrices (s_2, s_3 0.15 % apart)")
    eng = quality(engineered(weights), methods)
    init_methods = [m for m in methods if m != "exact"]  # exact: peft's own SVD, slower still (svd_time.py)
    log(f"[3/3] init time, {rounds} interleaved round(s): peft TinyLoRA vs ours with {init_methods}")
    times = init_times(base, init_methods, rounds)

    log("")
    log(
        f"{'set':<11} {'method':<11} {'max angle, gap>1e-2':>20} {'max angle, all':>15} "
        f"{'max energy shortfall':>21} {'SVD sum (s)':>12} {'exact32 / this':>15}"
    )
    for label, q in (("real", real), ("engineered", eng)):
        ex = q["methods"].get("exact", {}).get("seconds")
        for m in methods:
            v = q["methods"][m]
            ratio = f"{ex / v['seconds']:.1f}x" if ex else "-"
            log(
                f"{label:<11} {m:<11} {v['angle_gated']:>20.2e} {v['angle_all']:>15.2e} "
                f"{v['energy']:>21.2e} {v['seconds']:>12.2f} {ratio:>15}"
            )
    log(
        f"real: {real['modules']} modules, min rel gap {real['min_rel_gap']:.2e}; engineered: {eng['modules']}"
    )
    ratios = {}
    for m in init_methods:
        ratios[f"peft / ours-{m}"] = measure.paired_ratio(times, "peft-tinylora", f"ours-{m}")
    if "randomized" in init_methods:
        for m in init_methods:
            if m != "randomized":
                ratios[f"ours-{m} / ours-randomized"] = measure.paired_ratio(
                    times, f"ours-{m}", "ours-randomized"
                )
    log("init seconds per round: " + "; ".join(f"{n} {[round(t, 2) for t in ts]}" for n, ts in times.items()))
    for k, v in ratios.items():
        log(f"init time ratio {k}: {v:.1f}x")
    verdict = {}
    for m in methods:
        rm, em = real["methods"][m], eng["methods"][m]
        verdict[m] = {
            "angle_ok": max(rm["angle_gated"], em["angle_gated"]) < ANGLE_TARGET,
            "energy_ok": max(rm["energy"], em["energy"]) < ENERGY_TARGET,
            "speed_ok": None if m == "exact" else ratios[f"peft / ours-{m}"] >= SPEEDUP_TARGET,
        }
        log(
            f"{m}: angle < {ANGLE_TARGET:g} (gap > {GAP_GATE:g}) {verdict[m]['angle_ok']}, energy < "
            f"{ENERGY_TARGET:g} {verdict[m]['energy_ok']}, init >= {SPEEDUP_TARGET:g}x faster than peft "
            f"{verdict[m]['speed_ok']}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        result = {
            "model": wl.note,
            "threads": torch.get_num_threads(),
            "real": real,
            "engineered": eng,
            "init_seconds": times,
            "init_ratios": ratios,
            "verdict": verdict,
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
