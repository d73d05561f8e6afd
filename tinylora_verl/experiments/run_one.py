"""Execute one run of a sweep and write its result record: `python -m tinylora_verl.experiments.run_one RUN_DIR`.

Reads RUN_DIR/run.json (spec.run_settings) and, by method:
- base: evaluate the model;
- sft:  load the model (on CUDA when there is one), make the adapter's parameters trainable (sft.py),
        train, save the adapter (or LoRA / model), evaluate the trained model;
- rl:   run the Hydra entry point (rl.py) as a child process (its output in RUN_DIR/train.log), then load
        the base model + the final adapter (TinyLoRA) or verl's merged checkpoint (lora / full), evaluate.
Evaluation: evaluate.py on the validation set and every test set. hf backend: the model in memory (the
SFT model as trained, no reload). vllm backend: a directory vLLM serves — the adapter merged into a
temporary copy (TinyLoRA), peft's merge (LoRA), or the saved model — written first, then the training
model is dropped and memory freed before vLLM starts (it sizes its cache from free GPU memory).
The record (records.py) is written
once, whatever happens: "finished" with metrics, or "failed" with the error. This is the entrypoint of
both sweep backends (a local child process, or a Ray job) and of `tinylora-verl sft`.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import MissingPath
from . import records
from .evaluate import EvalConfig, accuracy_on, evaluate, generate_hf, generate_vllm
from .spec import sft_config
from .tasks import read_rows

EVAL_DIR = "eval"


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _release() -> None:
    """Free what the caller dropped before vLLM takes the GPU (it sizes its cache from free memory)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def _eval(settings: dict, run_dir: Path, generate_fn) -> dict:
    return evaluate(
        settings["data_eval"], EvalConfig.from_dict(settings["eval"]), run_dir / EVAL_DIR, generate_fn
    )


def _export_merged(handle, model_path: str, out: str) -> str:
    from ..adapter.export import export_merged

    export_merged(handle, out, tokenizer_dir=model_path if Path(model_path).is_dir() else None)
    return out


def count_params(model_path: str, kind: str, lora_rank: int = 1) -> int:
    """Trainable parameters of verl's full fine-tune / rank-r 'all-linear' LoRA, from the config alone."""
    from torch import nn

    from ..hf import load_on_meta

    model = load_on_meta(model_path)
    if kind == "full":
        return sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    return sum(
        lora_rank * (m.in_features + m.out_features)
        for m in model.modules()
        if isinstance(m, nn.Linear) and m is not head
    )


def run_base(settings: dict, run_dir: Path, model_path: str, log) -> dict:
    from ..hf import load_causal_lm

    cfg, tok = EvalConfig.from_dict(settings["eval"]), _tokenizer(model_path)
    if cfg.resolved_backend() == "vllm":
        return {
            "trainable_params": 0,
            "train": {},
            "eval": _eval(settings, run_dir, lambda p: generate_vllm(model_path, p, cfg)),
        }
    model = load_causal_lm(model_path, device=_device())
    return {
        "trainable_params": 0,
        "train": {},
        "eval": _eval(settings, run_dir, lambda p: generate_hf(model, tok, p, cfg)),
    }


def run_sft(settings: dict, run_dir: Path, model_path: str, log) -> dict:
    from ..hf import load_causal_lm
    from .sft import prepare_trainable, save_trainable, settings_dict, train_sft

    cfg, ev_cfg = sft_config(settings), EvalConfig.from_dict(settings["eval"])
    model, tok = load_causal_lm(model_path, dtype=cfg.dtype, device=_device()), _tokenizer(model_path)
    trainable = prepare_trainable(model, cfg)
    n_trainable = trainable.num_trainable
    log(f"sft: {trainable.kind}, {n_trainable} trainable parameters, lr {cfg.lr}, seed {cfg.seed}")
    val_rows = read_rows(settings["data"]["val"])
    train = train_sft(
        trainable,
        tok,
        read_rows(settings["data"]["train"]),
        cfg,
        val_rows=val_rows,
        metrics_path=run_dir / "sft_metrics.jsonl",
        log=log,
        # early stopping scores validation accuracy as the final evaluation does (HF, in memory)
        val_score=lambda m=trainable.model: accuracy_on(val_rows, lambda p: generate_hf(m, tok, p, ev_cfg)),
    )
    train["config"] = settings_dict(cfg)  # every SFT setting, defaults included
    saved = save_trainable(trainable, run_dir, tokenizer=tok)
    log(f"sft: saved {saved}")
    update = _sft_update(trainable, model_path, cfg.dtype)  # LoRA: merged into the model from here on
    out = {"trainable_params": n_trainable, "train": train, "update": update}
    if ev_cfg.resolved_backend() == "hf":
        hf_model = trainable.model
        return {**out, "eval": _eval(settings, run_dir, lambda p: generate_hf(hf_model, tok, p, ev_cfg))}
    with tempfile.TemporaryDirectory(prefix="tinylora-servable-") as tmp:
        if trainable.kind == "tinylora":  # vLLM serves plain weights: merge the adapter into a copy
            served = _export_merged(trainable.handle, model_path, tmp)
        elif trainable.kind == "lora":
            trainable.model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            served = tmp
        else:
            served = str(saved)
        del trainable, model
        _release()
        return {**out, "eval": _eval(settings, run_dir, lambda p: generate_vllm(served, p, ev_cfg))}


