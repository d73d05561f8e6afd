"""Hydra entry point: `python -m tinylora_verl.main [overrides]` (also `tinylora-verl train [overrides]`).

Composes verl's `ppo_trainer` (found through `hydra.searchpath: [pkg://verl.trainer.config]`) with our
configs in the top-level `config/` (reached through the package symlink `tinylora_verl/config`, located
from this file, so it works from any directory and ships with the package), default
`cpu_demo`. Then, in the driver process:
1. `trainer.device=cpu` -> `VERL_PLATFORM=cpu`, inherited by every Ray and vLLM process, where it
   switches on the CPU platform plugin at `import verl` (in this driver, where Hydra's search path has
   imported verl already, the platform is registered and made current explicitly), and this checkout's import path is
   put into Ray's runtime env so workers import the same tinylora_verl;
2. `actor_rollout_ref.model.path=smollm2` -> `ensure_smollm2()`; the `task:` block's parquet files are
   generated if missing;
3. the config is resolved and checked by verl's `validate_config`, and verl's `run_ppo` runs with our
   task runner (`TinyLoRATaskRunner`, trainer mode `tinylora_sync`).
`--cfg job` (or `all`) prints the composed config and exits (Hydra's own flag), after the same checks
as a run (`check_before_print`: the tinylora block and verl's `validate_config`): an invalid config is
refused with exit 2, never printed as if it were fine.

The terminal shows the command, one line per step and a summary; everything verl, Ray and vLLM print goes
to `<trainer.default_local_dir>/tinylora_train.log` (console.py; `TINYLORA_CONSOLE=all` prints it all).
Inside a Ray job or with RAY_ADDRESS set, verl's `ray.init()` joins that cluster, which refuses
`num_cpus` / `num_gpus`: the config's values (meant for a private local cluster) are then dropped.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from . import console
from .errors import InvalidValue, UserError

CONFIG_DIR = str(Path(__file__).resolve().parent / "config")
DEFAULT_CONFIG = "cpu_demo"
SMOLLM2 = "smollm2"


def pkg_file(spec: str) -> str:
    """'package/sub/file.py' -> absolute path of that file inside the installed package."""
    top, _, rest = spec.partition("/")
    module = importlib.import_module(top)
    return str(Path(module.__file__).resolve().parent / rest)


if not OmegaConf.has_resolver("tinylora_pkg_file"):
    OmegaConf.register_new_resolver("tinylora_pkg_file", pkg_file)


def prepare_environment(cfg: DictConfig) -> None:
    """Platform switch and import path for every process of the job (call before importing verl)."""
    if str(cfg.trainer.get("device", "cuda")) == "cpu":
        os.environ["VERL_PLATFORM"] = "cpu"
        os.environ["VLLM_TARGET_DEVICE"] = "cpu"
        if "verl" in sys.modules:  # Hydra's pkg://verl.trainer.config search path imported verl already
            from . import cpu_platform

            cpu_platform.register(make_current=True)
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    env = {k: os.environ[k] for k in ("PYTHONPATH", "VERL_PLATFORM", "VLLM_TARGET_DEVICE") if k in os.environ}
    # inside a Ray job, Ray merges the job's runtime env with ray.init()'s and refuses a variable set in both
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    job_vars = (job.get("runtime_env") or {}).get("env_vars") or {}
    with open_dict(cfg):
        # (DictConfig.setdefault returns the default it stores as a plain copy: assign, then read the node)
        if cfg.ray_kwargs.get("ray_init") is None:
            cfg.ray_kwargs.ray_init = {}
        ray_init = cfg.ray_kwargs.ray_init
        if ray_init.get("runtime_env") is None:
            ray_init.runtime_env = {}
        given = ray_init.runtime_env.get("env_vars")
        given = OmegaConf.to_container(given) if isinstance(given, DictConfig) else dict(given or {})
        ray_init.runtime_env.env_vars = {
            **{k: v for k, v in env.items() if k not in job_vars},
            **given,  # the user's ray_kwargs.ray_init.runtime_env.env_vars win
        }
        if os.environ.get("RAY_ADDRESS") or job:
            for key in ("num_cpus", "num_gpus"):  # ray.init() refuses them when it joins a cluster
                if ray_init.get(key) is not None:
                    print(
                        f"joining the Ray cluster at {os.environ.get('RAY_ADDRESS', '(this job)')}: "
                        f"ray_kwargs.ray_init.{key}={ray_init[key]} dropped (the cluster's resources count)"
                    )
                    ray_init[key] = None


def prepare_inputs(cfg: DictConfig) -> None:
    """Materialise the model (smollm2) and the demo task's data when the config asks for them."""
    with open_dict(cfg):
        if cfg.actor_rollout_ref.model.path == SMOLLM2:
            from .smollm2 import ensure_smollm2

            cfg.actor_rollout_ref.model.path = str(ensure_smollm2())
        if cfg.get("task") is not None:
            from .data.arithmetic import ensure_dataset

            t = cfg.task
            ensure_dataset(
                t.dir, op=t.op, n_train=t.n_train, n_val=t.n_val, seed=t.seed, style=t.get("style", "hash")
            )


def check_tinylora(cfg: DictConfig):
    """The tinylora block is read here, in the driver, so a mistake is one line and exit 2, not a
    traceback from a Ray worker minutes later. Settings TinyLoRA cannot honour are refused, not ignored.
    Returns the validated RunConfig (run_config.py)."""
    from .run_config import check_run_config

    try:
        run = check_run_config(cfg)
        if run.enabled:
            check_run_settings(cfg)
            run = resolve_old_log_prob(run, cfg)
    except (UserError, ValueError) as e:  # TinyLoRAConfigError is a ValueError
        _refuse(f"bad tinylora block: {e}")
    return run


