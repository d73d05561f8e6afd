"""Execute one run of a sweep and write its result record: `python -m tinylora_verl.experiments.run_one RUN_DIR`.

Reads RUN_DIR/run.json (spec.run_settings) and, by method:
- base: load the model, evaluate it;
- sft:  load the model, make the adapter's parameters trainable (sft.py), train, save the adapter (or
        LoRA / model), evaluate the trained model (the same object, no reload);
- rl:   run the Hydra entry point (rl.py) as a child process (its output in RUN_DIR/train.log), then load
        the base model + the final adapter (TinyLoRA) or verl's merged checkpoint (lora / full), evaluate.
Evaluation: evaluate.py on the validation set and every test set. The record (records.py) is written
once, whatever happens: "finished" with metrics, or "failed" with the error. This is the entrypoint of
both sweep backends (a local child process, or a Ray job) and of `tinylora-verl sft`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import records
from .evaluate import EvalConfig, evaluate_model
from .spec import sft_config
from .tasks import read_rows

EVAL_DIR = "eval"


def _tokenizer(model_path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_path)


def _merged_dir(handle, model_path: str):
    """A context manager yielding a temporary HF directory with the adapter merged (for vLLM)."""
    @contextlib.contextmanager
    def make():
        from ..adapter.export import export_merged
        with tempfile.TemporaryDirectory(prefix="tinylora-merged-") as tmp:
            export_merged(handle, tmp, tokenizer_dir=model_path if Path(model_path).is_dir() else None)
            yield tmp
    return make


def _fixed_dir(path: str):
    return lambda: contextlib.nullcontext(str(path))


def _peft_merged_dir(peft_model, tokenizer):
    @contextlib.contextmanager
    def make():
        with tempfile.TemporaryDirectory(prefix="tinylora-lora-merged-") as tmp:
            peft_model.merge_and_unload().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            yield tmp
    return make


def count_params(model_path: str, kind: str, lora_rank: int = 1) -> int:
    """Trainable parameters of verl's full fine-tune / rank-r 'all-linear' LoRA, from the config alone."""
    from torch import nn

    from ..hf import load_on_meta
    model = load_on_meta(model_path)
    if kind == "full":
        return sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    return sum(lora_rank * (m.in_features + m.out_features) for m in model.modules()
               if isinstance(m, nn.Linear) and m is not head)


def run_base(settings: dict, run_dir: Path, model_path: str, log) -> dict:
    from ..hf import load_causal_lm
    model, tok = load_causal_lm(model_path), _tokenizer(model_path)
    ev = evaluate_model(model, tok, settings["data_eval"], EvalConfig.from_dict(settings["eval"]),
                        run_dir / EVAL_DIR, _fixed_dir(model_path))
    return {"trainable_params": 0, "train": {}, "eval": ev}


def run_sft(settings: dict, run_dir: Path, model_path: str, log) -> dict:
    from ..hf import load_causal_lm
    from .sft import prepare_trainable, save_trainable, train_sft
    cfg = sft_config(settings)
    model, tok = load_causal_lm(model_path), _tokenizer(model_path)
    trainable = prepare_trainable(model, cfg)
    log(f"sft: {trainable.kind}, {trainable.num_trainable} trainable parameters, lr {cfg.lr}, seed {cfg.seed}")
    train = train_sft(trainable, tok, read_rows(settings["data"]["train"]), cfg,
                      val_rows=read_rows(settings["data"]["val"]), metrics_path=run_dir / "sft_metrics.jsonl", log=log)
    saved = save_trainable(trainable, run_dir, tokenizer=tok)
    log(f"sft: saved {saved}")
    model_dir_fn = {"tinylora": lambda: _merged_dir(trainable.handle, model_path),
                    "lora": lambda: _peft_merged_dir(trainable.model, tok),
                    "full": lambda: _fixed_dir(saved)}[trainable.kind]()
    ev = evaluate_model(trainable.model, tok, settings["data_eval"], EvalConfig.from_dict(settings["eval"]),
                        run_dir / EVAL_DIR, model_dir_fn)
    return {"trainable_params": trainable.num_trainable, "train": train, "eval": ev}


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
        raise RuntimeError(f"verl training exited with status {rc}; last lines of {train_log}:\n"
                           + records.log_tail(train_log, 1500))
    tok, cfg = _tokenizer(model_path), EvalConfig.from_dict(settings["eval"])
    if settings["kind"] == "tinylora":
        adapter = rl.final_adapter(run_dir)
        handle = load_adapter(load_causal_lm(model_path), adapter)
        log(f"rl: evaluating adapter {adapter} ({handle.num_trainable} parameters)")
        ev = evaluate_model(handle.model, tok, settings["data_eval"], cfg, run_dir / EVAL_DIR,
                            _merged_dir(handle, model_path))
        trainable = handle.num_trainable
    else:
        merged = rl.merged_model_dir(run_dir, train_log)
        ev = evaluate_model(load_causal_lm(str(merged)), tok, settings["data_eval"], cfg, run_dir / EVAL_DIR,
                            _fixed_dir(merged))
        trainable = count_params(model_path, settings["kind"])
    return {"trainable_params": trainable, "train": rl.train_metrics(run_dir), "eval": ev}


RUNNERS = {"base": run_base, "sft": run_sft, "rl": run_rl}


def execute(run_dir, log=print) -> dict:
    """Run RUN_DIR's settings and write RUN_DIR/result.json; returns the record (never raises for a
    failure of the run itself: that is recorded)."""
    from .rl import resolve_model
    from .tasks import TaskFiles
    run_dir = Path(run_dir).resolve()
    settings = records.read_settings(run_dir)
    if settings is None:
        raise FileNotFoundError(f"{run_dir / records.RUN_FILE} is missing or unreadable: not a run directory")
    attempt = records.previous_attempts(run_dir) + 1
    start = time.time()
    try:
        model_path = resolve_model(settings["model"])
        settings["data_eval"] = TaskFiles(**settings["data"]).eval_sets()
        out = RUNNERS[settings["method"]](settings, run_dir, model_path, log)
        record = records.make_record(settings, "finished", attempt=attempt, wall_s=time.time() - start,
                                     trainable_params=out["trainable_params"], train=out["train"], eval_=out["eval"])
    except Exception as err:  # noqa: BLE001 - any failure of the run is its result
        log(traceback.format_exc())
        record = records.make_record(settings, "failed", attempt=attempt, wall_s=time.time() - start,
                                     error=f"{type(err).__name__}: {err}")
    records.write_result(run_dir, record)
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tinylora_verl.experiments.run_one RUN_DIR", file=sys.stderr)
        return 2
    record = execute(argv[0], log=lambda msg: print(msg, flush=True))
    accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in record["eval"].items())
    print(f"run {record['name']}: {record['status']} in {record['wall_s']:.0f} s" + (f"; {accs}" if accs else "")
          + (f"; {record['error']}" if record["error"] else ""), flush=True)
    return 0 if record["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
