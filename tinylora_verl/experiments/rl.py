"""An RL run of a sweep: `python -m tinylora_verl.main` (= `tinylora-verl train`) with Hydra overrides.

Overrides per run (then the spec's rl.overrides, which win):
    --config-name=<rl.config_name>
    actor_rollout_ref.model.path=<model>   data.train_files=<train>   data.val_files=<val>
    actor_rollout_ref.actor.optim.lr=<lr>
    data.seed / actor_rollout_ref.actor.data_loader_seed / actor_rollout_ref.rollout.seed = <seed>
    trainer.default_local_dir=<run>/verl   trainer.experiment_name=<run name>
    trainer.save_freq=${trainer.total_training_steps}      (the final model is what gets evaluated)
    tinylora:  tinylora.enable=true tinylora.budget=<B> tinylora.seed=<seed> tinylora.tie_mode/frozen_rank
               tinylora.lora_alpha=<32 | null>   (the LR's scale: spec.py; null when the settings have none)
    lora:      tinylora.enable=false actor_rollout_ref.model.lora_rank=1     (verl's own LoRA path)
    full:      tinylora.enable=false                                         (verl's plain actor)
The final model: TinyLoRA -> the adapter our engine saves with verl's last checkpoint
(<run>/verl/global_step_<n>/actor/tinylora_adapter); lora / full -> verl's FSDP checkpoint of the last
step, turned into a Hugging Face directory by verl's own `python -m verl.model_merger merge --backend fsdp`
(for LoRA it writes the base weights plus a peft `lora_adapter/`, merged here with peft before eval).
verl's merger writes bf16, which hides updates below bf16's resolution; the update's size of a lora / full
run is therefore measured on the float32 weights of the FSDP checkpoint itself (actor_weights).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ..verl_seam.trainer_files import METRICS_FILE, adapter_dirs, read_rows

VERL_DIR = "verl"


def resolve_model(model: str) -> str:
    if model == "smollm2":
        from ..smollm2 import ensure_smollm2

        return str(ensure_smollm2())
    return model


def overrides(settings: dict, run_dir: str | Path, model_path: str | None = None) -> list[str]:
    run_dir, seed, rl = Path(run_dir).resolve(), settings["seed"], settings["rl"]
    out = [
        f"--config-name={rl['config_name']}",
        f"actor_rollout_ref.model.path={model_path or settings['model']}",
        f"data.train_files={settings['data']['train']}",
        f"data.val_files={settings['data']['val']}",
        f"actor_rollout_ref.actor.optim.lr={settings['lr']}",
        f"data.seed={seed}",
        f"actor_rollout_ref.actor.data_loader_seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"trainer.default_local_dir={run_dir / VERL_DIR}",
        f"trainer.experiment_name={settings['name']}",
        "trainer.save_freq=${trainer.total_training_steps}",
    ]
    kind = settings["kind"]
    if kind == "tinylora":
        tiny = settings.get("tinylora") or {}
        out += ["tinylora.enable=true", f"tinylora.budget={settings['budget']}", f"tinylora.seed={seed}"]
        out += [f"tinylora.{k}={tiny[k]}" for k in ("tie_mode", "frozen_rank") if k in tiny]
        lora_alpha = tiny.get("lora_alpha")
        out += [f"tinylora.lora_alpha={'null' if lora_alpha is None else lora_alpha}"]
    elif kind == "lora":
        out += ["tinylora.enable=false", "actor_rollout_ref.model.lora_rank=1"]
    elif kind == "full":
        out += ["tinylora.enable=false"]
    else:
        raise ValueError(f"RL run kind {kind!r} is not tinylora, lora or full")
    return out + list(rl.get("overrides", []))


def command(
    settings: dict, run_dir, python: str = sys.executable, model_path: str | None = None
) -> list[str]:
    return [python, "-m", "tinylora_verl.main", *overrides(settings, run_dir, model_path)]


def last_actor_checkpoint(verl_dir: Path) -> Path:
    steps = []
    for d in Path(verl_dir).glob("global_step_*/actor"):
        m = re.fullmatch(r"global_step_(\d+)", d.parent.name)
        if m:
            steps.append((int(m.group(1)), d))
    if not steps:
        raise RuntimeError(
            f"no verl checkpoint (global_step_*/actor) under {verl_dir}: the run saved nothing"
        )
    return max(steps)[1]


def final_adapter(run_dir) -> Path:
    found = adapter_dirs(Path(run_dir) / VERL_DIR)
    if not found:
        raise RuntimeError(
            f"no TinyLoRA adapter under {Path(run_dir) / VERL_DIR}/global_step_*/actor/: "
            "the run saved no checkpoint"
        )
    return found[-1]


def merge_command(actor_dir: Path, target_dir: Path, python: str = sys.executable) -> list[str]:
    return [
        python,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(actor_dir),
        "--target_dir",
        str(target_dir),
    ]


def merged_model_dir(run_dir, log_path, python: str = sys.executable) -> Path:
    """<run>/model: verl's last actor checkpoint as an HF directory (LoRA merged into the weights)."""
    target = Path(run_dir) / "model"
    if (target / "config.json").exists() and not (target / "lora_adapter").exists():
        return target
    with open(log_path, "a") as log:
        subprocess.run(
            merge_command(last_actor_checkpoint(Path(run_dir) / VERL_DIR), target, python),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    lora = target / "lora_adapter"
    if lora.exists():  # base weights + peft adapter -> one merged model
        import shutil

        from peft import PeftModel

        from ..hf import load_causal_lm

        model = PeftModel.from_pretrained(load_causal_lm(str(target)), str(lora)).merge_and_unload()
        model.save_pretrained(target)
        shutil.rmtree(lora)
    return target


def train_metrics(run_dir) -> dict:
    """The last step's row of <run>/verl/tinylora_metrics.jsonl (reward, timings), plus the step count.

    An interrupted attempt's rows stay in the file (it is appended to): a step written again by a later
    attempt (a rerun from scratch, or a resume from an earlier checkpoint) counts once, as last written."""
    by_step = {row.get("step"): row for row in read_rows(Path(run_dir) / VERL_DIR / METRICS_FILE)}
    rows = [by_step[k] for k in sorted(by_step, key=lambda k: (k is None, k or 0))]
    if not rows:
        return {}
    first, last = rows[0], rows[-1]
    return {
        "steps": last.get("step"),
        "first_reward": first.get("reward"),
        "final_reward": last.get("reward"),
        "final_acc": last.get("acc"),
        "mean_step_s": sum(r.get("t_step", 0.0) for r in rows) / len(rows),
    }


def _full_tensor(parts: list):
    """One parameter from every rank's shard, float32: a DTensor's local pieces joined along its Shard dim
    (FSDP2, a 1-D mesh), a replicated or plain tensor taken from rank 0."""
    import torch

    first = parts[0]
    if not hasattr(first, "_local_tensor"):
        return first.float()
    placements = tuple(first.placements)
    if len(placements) != 1:
        raise NotImplementedError(f"an FSDP checkpoint on a {len(placements)}-D device mesh (FSDP + TP)")
    locals_ = [p._local_tensor.float() for p in parts]
    return torch.cat(locals_, dim=placements[0].dim) if placements[0].is_shard() else locals_[0]


def actor_weights(actor_dir) -> dict:
    """The trained actor's float32 weights from verl's FSDP checkpoint (model_world_size_W_rank_R.pt), under
    the Hugging Face names, a LoRA merged in (W + lora_alpha / r * B A, from lora_train_meta.json)."""
    import torch

    actor_dir = Path(actor_dir)
    shards = {
        (int(m.group(1)), int(m.group(2))): p
        for p in actor_dir.glob("model_world_size_*_rank_*.pt")
        if (m := re.fullmatch(r"model_world_size_(\d+)_rank_(\d+)\.pt", p.name))
    }
    sizes = {size for size, _ in shards}
    if len(sizes) != 1 or sorted(rank for _, rank in shards) != list(range(next(iter(sizes)))):
        raise RuntimeError(f"{actor_dir} has no complete set of model_world_size_*_rank_*.pt shards")
    shards = {rank: p for (_, rank), p in shards.items()}
    # torch's restricted unpickler: tensors, DTensors and containers only, no code
    states = [torch.load(shards[r], map_location="cpu", weights_only=True) for r in sorted(shards)]
    weights, lora = {}, {}
    for key in states[0]:
        tensor = _full_tensor([s[key] for s in states])
        if ".lora_A." in key or ".lora_B." in key:
            lora[key] = tensor
            continue
        name = key.replace("base_model.model.", "", 1)
        weights[name.replace(".base_layer.weight", ".weight").replace(".base_layer.bias", ".bias")] = tensor
    if lora:
        meta = json.loads((actor_dir / "lora_train_meta.json").read_text())
        scaling = float(meta["lora_alpha"]) / float(meta["r"])
        for key, a in lora.items():
            if ".lora_A." not in key:
                continue
            b = lora[key.replace(".lora_A.", ".lora_B.")]
            name = key.split(".lora_A.")[0].replace("base_model.model.", "", 1) + ".weight"
            delta = scaling * (b.double() @ a.double())
            weights[name] = (weights[name].double() + delta).float()
    return weights
