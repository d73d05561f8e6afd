"""The run's `tinylora:` Hydra block, typed and validated once: `run_config_from(block) -> RunConfig`.

The driver checks the composed config with `check_run_config(cfg)` before any worker starts and hands
the result on with `pin_run_config(cfg, run)` (main.py): the block the workers read becomes the
validated one, every key written out (`RunConfig.to_block()`). Each process then reads it once
(`worker_run_config`: the trainer and the actor worker at construction, the task runner once) and passes
the typed `RunConfig` on; nothing reads a value through Python truthiness.

Keys: `enable`, `verify_sync` and `reproducible` are booleans (`true`/`false`; strings such as `off`, `'false'`, `no`
and numbers are refused, not interpreted: `bool('false')` is True, and guessing which strings mean
false is how `enable=off` once left TinyLoRA on), `sync_mode` is one of SYNC_MODES, `old_log_prob` one of
OLD_LOG_PROB_MODES (resolved against the whole config by the driver: verl_seam/old_log_prob.py), every other key is a
TinyLoRAConfig field; on top of TinyLoRAConfig's own checks, real numbers must be finite (alpha = NaN
or inf makes every logit NaN from step 0), the seed a non-negative integer below 2**63 and
target_modules a list of names. Every problem is reported at once, each naming the key and the fix.

The block the workers read is `actor_rollout_ref.tinylora` (the configs point it at the top-level
`tinylora:` block); a run where the two differ (one of them overridden, e.g.
`++actor_rollout_ref.tinylora.enable=false`) is refused, since which one was meant cannot be known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import OmegaConf

from .adapter import TinyLoRAConfig, TinyLoRAConfigError
from .errors import InvalidValue
from .sync import SYNC_MODES

CONFIG_KEY = "tinylora"  # the top-level block, and the key under actor_rollout_ref the workers read
# run keys and their defaults; `reproducible`: per-request rollout seeds and a canonical row order, so a run
# resumed from a checkpoint ends with the same v, bit for bit, as the run left alone (docs/training.md)
BOOL_KEYS = {"enable": True, "verify_sync": False, "reproducible": False}
MAX_SEED = 2**63
# the per-sync probe (sync/probe.py): rows and real tokens per row of its fixed batch, with their bounds
# (its logits are rows x tokens x vocab; 64 x 4096 x 152k bf16 would already be 80 GB)
PROBE_KEYS = {"probe_sequences": (4, 0, 64), "probe_tokens": (256, 1, 4096)}  # default, min, max
# where π_old comes from: verl's own pass, the update's forward, or whichever is exact (verl_seam/old_log_prob.py)
OLD_LOG_PROB_MODES = ("auto", "recompute", "update")


class RunConfigError(InvalidValue, TinyLoRAConfigError):
    """An invalid `tinylora:` block; the message lists every problem with its fix. A TinyLoRAConfigError
    too, so callers that catch the adapter's error type keep working."""


@dataclass(frozen=True)
class RunConfig:
    adapter: TinyLoRAConfig | None  # None: TinyLoRA off (no block, or enable: false)
    verify_sync: bool = False
    sync_mode: str = "full"
    probe_sequences: int = PROBE_KEYS["probe_sequences"][0]  # 0: no probe
    probe_tokens: int = PROBE_KEYS["probe_tokens"][0]
    reproducible: bool = False
    old_log_prob: str = "auto"

    @property
    def enabled(self) -> bool:
        return self.adapter is not None

    def to_block(self) -> dict:
        """The block with every key written out: `run_config_from(run.to_block()) == run`."""
        block = {
            "enable": self.enabled,
            "verify_sync": self.verify_sync,
            "sync_mode": self.sync_mode,
            "probe_sequences": self.probe_sequences,
            "probe_tokens": self.probe_tokens,
            "reproducible": self.reproducible,
            "old_log_prob": self.old_log_prob,
        }
        return {**block, **(self.adapter.to_dict() if self.adapter is not None else {})}


