"""tinylora-verl sweep --out DIR [--spec FILE] [grid flags] [--dry-run] [--retry-failed] [--backend local|ray]

Budget x learning rate x seed for RL (`tinylora-verl train`, Hydra) and SFT (`tinylora-verl sft`), plus the
rank-1 LoRA and full-fine-tune baselines and one evaluation of the untrained model; every run is evaluated
on the validation set and the test sets (tinylora_verl/experiments/, spec.py documents the YAML). Flags
override the spec file; --set KEY=VALUE sets nested keys (sft.steps=50, eval.temperature=0, ...).
Re-running the same command resumes: finished runs are skipped, failed ones rerun with --retry-failed.
Backends: local (default; one run after another on this machine) or ray (each run a Ray job on an existing
cluster: --ray-address, or RAY_ADDRESS). `tinylora-verl table DIR` then makes the tables and figures.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidValue, MissingPath, check_dir_path
from ..experiments.options import add_task_arguments, apply_sets, comma_list, task_from_args


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="sweep directory (holds sweep.yaml, data/, runs/<name>/)")
    p.add_argument("--spec", default=None, help="sweep YAML (default: DIR/sweep.yaml from an earlier call)")
    p.add_argument("--model", default=None, help="HF model directory, hub id, or 'smollm2'")
    add_task_arguments(p)
    p.add_argument("--methods", default=None, help="comma-separated: rl,sft")
    p.add_argument(
        "--budgets", default=None, help="comma-separated TinyLoRA budgets, e.g. 1,13,120,1000,10000"
    )
    p.add_argument("--lrs", default=None, help="comma-separated learning rates (default: the paper's 7)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--baselines", default=None, help="comma-separated: lora (rank 1), full ('' for none)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="nested spec key, YAML value"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list the runs, their status and commands; run nothing"
    )
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--backend", default="local", choices=("local", "ray"))
    p.add_argument(
        "--timeout", type=float, default=None, help="local backend: seconds before a run is killed"
    )
    p.add_argument("--ray-address", default=None, help="Ray dashboard address (default: RAY_ADDRESS)")
    p.add_argument("--ray-max-parallel", type=int, default=4, help="Ray jobs running at once")
    p.add_argument(
        "--ray-runtime-env", default=None, help="JSON runtime_env for every job (env_vars, working_dir...)"
    )
    p.add_argument("--ray-python", default="python", help="python executable on the cluster")
    p.add_argument("--ray-entrypoint-gpus", type=float, default=1.0, help="GPUs for SFT/base job entrypoints")


def _spec_from_args(args) -> dict | None:
    import yaml

    spec = None
    if args.spec:
        path = Path(args.spec)
        if not path.is_file():
            raise MissingPath(f"--spec {args.spec}: no such file")
        spec = yaml.safe_load(path.read_text()) or {}
        if not isinstance(spec, dict):
            raise InvalidValue(f"--spec {args.spec}: expected a YAML mapping at the top level")
    flags = {
        "model": args.model,
        "task": task_from_args(args, required=False),
        "methods": comma_list(args.methods, str, "--methods"),
        "budgets": comma_list(args.budgets, int, "--budgets"),
        "lrs": comma_list(args.lrs, float, "--lrs"),
        "seeds": comma_list(args.seeds, int, "--seeds"),
        "baselines": [] if args.baselines == "" else comma_list(args.baselines, str, "--baselines"),
    }
    flags = {k: v for k, v in flags.items() if v is not None}
    if spec is None and not flags and not args.set:
        return None  # reuse DIR/sweep.yaml
    if spec is None:
        saved = Path(args.out) / "sweep.yaml"
        spec = yaml.safe_load(saved.read_text()) if saved.exists() else {}
    return apply_sets({**spec, **flags}, args.set)


def _backend(args):
    from ..experiments.backends import LocalBackend, RayJobsBackend

    if args.backend == "local":
        return LocalBackend(timeout_s=args.timeout)
    runtime_env = json.loads(args.ray_runtime_env) if args.ray_runtime_env else None
    if runtime_env is not None and not isinstance(runtime_env, dict):
        raise InvalidValue("--ray-runtime-env must be a JSON object")
    return RayJobsBackend(
        args.ray_address,
        python=args.ray_python,
        runtime_env=runtime_env,
        max_parallel=args.ray_max_parallel,
        entrypoint_num_gpus=args.ray_entrypoint_gpus,
        sweep_dir=args.out,
    )


def run(args) -> int:
    from ..experiments.sweep import run_sweep

    check_dir_path(args.out, "--out")
    summary = run_sweep(
        _spec_from_args(args),
        args.out,
        _backend(args),
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        log=lambda m: print(m, flush=True),
    )
    return 1 if "failed" in summary.results.values() else 0  # a run of this invocation failed