def resolve_old_log_prob(run, cfg):
    """`run` with `old_log_prob` resolved for this config (auto -> update or recompute), so the workers get
    the decision; `update` where verl's pass is not redundant is refused (verl_seam/old_log_prob.py)."""
    import dataclasses

    from .verl_seam.old_log_prob import takes_old_from_update

    update = takes_old_from_update(run.old_log_prob, cfg)
    return dataclasses.replace(run, old_log_prob="update" if update else "recompute")


def _refuse(message: str) -> None:
    console.user_error(f"tinylora-verl train: {message}")
    raise SystemExit(2)


def check_run_settings(cfg: DictConfig) -> None:
    """Refuse verl settings a TinyLoRA run would silently not honour (ValueError naming the fix)."""
    arr = cfg.actor_rollout_ref
    for key in ("actor.strategy", "actor.fsdp_config.strategy"):
        value = OmegaConf.select(arr, key)
        if value is not None and str(value) != "fsdp2":
            raise InvalidValue(
                f"actor_rollout_ref.{key}={value}: TinyLoRA runs on FSDP2 only (its merged weights, "
                f"diagnostics and syncs gather DTensor shards); set actor_rollout_ref.{key}=fsdp2"
            )
    backend = OmegaConf.select(arr, "rollout.checkpoint_engine.backend")
    custom = OmegaConf.select(arr, "rollout.checkpoint_engine.custom_backend_module")
    if (backend is not None and str(backend) != "naive") or custom:
        raise InvalidValue(
            f"actor_rollout_ref.rollout.checkpoint_engine.backend={backend}"
            f"{f' (custom_backend_module={custom})' if custom else ''}: TinyLoRA runs in verl's synchronous "
            "trainer, which always syncs its colocated rollout engines directly ('naive') and would ignore "
            "this; remove the setting (disaggregated rollouts are not supported with TinyLoRA)"
        )


def check_before_print(argv: list[str]) -> None:
    """Hydra's `--cfg job|all` prints the composed config and exits without calling run(). Compose it
    here exactly as Hydra will (its own argument parser, config path/dir/name, overrides) and run the
    driver's checks first: the tinylora block, then verl's `validate_config` on a resolved copy (it needs
    no model or data). An invalid config exits 2 with one line; a composition error is left to Hydra."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.cfg not in ("job", "all"):
        return
    cfg = _compose_like_hydra(args)
    if cfg is None:
        return
    check_tinylora(cfg)
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate_config(
                config=resolved,
                use_reference_policy=need_reference_policy(resolved),
                use_critic=need_critic(resolved),
            )
    except (ValueError, AssertionError) as e:  # verl's validator reports a bad config with these
        _refuse(f"invalid config (verl's validate_config): {e}")


def _compose_like_hydra(args) -> DictConfig | None:
    """The job config Hydra's --cfg would print (None when it cannot be composed: Hydra reports why)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    config_path = args.config_path if args.config_path is not None else CONFIG_DIR
    search_path = create_automatic_config_search_path(__file__, None, config_path)
    if args.config_dir is not None:
        search_path.prepend(
            provider="command-line",
            path=f"file://{os.path.abspath(args.config_dir)}",
            anchor=SearchPathQuery(provider="schema"),
        )
    try:
        hydra_app = Hydra.create_main_hydra2(task_name="main", config_search_path=search_path)
        cfg = hydra_app.compose_config(
            args.config_name or DEFAULT_CONFIG, args.overrides, run_mode=RunMode.RUN
        )
    except Exception:  # noqa: BLE001 - Hydra composes again below and reports the error its own way
        return None
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def command_line() -> str:
    """How this process was started, as a person would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("tinylora_verl", "main.py")):
        argv[:1] = ["python", "-m", "tinylora_verl.main"]
    elif argv and argv[0] == "tinylora-verl train":  # set by `tinylora-verl train` (commands/train.py)
        argv[:1] = argv[0].split()
    return shlex.join(argv)


def run(cfg: DictConfig) -> None:
    from .run_config import pin_run_config

    print(command_line(), flush=True)
    run_config = check_tinylora(cfg)  # before the console makes the run directory: a refusal leaves nothing
    pin_run_config(cfg, run_config)  # the workers read what was validated here
    if not console.enabled():
        return train(cfg)
    run_dir = OmegaConf.select(cfg, "trainer.default_local_dir")
    steps = OmegaConf.select(cfg, "trainer.total_training_steps")
    with console.Console(run_dir, total_steps=int(steps) if steps else None):
        try:
            train(cfg)
        finally:
            import ray

            if ray.is_initialized():  # its shutdown messages go to the log too
                ray.shutdown()


def train(cfg: DictConfig) -> None:
    prepare_environment(cfg)
    try:
        prepare_inputs(cfg)
    except UserError as e:  # the SmolLM2 package missing, a file where the cache or task dir belongs
        _refuse(str(e))
    OmegaConf.resolve(cfg)

    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from .verl_seam.trainer import TinyLoRATaskRunner

    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    run_ppo(cfg, task_runner_class=TinyLoRATaskRunner)


@hydra.main(config_path=CONFIG_DIR, config_name=DEFAULT_CONFIG, version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    """`python -m tinylora_verl.main [overrides]`: Hydra's entry point, with `--cfg` checked first."""
    check_before_print(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