def _plain(block) -> dict:
    d = OmegaConf.to_container(block, resolve=True) if OmegaConf.is_config(block) else block
    if not isinstance(d, dict):
        raise RunConfigError(f"the tinylora block is a {type(d).__name__}, not a mapping of settings")
    return dict(d)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_config_from(block, where: str = CONFIG_KEY) -> RunConfig:
    """RunConfig of a `tinylora:` block (DictConfig or dict; None = no block); RunConfigError if invalid.
    `where` is the block's path in the config, used in the messages."""
    if block is None:
        return RunConfig(None)
    d = _plain(block)
    errors = []
    run = {}
    for key, default in BOOL_KEYS.items():
        value = d.pop(key, default)
        if not isinstance(value, bool):
            errors.append(
                f"{where}.{key}={value!r} is not a boolean: write {where}.{key}=true or {where}.{key}=false "
                "(strings such as 'off' or 'false' and numbers are refused, not guessed at)"
            )
        run[key] = value
    sync_mode = d.pop("sync_mode", "full")
    if sync_mode not in SYNC_MODES:
        errors.append(f"{where}.sync_mode={sync_mode!r}: use one of {', '.join(SYNC_MODES)}")
    old_log_prob = d.pop("old_log_prob", "auto")
    if old_log_prob not in OLD_LOG_PROB_MODES:
        errors.append(
            f"{where}.old_log_prob={old_log_prob!r}: use one of {', '.join(OLD_LOG_PROB_MODES)} (auto: the "
            "update's own forward where verl's separate pass is exactly redundant, else that pass)"
        )
    for key, (default, low, high) in PROBE_KEYS.items():
        value = d.pop(key, default)
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            errors.append(
                f"{where}.{key}={value!r} must be an integer in [{low}, {high}] (default {default})"
            )
        run[key] = value
    for key in ("alpha", "lora_alpha"):
        value = d.get(key)
        if _is_number(value) and not math.isfinite(value):
            errors.append(f"{where}.{key}={value!r} must be a finite number (the paper's alpha is 1.0)")
    seed = d.get("seed", 0)
    if _is_number(seed) and isinstance(seed, int) and not 0 <= seed < MAX_SEED:
        errors.append(f"{where}.seed={seed} must be a non-negative integer below 2**63 (e.g. 0)")
    targets = d.get("target_modules", ())
    if not isinstance(targets, (str, list, tuple)):
        errors.append(
            f"{where}.target_modules={targets!r} must be a list of module names, e.g. [q_proj, v_proj]"
        )
    adapter = None
    if not errors and run["enable"]:
        try:
            adapter = TinyLoRAConfig.from_dict(d)
        except ValueError as err:  # TinyLoRAConfigError: every problem of the adapter's fields
            errors.append(f"{where}: {err}")
    if errors:
        if len(errors) == 1:
            raise RunConfigError(errors[0])
        raise RunConfigError("\n  - ".join([f"{len(errors)} invalid tinylora settings:", *errors]))
    return RunConfig(
        adapter,
        run["verify_sync"],
        sync_mode,
        run["probe_sequences"],
        run["probe_tokens"],
        run["reproducible"],
        old_log_prob,
    )


def check_run_config(cfg) -> RunConfig:
    """The driver's check of a composed run config (before any worker starts): the block the workers
    read (`actor_rollout_ref.tinylora`), the top-level one, and that they agree."""
    top = cfg.get(CONFIG_KEY)
    arr = cfg.get("actor_rollout_ref")
    if top is not None:
        run_config_from(top)  # the block users override, checked under its own name first
    worker_block = arr.get(CONFIG_KEY) if arr is not None else top
    worker = run_config_from(worker_block, f"actor_rollout_ref.{CONFIG_KEY}")
    if top is not None and (worker_block is None or _plain(top) != _plain(worker_block)):
        raise RunConfigError(
            f"actor_rollout_ref.{CONFIG_KEY} differs from the top-level {CONFIG_KEY}: block; the workers read "
            f"the first, the configs set it to ${{{CONFIG_KEY}}}: override {CONFIG_KEY}.KEY=VALUE instead of "
            f"actor_rollout_ref.{CONFIG_KEY}.KEY"
        )
    return worker


def pin_run_config(cfg, run: RunConfig) -> None:
    """Write the driver's validated `run` as the block the workers read (`actor_rollout_ref.tinylora`,
    every key explicit), so they get exactly what was checked, whatever the user overrode. A config with
    no tinylora block at all (plain verl) is left as it is."""
    from omegaconf import open_dict

    arr = cfg.get("actor_rollout_ref")
    if arr is None or (cfg.get(CONFIG_KEY) is None and arr.get(CONFIG_KEY) is None):
        return
    with open_dict(cfg):
        cfg.actor_rollout_ref[CONFIG_KEY] = run.to_block()


def worker_run_config(arr_config) -> RunConfig:
    """The RunConfig of a worker's `actor_rollout_ref` section (the block `pin_run_config` wrote; a
    config that did not come through our driver is validated here by the same rules)."""
    return run_config_from(arr_config.get(CONFIG_KEY), f"actor_rollout_ref.{CONFIG_KEY}")
