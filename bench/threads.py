"""The CPU demo under different thread allocations between vLLM and the actor, side by side.

    python bench/threads.py --out DIR [--steps N] [--only NAME,...] [HYDRA OVERRIDES ...]

The demo's trainer is synchronous and colocated: generation, the actor's passes and the sync take turns,
so on a 2-core machine each phase could have both cores. By default it does not: vLLM's CPU worker binds
its OpenMP threads itself (VLLM_CPU_OMP_THREADS_BIND=auto: one logical CPU per physical core, minus
VLLM_CPU_NUM_OF_RESERVED_CPU, one core by default, kept for its scheduler process), and the actor takes
$TINYLORA_CPU_THREADS or every core (tinylora_verl/cpu_platform.py). Each allocation below runs
`python -m tinylora_verl.demo` (validation off: `trainer.val_before_train=false trainer.test_freq=-1`) with
its environment, one after the other; the table shows per phase the median seconds over the steady
steps (step 1 excluded) and the ratio of each allocation to the first. Ray's workers inherit the
driver's environment, so the variables reach vLLM's worker and the actor. The figures also go to
DIR/threads.json; read them with the load average printed beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.precision_demo import PHASES, summarize  # noqa: E402

# name -> variables set in the run's environment (on top of this process's)
ALLOCATIONS: dict[str, dict[str, str]] = {
    "default": {},  # vLLM: auto binding (1 core on 2), actor: every core
    # vLLM's worker on every core (auto binding, none reserved: its scheduler and HTTP server share them)
    "vllm_all_cores": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"},
    "actor_1_thread": {"TINYLORA_CPU_THREADS": "1"},  # does the actor gain from a second thread?
}
NO_VALIDATION = ["trainer.val_before_train=false", "trainer.test_freq=-1"]


def table(results: dict[str, dict]) -> str:
    names = list(results)
    head = (
        f"{'':18}"
        + "".join(f"{n:>16}" for n in names)
        + "".join(f"{n[:8] + '/' + names[0][:8]:>18}" for n in names[1:])
    )
    lines = [head, "-" * len(head)]
    for label, key in PHASES:
        vals = [results[n].get(key) for n in names]
        cells = "".join(f"{v:>16.3g}" if isinstance(v, float) else f"{'-':>16}" for v in vals)
        base = vals[0]
        ratios = "".join(
            f"{v / base:>18.3f}"
            if isinstance(v, float) and isinstance(base, float) and base
            else f"{'-':>18}"
            for v in vals[1:]
        )
        lines.append(f"{label:18}{cells}{ratios}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a new directory for the runs")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per run (default 4)")
    parser.add_argument("--only", default=",".join(ALLOCATIONS), help="allocations, in the order they run")
    args, overrides = parser.parse_known_args(argv)
    names = args.only.split(",")
    unknown = [n for n in names if n not in ALLOCATIONS]
    if unknown:
        parser.error(f"unknown allocation(s) {unknown}; choose from {list(ALLOCATIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        env = dict(os.environ)
        for key, value in ALLOCATIONS[name].items():
            env[key] = value
        run_dir = out / name
        cmd = [sys.executable, "-m", "tinylora_verl.demo", "--out", str(run_dir), f"--steps={args.steps}"]
        cmd += NO_VALIDATION + overrides
        log = out / f"{name}.log"
        print(f"threads: {name}: {ALLOCATIONS[name]} {' '.join(cmd)}  (log: {log})", flush=True)
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        load = os.getloadavg()
        print(
            f"threads: {name} exit {rc}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True
        )
        results[name] = {
            **summarize(run_dir),
            "env": ALLOCATIONS[name],
            "exit_code": rc,
            "load_avg_1_5_15": list(load),
        }
    print(table(results))
    (out / "threads.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
