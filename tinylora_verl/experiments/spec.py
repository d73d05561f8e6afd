"""A sweep: budget x learning rate x seed for RL and/or SFT, plus baselines, as a validated spec.

YAML (every key optional but `model` and `task`; defaults below):

    model: smollm2                  # HF directory, hub id, or "smollm2" (the local SmolLM2-135M-Instruct)
    task: {kind: arithmetic, op: add}          # or {kind: files, train: .., val: .., tests: {gsm8k: ..}}
    methods: [rl, sft]
    budgets: [1, 13, 120, 1000, 10000]         # TinyLoRA trainable parameters
    lrs: [1.0e-7, 5.0e-7, 1.0e-6, 5.0e-6, 1.0e-5, 1.0e-4, 2.0e-4]   # the paper's grid, in the authors' scale
    seeds: [0, 1, 2]
    select_seeds: null             # e.g. [0]: the LR grid runs on these seeds only; the other seeds run at
                                   # each row's best LR once its grid has finished (sweep.py)
    baselines: [lora, full]        # rank-1 LoRA, full fine-tune (each over baseline_lrs x seeds)
    baseline_lrs: null             # null = lrs; a list for both baselines, or {lora: [..], full: [..]}
    base_eval: true                # one run that only evaluates the untrained model (the figure's base line)
    tinylora: {tie_mode: tiled, frozen_rank: 2, lora_alpha: 32}
    sft: {steps: .., batch_size: .., ...}      # experiments/sft.py SFTConfig fields
    rl: {config_name: cpu_demo, overrides: [trainer.total_training_steps=6]}   # Hydra (tinylora-verl train)
    eval: {backend: auto, temperature: 1.0, top_p: 0.95, max_tokens: 4096}  # experiments/evaluate.py
    label: null                    # a variant's name, e.g. "matched": in run names and the table's rows,
                                   # so two sweeps of one method with other settings share one OUT

Learning rates are in the authors' scale: `tinylora.lora_alpha: 32` (their scripts' lora_alpha) gives each
TinyLoRA module the factor 32 / sqrt(r u) (TinyLoRAConfig.lora_alpha; u from the planner, per budget), so
a TinyLoRA LR means what it means in their scripts, for RL and SFT alike (docs/parity.md, "The authors'
scale"). `tinylora.lora_alpha: null` = the paper's formula (factor 1): the same physical step then needs
the LR times 32 / sqrt(r u). The baselines (LoRA, full) are not TinyLoRA and do not use it.

Runs and their directory names (deterministic, from the parameters; <method> is e.g. "sft-matched" with
label "matched"):
    base                          untrained model, evaluated only
    <method>-tinylora<B>-lr<LR>-s<SEED>     e.g. sft-tinylora13-lr0.0001-s0
    <method>-lora1-lr<LR>-s<SEED>           rank-1 LoRA (RL: verl's lora_rank=1; SFT: peft)
    <method>-full-lr<LR>-s<SEED>            full fine-tune (RL: tinylora.enable=false)
A run's settings (everything it depends on) go to its run.json; a later sweep refuses to reuse a run
directory whose settings differ, so a finished result is never silently attributed to other settings.
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, fields

from ..errors import InvalidValue
from .evaluate import EvalConfig
from .sft import SFTConfig
from .tasks import check_task

METHODS = ("rl", "sft")
BASELINES = ("lora", "full")
PAPER_LRS = [1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 1e-4, 2e-4]
DEFAULTS = {
    "methods": ["rl", "sft"],
    "budgets": [1, 13, 120, 1000, 10000],
    "lrs": PAPER_LRS,
    "seeds": [0, 1, 2],
    "select_seeds": None,
    "baselines": [],
    "baseline_lrs": None,
    "base_eval": True,
    "tinylora": {"tie_mode": "tiled", "frozen_rank": 2, "lora_alpha": 32.0},
    "sft": {},
    "rl": {"config_name": "cpu_demo", "overrides": []},
    "eval": {},
    "label": None,
}
TOP_KEYS = ("model", "task", *DEFAULTS)
# SFTConfig fields set per run by the sweep, not in the spec's sft block
PER_RUN_SFT = ("kind", "budget", "lr", "seed", "tie_mode", "frozen_rank", "tinylora_lora_alpha")
# the spec's tinylora keys (each a TinyLoRAConfig field; lora_alpha is SFTConfig's tinylora_lora_alpha)
TINYLORA_KEYS = ("tie_mode", "frozen_rank", "lora_alpha")


@dataclass(frozen=True)
class Run:
    method: str  # "rl" | "sft" | "base"
    kind: str  # "tinylora" | "lora" | "full" | "base"
    budget: int | None = None
    lr: float | None = None
    seed: int = 0
    label: str | None = None

    @property
    def name(self) -> str:
        if self.method == "base":
            return "base"
        what = {"tinylora": f"tinylora{self.budget}", "lora": "lora1", "full": "full"}[self.kind]
        method = f"{self.method}-{self.label}" if self.label else self.method
        return f"{method}-{what}-lr{self.lr:g}-s{self.seed}"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number_list(spec: dict, key: str, kind, positive: bool, errors: list[str], prefix: str = "") -> None:
    values, key = spec.get(key), prefix + key
    if not isinstance(values, list) or not values:
        errors.append(f"{key} must be a non-empty list, got {values!r}")
        return
    for v in values:
        ok = _is_int(v) if kind is int else (isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok or (positive and v <= 0):
            errors.append(f"{key}: {v!r} is not a {'positive ' if positive else ''}{kind.__name__}")
    if len(set(values)) != len(values):
        errors.append(f"{key} has repeated values {values}")


def baseline_lrs(spec: dict, kind: str) -> list:
    """The LR grid of baseline `kind`: baseline_lrs as a list (every baseline) or its entry (a dict)."""
    lrs = spec["baseline_lrs"]
    if isinstance(lrs, dict):
        if kind not in lrs:
            raise InvalidValue(f"baseline_lrs has no grid for baseline {kind!r}; add baseline_lrs.{kind}")
        return lrs[kind]
    return lrs


def validate(spec: dict) -> dict:
    """Fill defaults and check everything at once; ValueError lists every problem."""
    errors = [f"unknown key {k!r} (valid: {', '.join(TOP_KEYS)})" for k in spec if k not in TOP_KEYS]
    full = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(spec)}
    full["tinylora"] = {**DEFAULTS["tinylora"], **(spec.get("tinylora") or {})}
    full["rl"] = {**DEFAULTS["rl"], **(spec.get("rl") or {})}
    if not isinstance(full.get("model"), str) or not full["model"]:
        errors.append("model is required (an HF model directory, a hub id, or 'smollm2')")
    if "task" not in spec:
        errors.append("task is required, e.g. {kind: arithmetic, op: add}")
    else:
        errors += check_task(full["task"])
    if full["baseline_lrs"] is None:
        full["baseline_lrs"] = list(full["lrs"])
    _number_list(full, "budgets", int, True, errors)
    _number_list(full, "lrs", float, True, errors)
    if isinstance(full["baseline_lrs"], dict):  # one grid per baseline kind
        extra = sorted(set(full["baseline_lrs"]) - set(BASELINES))
        errors += [f"baseline_lrs.{k} is not a baseline (valid: {', '.join(BASELINES)})" for k in extra]
        for kind in full["baseline_lrs"]:
            if kind in BASELINES:
                _number_list(full["baseline_lrs"], kind, float, True, errors, prefix="baseline_lrs.")
    else:
        _number_list(full, "baseline_lrs", float, True, errors)
    _number_list(full, "seeds", int, False, errors)
    sel = full["select_seeds"]
    if sel is not None:
        _number_list(full, "select_seeds", int, False, errors)
        if isinstance(sel, list) and isinstance(full["seeds"], list):
            errors += [
                f"select_seeds: {s!r} is not in seeds {full['seeds']}" for s in sel if s not in full["seeds"]
            ]
    for m in full["methods"] if isinstance(full["methods"], list) else [full["methods"]]:
        if m not in METHODS:
            errors.append(f"methods: {m!r} is not one of {METHODS}")
    for b in full["baselines"] if isinstance(full["baselines"], list) else [full["baselines"]]:
        if b not in BASELINES:
            errors.append(f"baselines: {b!r} is not one of {BASELINES}")
        elif isinstance(full["baseline_lrs"], dict) and b not in full["baseline_lrs"]:
            errors.append(f"baselines: {b!r} has no learning rates; add baseline_lrs.{b}")
    label = full["label"]
    if label is not None and not (isinstance(label, str) and re.fullmatch(r"[a-z0-9_]{1,32}", label)):
        errors.append(f"label={label!r} must be null or 1-32 lowercase letters, digits or '_' (e.g. matched)")
    extra = sorted(set(full["tinylora"]) - set(TINYLORA_KEYS))
    errors += [f"tinylora.{k} is not a sweep setting (valid: {', '.join(TINYLORA_KEYS)})" for k in extra]
    la = full["tinylora"].get("lora_alpha")
    if la is not None and (not isinstance(la, (int, float)) or isinstance(la, bool) or la == 0):
        errors.append(
            f"tinylora.lora_alpha: {la!r} is not a non-zero number (32: the authors' scale) or null "
            "(the paper's formula)"
        )
    errors += [f"sft.{k} is set per run by the sweep; remove it" for k in PER_RUN_SFT if k in full["sft"]]
    if not errors:
        for label, check in (
            ("sft", lambda: SFTConfig.from_dict({**full["sft"], "budget": 1})),
            ("eval", lambda: EvalConfig.from_dict(full["eval"])),
        ):
            try:
                check()
            except (ValueError, TypeError) as err:
                errors.append(f"{label}: {err}")
    extra = sorted(set(full["rl"]) - {"config_name", "overrides"})
    errors += [f"rl.{k} is unknown (valid: config_name, overrides)" for k in extra]
    if not isinstance(full["rl"].get("overrides"), list):
        errors.append("rl.overrides must be a list of Hydra overrides (key=value)")
    if errors:
        raise InvalidValue("invalid sweep spec: " + "; ".join(errors))
    return full


def group_key(run: Run) -> tuple:
    """The runs that compete for one best learning rate (one row of the table)."""
    return (run.method, run.label, run.kind, run.budget)


def expand(spec: dict, best_lr=None) -> list[Run]:
    """Every run of a validated spec: base first, then per method TinyLoRA budgets, then baselines.

    With `select_seeds`, the LR grid runs on those seeds, and the other seeds at the LR that
    best_lr(group_key) returns — only for groups where it returns one (None: the grid is not finished)."""
    runs = [Run("base", "base")] if spec["base_eval"] else []
    label = spec.get("label")
    select = spec.get("select_seeds")
    grid_seeds = select if select is not None else spec["seeds"]
    later = [s for s in spec["seeds"] if s not in grid_seeds]

    def group(method, kind, budget, lrs):
        grid = [Run(method, kind, budget, float(lr), seed, label) for lr in lrs for seed in grid_seeds]
        lr = best_lr(group_key(grid[0])) if later and best_lr is not None else None
        return grid + ([Run(method, kind, budget, float(lr), seed, label) for seed in later] if lr else [])

    for method in spec["methods"]:
        for budget in spec["budgets"]:
            runs += group(method, "tinylora", budget, spec["lrs"])
        for kind in spec["baselines"]:
            runs += group(method, kind, None, baseline_lrs(spec, kind))
    return runs


def grid_groups(spec: dict) -> dict[tuple, list[Run]]:
    """{group_key: the group's LR-grid runs} (the runs its best learning rate is chosen from)."""
    groups: dict[tuple, list[Run]] = {}
    for run in expand(spec):
        if run.method != "base":
            groups.setdefault(group_key(run), []).append(run)
    return groups


def n_waiting(spec: dict, best_lr) -> int:
    """Runs of later seeds not yet planned because their group's best LR is not known."""
    if spec.get("select_seeds") is None:
        return 0
    later = len([s for s in spec["seeds"] if s not in spec["select_seeds"]])
    return later * sum(best_lr(key) is None for key in grid_groups(spec))


def run_settings(spec: dict, run: Run, task_files: dict) -> dict:
    """Everything `run` depends on (its run.json): a run is reused only when this is unchanged."""
    settings = {
        "name": run.name,
        "method": run.method,
        "kind": run.kind,
        "budget": run.budget,
        "lr": run.lr,
        "seed": run.seed,
        "model": spec["model"],
        "task": spec["task"],
        "data": task_files,
        "eval": asdict(EvalConfig.from_dict(spec["eval"])),
    }
    if run.label:  # left out when unset: the settings of runs recorded before labels existed
        settings["label"] = run.label
    if run.kind == "tinylora":
        # lora_alpha null (the paper's formula) is left out: the settings of runs recorded before the key existed
        settings["tinylora"] = {
            k: v for k, v in spec["tinylora"].items() if not (k == "lora_alpha" and v is None)
        }
    if run.method == "sft":
        settings["sft"] = dict(spec["sft"])
    if run.method == "rl":
        settings["rl"] = {
            "config_name": spec["rl"]["config_name"],
            "overrides": list(spec["rl"]["overrides"]),
        }
    return settings


def sft_config(settings: dict) -> SFTConfig:
    """The SFTConfig of an sft run's settings."""
    tiny = settings.get("tinylora") or {}
    return SFTConfig.from_dict(
        {
            **settings.get("sft", {}),
            "kind": settings["kind"],
            "budget": settings["budget"],
            "lr": settings["lr"],
            "seed": settings["seed"],
            **({k: tiny[k] for k in ("tie_mode", "frozen_rank") if k in tiny}),
            "tinylora_lora_alpha": tiny.get("lora_alpha"),
        }
    )


def spec_fields() -> dict[str, list[str]]:
    """Valid keys of the nested blocks (for help texts)."""
    return {
        "sft": [f.name for f in fields(SFTConfig) if f.name not in PER_RUN_SFT],
        "eval": [f.name for f in fields(EvalConfig)],
    }