def _sft_update(trainable, model_path: str, dtype: str) -> dict:
    """update_size of an SFT run's effective weights; a LoRA is merged into trainable.model (same outputs,
    the base model's parameter names). TinyLoRA's base weights are still in memory, untouched; LoRA and
    full fine-tuning change them, so those are read again from the model path."""
    from .update_size import base_weights, update_size

    if trainable.kind == "tinylora":
        handle = trainable.handle
        return update_size(handle.base_state_dict(), handle.base_state_dict(merged=True))
    if trainable.kind == "lora":
        trainable.model = trainable.model.merge_and_unload()
    return update_size(base_weights(model_path, dtype), trainable.model.state_dict())


def run_rl(settings: dict, run_dir: Path, model_path: str, log) -> dict:
    from .. import load_adapter
    from ..hf import load_causal_lm
    from . import rl

    cmd = rl.command(settings, run_dir, model_path=model_path)
    log("rl: " + " ".join(cmd))
    train_log = run_dir / "train.log"
    with open(train_log, "a") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(
            f"verl training exited with status {rc}; last lines of {train_log}:\n"
            + records.log_tail(train_log, 1500)
        )
    from .update_size import base_weights, update_size

    tok, cfg = _tokenizer(model_path), EvalConfig.from_dict(settings["eval"])
    vllm = cfg.resolved_backend() == "vllm"
    result = {"train": rl.train_metrics(run_dir)}
    if settings["kind"] == "tinylora":
        adapter = rl.final_adapter(run_dir)
        handle = load_adapter(load_causal_lm(model_path, device="cpu" if vllm else _device()), adapter)
        result["trainable_params"] = handle.num_trainable
        # the frozen base weights are in memory, untouched: no second load
        result["update"] = update_size(handle.base_state_dict(), handle.base_state_dict(merged=True))
        log(f"rl: evaluating adapter {adapter} ({handle.num_trainable} parameters)")
        if not vllm:
            return {
                **result,
                "eval": _eval(settings, run_dir, lambda p: generate_hf(handle.model, tok, p, cfg)),
            }
        with tempfile.TemporaryDirectory(prefix="tinylora-servable-") as tmp:
            served = _export_merged(handle, model_path, tmp)
            del handle
            _release()
            return {**result, "eval": _eval(settings, run_dir, lambda p: generate_vllm(served, p, cfg))}
    # the update from the float32 FSDP checkpoint: verl's merged copy is bf16 (rl.py)
    actor = rl.last_actor_checkpoint(run_dir / rl.VERL_DIR)
    result["update"] = update_size(base_weights(model_path), rl.actor_weights(actor))
    merged = str(rl.merged_model_dir(run_dir, train_log))
    result["trainable_params"] = count_params(model_path, settings["kind"])
    if vllm:
        return {**result, "eval": _eval(settings, run_dir, lambda p: generate_vllm(merged, p, cfg))}
    model = load_causal_lm(merged, device=_device())
    return {**result, "eval": _eval(settings, run_dir, lambda p: generate_hf(model, tok, p, cfg))}


RUNNERS = {"base": run_base, "sft": run_sft, "rl": run_rl}


def execute(run_dir, log=print) -> dict:
    """Run RUN_DIR's settings and write RUN_DIR/result.json; returns the record (never raises for a
    failure of the run itself: that is recorded)."""
    from .rl import resolve_model
    from .tasks import TaskFiles

    run_dir = Path(run_dir).resolve()
    settings = records.read_settings(run_dir)
    if settings is None:
        raise MissingPath(f"{run_dir / records.RUN_FILE} is missing or unreadable: not a run directory")
    attempt = records.previous_attempts(run_dir) + 1
    start = time.time()
    try:
        model_path = resolve_model(settings["model"])
        settings["data_eval"] = TaskFiles(**settings["data"]).eval_sets()
        out = RUNNERS[settings["method"]](settings, run_dir, model_path, log)
        record = records.make_record(
            settings,
            "finished",
            attempt=attempt,
            wall_s=time.time() - start,
            trainable_params=out["trainable_params"],
            train=out["train"],
            eval_=out["eval"],
            update=out.get("update"),
        )
    except Exception as err:  # noqa: BLE001 - any failure of the run is its result
        log(traceback.format_exc())
        record = records.make_record(
            settings,
            "failed",
            attempt=attempt,
            wall_s=time.time() - start,
            error=f"{type(err).__name__}: {err}",
        )
    records.write_result(run_dir, record)
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tinylora_verl.experiments.run_one RUN_DIR", file=sys.stderr)
        return 2
    record = execute(argv[0], log=lambda msg: print(msg, flush=True))
    accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in record["eval"].items())
    print(
        f"run {record['name']}: {record['status']} in {record['wall_s']:.0f} s"
        + (f"; {accs}" if accs else "")
        + (f"; {record['error']}" if record["error"] else ""),
        flush=True,
    )
    return 0 if record["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
