"""One GRPO step of the CPU demo, side by side: TinyLoRA (full and vector sync), verl LoRA r=1, verl full
fine-tune, and TRL's GRPOTrainer with peft's TinyLoRA; phase by phase, with the training process's peak memory.

    python bench/grpo_step.py                       # all five, 4 steps each (~20-30 min on 2 cores)
    python bench/grpo_step.py --steps 3 --configs tinylora-full,verl-full-ft --out /tmp/grpo-step

Every configuration runs the CPU demo's GRPO step (config/cpu_demo.yaml): SmolLM2-135M-Instruct, the
single-digit multiplication task (tinylora_verl/data/arithmetic.py), 16 prompts x n=4 = 64 samples per
step, responses cut at 16 tokens, T=0.7, the exact-match reward of reward_fns/arithmetic.py, one
optimizer step per GRPO step over micro-batches of 8. The configurations, one after another, each in its
own process:

- tinylora-full    the demo (13-parameter TinyLoRA), `tinylora.sync_mode=full`
- tinylora-vector  the same, `tinylora.sync_mode=vector`
- verl-lora-r1     `tinylora.enable=false actor_rollout_ref.model.lora_rank=1 lora_alpha=2
                   target_modules=all-linear actor_rollout_ref.actor.optim.lr=1e-5`: verl's own LoRA, which
                   verl serves to vLLM as a LoRA adapter (vLLM's `enable_lora`)
- verl-full-ft     `tinylora.enable=false actor_rollout_ref.actor.optim.lr=1e-6`: every weight trained
- trl-peft-tinylora  TRL's GRPOTrainer (HF `generate`, no vLLM) on the same model with peft's
                   TinyLoraConfig built as bench/adapter.py's "peft-tinylora" (r=2, u=1, 13 tied groups
                   over the 210 projections), the same prompts and reward, num_generations=4, 64 samples per
                   step, micro-batches of 8 with 8 accumulation steps (one optimizer step per generation
                   batch, as verl's ppo_mini_batch_size=16 does), max_completion_length=16, T=0.7, lr 3e-2,
                   beta=0 (no reference model, as the demo's use_kl_loss=false), clip 0.2/0.4, no gradient
                   checkpointing (the demo uses none), in the demo's precision (bf16: float32 weights
                   with bf16 autocast, TRL's `bf16=True`). Needs the optional `bench` extra (trl).

verl runs: `python -m tinylora_verl.main <overrides> trainer.total_training_steps=N
trainer.val_before_train=false trainer.test_freq=-1 trainer.save_freq=-1 trainer.default_local_dir=<fresh
dir>`; each run starts its own local Ray instance as the trainer always does (RAY_ADDRESS is removed from
its environment so it never joins a cluster it finds). Phase times are verl's `timing_s/*`, read from
`<run>/tinylora_metrics.jsonl` (t_step, t_gen, t_old_logprob, t_ref, t_update, t_sync). Peak memory is the
VmHWM (/proc/<pid>/status, the kernel's high-water mark of resident memory) of the Ray actor holding the
FSDP model: the descendant of the run's process whose title starts with `ray::WorkerDict` (verl's fused
actor/rollout/ref worker), read every 0.5 s while the run is alive (VmHWM only grows; the last reading
before the process exits is its peak, up to 0.5 s of growth).

TRL run: this script with `--trl-child` in a fresh interpreter. Its phases are timed by wrapping the
trainer instance's methods: generation = `_generate_single_turn` (HF `generate` of the 64 completions);
old log-prob / reference = `_get_per_token_logps_and_entropies` called with gradients off (TRL skips the
old-log-prob pass when one optimizer step follows each generation batch, so it is 0 here, and beta=0
means no reference pass); update = each `training_step` minus the `_prepare_inputs` inside it (which is
generation, reward and scoring), plus `optimizer.step()` (the callback events on_pre_optimizer_step ->
on_optimizer_step); step = from one on_step_end to the next (the first from on_train_begin). There is no
weight sync (generation uses the training model). Its peak memory is the child's own VmHWM at exit.

Reported per configuration: medians over the steady steps (step 1 dropped), per phase; "other" = step -
(generation + old log-prob + reference + update + sync), per step, then the median. TinyLoRA's step also
holds its sync diagnostics and the fixed-probe KL pass (tinylora.probe_sequences=4, on in the demo), both in
"other" (the probe's own seconds are in the JSON as probe_s). Ratios are step time / TinyLoRA full's step
time; the goals (TinyLoRA step <= 0.6 x verl full FT, <= 0.8 x verl LoRA r=1, <= 0.5 x TRL+peft TinyLoRA)
are checked and printed as met / not met. On a shared machine Ray's memory monitor may kill a run's workers
(verl then waits on them forever): such a run is stopped, with its own Ray instance, and rerun (`--retries`); a run whose vLLM worker raised
(vLLM's "Worker failed with error") hangs the same way and is stopped, not rerun. A configuration that fails is reported with the last error of
its log and left out of the table; no figure is filled in for it.

Framework output goes to `<out>/<config>/run-*.console.log` (and verl's own `<run>/tinylora_train.log`); the
console shows one line per configuration start and finish, then the table. `--out DIR` also writes
`DIR/grpo_step.json` with every per-step row and figure. Timings on a shared machine are inflated by
whatever else runs; the runs are sequential, so a busy spell hits one configuration more than another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tinylora_verl and bench

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "tinylora-full"
TRL = "trl-peft-tinylora"
VERL_CONFIGS = {
    "tinylora-full": ["tinylora.sync_mode=full"],
    "tinylora-vector": ["tinylora.sync_mode=vector"],
    "verl-lora-r1": [
        "tinylora.enable=false",
        "actor_rollout_ref.model.lora_rank=1",
        "actor_rollout_ref.model.lora_alpha=2",
        "actor_rollout_ref.model.target_modules=all-linear",
        "actor_rollout_ref.actor.optim.lr=1e-5",
    ],
    "verl-full-ft": ["tinylora.enable=false", "actor_rollout_ref.actor.optim.lr=1e-6"],
}
CONFIGS = (*VERL_CONFIGS, TRL)
SHORT_RUN = ["trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_freq=-1"]
# (label, metrics key); the order of the table's columns
PHASES = (
    ("gen", "t_gen"),
    ("old_logprob", "t_old_logprob"),
    ("ref", "t_ref"),
    ("update", "t_update"),
    ("sync", "t_sync"),
)
# goals: TinyLoRA's step time / the other's step time must be at most this
GOALS = {"verl-full-ft": 0.6, "verl-lora-r1": 0.8, TRL: 0.5}
WORKER_TITLE = "ray::WorkerDict"
METRICS = "tinylora_metrics.jsonl"


def log(msg: str) -> None:
    print(msg, flush=True)


# ---- parsing and summarising (pure; tests/bench/test_bench_grpo_step.py) ------------------------------
def vm_hwm_bytes(status_text: str) -> int | None:
    """VmHWM of a /proc/<pid>/status text, in bytes (None if absent, as for a kernel thread)."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmHWM unit {unit!r}")
            return int(value) * 1024
    return None


def read_rows(path: Path) -> list[dict]:
    """The per-step rows of a tinylora_metrics.jsonl (or the TRL child's file of the same shape)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _num(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    value = float(value)
    return None if value != value else value  # NaN = not measured


def summarise(rows: list[dict], drop_first: int = 1) -> dict:
    """Medians over the steady steps: {phase: seconds or None (the phase never ran), 'other', 'step',
    'steps' (how many were used)}. 'other' = step - the named phases, per step, then the median."""
    steady = rows[drop_first:]
    if not steady:
        raise ValueError(f"no steady steps: {len(rows)} step(s) measured, {drop_first} dropped")
    out: dict = {"steps": len(steady)}
    for label, key in PHASES:
        values = [_num(r, key) for r in steady]
        out[label] = None if all(v is None for v in values) else statistics.median(v or 0.0 for v in values)
    others = []
    for r in steady:
        step = _num(r, "t_step")
        if step is None:
            raise ValueError(f"a step row has no t_step: {r}")
        others.append(step - sum(_num(r, key) or 0.0 for _, key in PHASES))
    out["other"] = statistics.median(others)
    out["step"] = statistics.median(_num(r, "t_step") for r in steady)
    probe = [_num(r, "probe_s") for r in steady]
    out["probe_s"] = None if all(p is None for p in probe) else statistics.median(p or 0.0 for p in probe)
    return out


def ratios_and_goals(summaries: dict[str, dict]) -> tuple[dict[str, float], list[dict]]:
    """Each configuration's step time / TinyLoRA full's; the goals for each TinyLoRA mode measured."""
    ratios: dict[str, float] = {}
    goals: list[dict] = []
    if REFERENCE in summaries:
        ref = summaries[REFERENCE]["step"]
        ratios = {name: s["step"] / ref for name, s in summaries.items()}
    for mine in ("tinylora-full", "tinylora-vector"):
        if mine not in summaries:
            continue
        for other, limit in GOALS.items():
            if other not in summaries:
                continue
            value = summaries[mine]["step"] / summaries[other]["step"]
            goals.append(
                {"tinylora": mine, "vs": other, "ratio": value, "limit": limit, "met": value <= limit}
            )
    return ratios, goals


def _fmt(value, spec: str = "{:.1f}") -> str:
    return "-" if value is None else spec.format(value)


def table(summaries: dict[str, dict], peaks: dict[str, int | None], ratios: dict[str, float]) -> str:
    head = ["config", "steps", "gen s", "old logp s", "ref s", "update s", "sync s", "other s", "step s"]
    head += ["peak RSS GB", f"step / {REFERENCE}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        peak = peaks.get(name)
        cells = [name, str(s["steps"])]
        cells += [_fmt(s[label], "{:.2f}" if label == "sync" else "{:.1f}") for label, _ in PHASES]
        cells += [_fmt(s["other"]), _fmt(s["step"]), _fmt(peak / 1e9 if peak else None, "{:.2f}")]
        cells += [_fmt(ratios.get(name), "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_lines(goals: list[dict]) -> list[str]:
    return [
        f"{g['tinylora']} step / {g['vs']} step = {g['ratio']:.2f} (goal <= {g['limit']}): "
        + ("met" if g["met"] else "not met")
        for g in goals
    ]


# ---- the training process's peak memory ----------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class PeakPoller(threading.Thread):
    """Polls the VmHWM of `root`'s descendants whose title starts with `title` (or of `root` itself when
    title is None) until stopped; `peaks` = {pid: (bytes, title)}."""

    def __init__(self, root: int, title: str | None, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.title, self.interval = root, title, interval
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop_event = threading.Event()

    def poll_once(self) -> None:
        pids = [self.root] if self.title is None else descendants(self.root)
        for pid in pids:
            cmd = _cmdline(pid)
            if self.title is not None and not cmd.startswith(self.title):
                continue
            try:
                hwm = vm_hwm_bytes(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                continue
            if hwm is not None and hwm >= self.peaks.get(pid, (0, ""))[0]:
                self.peaks[pid] = (hwm, cmd)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll_once()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak(self) -> int | None:
        return max((b for b, _ in self.peaks.values()), default=None)


# ---- running one configuration ------------------------------------------------------------------------
def last_error(log_file: Path) -> str:
    """The last line of the log that names an exception (for a failed run's report)."""
    if not log_file.exists():
        return "no log"
    hits = [
        ln.strip()
        for ln in log_file.read_text(errors="replace").splitlines()
        if ("Error" in ln or "Exception" in ln)
        and not ln.lstrip().startswith(("File ", "warnings.warn"))
        and "Warning" not in ln
    ]
    return hits[-1][:400] if hits else "no error line in the log"


OOM_KILLED = "due to memory pressure (OOM)"  # Ray's memory monitor killed workers: verl waits forever on them
ENGINE_FAILED = (
    "Worker failed with error"  # vLLM's EngineCore, when a worker's RPC raised: verl waits forever
)


def hang_reason(log_file: Path) -> str | None:
    """Why a run will never finish, read from its log once: Ray's OOM kills, or a vLLM worker that raised."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return None
    if OOM_KILLED in text:
        return "Ray's OOM killer killed workers"
    if ENGINE_FAILED in text:
        return "vLLM's engine failed"
    return None


def rollout_engine_failed(log_file: Path) -> bool:
    """Whether a vLLM worker raised (a failed weight load, say); verl then waits forever on the engine."""
    return hang_reason(log_file) == "vLLM's engine failed"


def oom_failure(res: dict) -> bool:
    """A run lost to memory pressure on the machine: hung on killed workers, or failed with Ray's OOM error."""
    return res.get("rc") == "Ray's OOM killer killed workers" or any(
        marker in res.get("error", "") for marker in ("OutOfMemoryError", "running low on memory")
    )


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop a run and everything it started (its own Ray instance included), by pid."""
    pids = descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def run_config(name: str, steps: int, out_dir: Path, timeout: float) -> dict:
    conf_dir = out_dir / name
    conf_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=conf_dir))  # fresh: nothing to resume
    console = conf_dir / f"{run_dir.name}.console.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    if name == TRL:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--trl-child", "--steps", str(steps)]
        cmd += ["--run-dir", str(run_dir)]
        title = None
    else:
        cmd = [sys.executable, "-m", "tinylora_verl.main", *VERL_CONFIGS[name]]
        cmd += [f"trainer.total_training_steps={steps}", *SHORT_RUN, f"trainer.default_local_dir={run_dir}"]
        title = WORKER_TITLE
    start = time.perf_counter()
    with console.open("w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        poller = PeakPoller(proc.pid, title)
        poller.start()
        rc = None
        try:
            while rc is None:
                try:
                    rc = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    if time.perf_counter() - start > timeout:
                        rc = f"timeout after {timeout:.0f} s"
                    elif reason := hang_reason(run_dir / "tinylora_train.log"):  # one read per poll
                        rc = reason
            if not isinstance(rc, int):
                stop_tree(proc)
        finally:
            poller.stop()
    wall = time.perf_counter() - start
    rows = read_rows(run_dir / METRICS)
    result = {
        "command": " ".join(cmd),
        "run_dir": str(run_dir),
        "console_log": str(console),
        "rc": rc,
        "wall_s": wall,
        "rows": rows,
        "peak_rss_bytes": poller.peak(),
        "peak_processes": {
            str(pid): {"vmhwm_bytes": b, "title": t[:120]} for pid, (b, t) in poller.peaks.items()
        },
    }
    if name == TRL and (run_dir / "vmhwm.json").exists():  # the child's own reading at exit
        result["peak_rss_bytes"] = json.loads((run_dir / "vmhwm.json").read_text())["vmhwm_bytes"]
    if rc != 0 or len(rows) < steps:
        result["error"] = last_error(console if name == TRL else run_dir / "tinylora_train.log")
        if result["error"] == "no log" or result["error"] == "no error line in the log":
            result["error"] = last_error(console)
    return result


# ---- the TRL child ------------------------------------------------------------------------------------
def _arithmetic_dataset():
    import pandas as pd
    from datasets import Dataset
    from omegaconf import OmegaConf

    from tinylora_verl.data.arithmetic import ensure_dataset

    task = OmegaConf.load(ROOT / "config" / "cpu_demo.yaml").task
    directory = Path.home() / ".cache" / "tinylora_verl" / f"arithmetic_{task.op}_{task.style}"
    ensure_dataset(
        directory, op=task.op, n_train=task.n_train, n_val=task.n_val, seed=task.seed, style=task.style
    )
    df = pd.read_parquet(directory / "train.parquet")
    return Dataset.from_list(
        [
            {
                "prompt": [dict(m) for m in row.prompt],
                "ground_truth": str(row.reward_model["ground_truth"]),
                "data_source": row.data_source,
                "extra_info": dict(row.extra_info),
            }
            for row in df.itertuples()
        ]
    )


def arithmetic_reward(prompts, completions, ground_truth, data_source, extra_info, **kwargs) -> list[float]:
    """reward_fns/arithmetic.py's compute_score on each completion (TRL's reward-function signature)."""
    from reward_fns.arithmetic import compute_score

    out = []
    for completion, gt, source, info in zip(completions, ground_truth, data_source, extra_info):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        out.append(compute_score(source, text, gt, info))
    return out


def trl_child(steps: int, run_dir: Path) -> None:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bench.workloads import our_plan, peft_tinylora_config
    from tinylora_verl.config_compose import compose
    from tinylora_verl.smollm2 import ensure_smollm2

    demo = compose("cpu_demo", ["actor_rollout_ref.model.path=unused"])
    # the demo's precision: bf16 = float32 masters with bf16 autocast (as FSDP2's mixed precision computes)
    bf16 = demo.actor_rollout_ref.rollout.dtype == "bfloat16"
    path = ensure_smollm2()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    plan = our_plan(model)
    # peft's init is an exact SVD per module: one thread (bench/adapter.py, "Threads": on a shared CPU, spinning
    # OpenMP threads made a 576x576 SVD 20x slower); it is set-up, not part of the step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = get_peft_model(
        model, peft_tinylora_config(len(plan.modules), plan.num_groups, plan.projection_dim)
    )
    torch.set_num_threads(threads)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"peft TinyLoRA: {trainable} trainable parameters, {plan.num_groups} groups, "
        f"{'bf16 autocast' if bf16 else 'float32'}",
        flush=True,
    )

    prompts = int(demo.data.train_batch_size)
    n = int(demo.actor_rollout_ref.rollout.n)
    micro = int(demo.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu)
    accum = prompts * n // micro
    args = GRPOConfig(
        output_dir=str(run_dir / "trl"),
        max_steps=steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        steps_per_generation=accum,  # one generation batch of prompts x n per optimizer step
        num_generations=n,
        max_completion_length=int(demo.data.max_response_length),
        temperature=float(demo.actor_rollout_ref.rollout.temperature),
        learning_rate=float(demo.actor_rollout_ref.actor.optim.lr),
        weight_decay=0.0,
        lr_scheduler_type="constant",
        beta=0.0,
        epsilon=float(demo.actor_rollout_ref.actor.clip_ratio_low),
        epsilon_high=float(demo.actor_rollout_ref.actor.clip_ratio_high),
        gradient_checkpointing=False,
        use_vllm=False,
        use_cpu=True,
        bf16=bf16,
        fp16=False,
        shuffle_dataset=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
    )

    # seconds per phase in the current step; None = the phase did not run (shown as "-", not 0)
    times: dict[str, float | None] = dict.fromkeys(("t_gen", "t_old_logprob", "t_ref", "t_update"))
    depth = {"prepare": 0.0}

    def add(key: str, seconds: float) -> None:
        times[key] = (times[key] or 0.0) + seconds

    class PhaseClock(TrainerCallback):
        def __init__(self):
            self.last = None
            self.opt_start = None

        def on_train_begin(self, args, state, control, **kw):
            self.last = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            self.opt_start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            add("t_update", time.perf_counter() - self.opt_start)

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            row = {"step": state.global_step, "t_step": now - self.last, "t_sync": None, **times}
            self.last = now
            with (run_dir / METRICS).open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"[trl] step {row['step']}: " + json.dumps(row), flush=True)
            for k in times:
                times[k] = None

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=arithmetic_reward,
        args=args,
        train_dataset=_arithmetic_dataset(),
        processing_class=tokenizer,
        callbacks=[PhaseClock()],
    )

    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                add(key, time.perf_counter() - t0)

        return wrapper

    logps = trainer._get_per_token_logps_and_entropies
    prepare = trainer._prepare_inputs
    training_step = trainer.training_step

    def logps_wrapper(model_arg, *a, **k):
        if torch.is_grad_enabled():  # the update's own forward: inside training_step, timed there
            return logps(model_arg, *a, **k)
        key = "t_ref" if model_arg is trainer.ref_model and model_arg is not None else "t_old_logprob"
        return timed(logps, key)(model_arg, *a, **k)

    def prepare_wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return prepare(*a, **k)
        finally:
            depth["prepare"] += time.perf_counter() - t0

    def training_step_wrapper(*a, **k):
        depth["prepare"] = 0.0
        t0 = time.perf_counter()
        out = training_step(*a, **k)
        add("t_update", time.perf_counter() - t0 - depth["prepare"])
        return out

    trainer._generate_single_turn = timed(trainer._generate_single_turn, "t_gen")
    trainer._get_per_token_logps_and_entropies = logps_wrapper
    trainer._prepare_inputs = prepare_wrapper
    trainer.training_step = training_step_wrapper
    trainer.train()
    hwm = vm_hwm_bytes(Path("/proc/self/status").read_text())
    (run_dir / "vmhwm.json").write_text(json.dumps({"vmhwm_bytes": hwm}))


# ---- the report ---------------------------------------------------------------------------------------
def report(results: dict[str, dict], steps: int, out_dir: Path | None, final: bool) -> None:
    """Print the table and goals (final) and write out_dir/grpo_step.json (every time it is given)."""
    summaries = {n: summarise(r["rows"]) for n, r in results.items() if "error" not in r}
    peaks = {n: results[n]["peak_rss_bytes"] for n in summaries}
    ratios, goals = ratios_and_goals(summaries)
    if final:
        log("")
        log(
            f"medians over steps 2..{steps} (step 1 dropped); seconds; peak RSS = VmHWM of the training process"
        )
        log(table(summaries, peaks, ratios))
        for n, s in summaries.items():
            if s.get("probe_s") is not None:
                log(f"{n}: the fixed-probe KL pass (in 'other') took {s['probe_s']:.1f} s per step")
        for line in goal_lines(goals):
            log(line)
        for n, r in results.items():
            if "error" in r:
                log(f"{n}: no row ({r['error']})")
    if out_dir is not None:
        doc = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "complete": final,
            "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "steps": steps,
            "results": results,
            "summaries": summaries,
            "peak_rss_bytes": peaks,
            "ratios_to_tinylora_full": ratios,
            "goals": goals,
        }
        (out_dir / "grpo_step.json").write_text(json.dumps(doc, indent=2, default=str))
        if final:
            log(f"wrote {out_dir / 'grpo_step.json'}")


# ---- main ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--steps", type=int, default=4, help="GRPO steps per configuration (the first is dropped)"
    )
    ap.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}"
    )
    ap.add_argument("--out", type=Path, default=None, help="write DIR/grpo_step.json (logs go there too)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument(
        "--retries", type=int, default=2, help="reruns of a configuration whose Ray workers were OOM-killed"
    )
    ap.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="print the table from grpo_step.json files of earlier runs instead of running (a configuration "
        "measured in several: the last successful one)",
    )
    ap.add_argument("--trl-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.report:
        results: dict[str, dict] = {}
        steps = set()
        for path in a.report:
            doc = json.loads(path.read_text())
            steps.add(doc["steps"])
            for name, res in doc["results"].items():
                if "error" not in res or name not in results:
                    results[name] = res
        log(f"from {', '.join(str(p) for p in a.report)}")
        report(results, max(steps), None, final=True)
        return 0
    if a.trl_child:
        trl_child(a.steps, a.run_dir)
        return 0
    if a.steps < 2:
        ap.error("--steps must be at least 2 (the first step is dropped)")
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    out_dir = a.out or Path(tempfile.mkdtemp(prefix="grpo_step-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"grpo_step: {a.steps} steps per config, logs under {out_dir}")

    results: dict[str, dict] = {}
    for name in names:
        if name == TRL:
            import importlib.util

            if importlib.util.find_spec("trl") is None:
                results[name] = {"error": "trl is not installed (pip install -e '.[bench]')"}
                log(f"[{name}] skipped: {results[name]['error']}")
                continue
        log(f"[{name}] start {time.strftime('%H:%M:%S')}")
        res = run_config(name, a.steps, out_dir, a.timeout)
        for attempt in range(a.retries):
            if "error" not in res or not oom_failure(res):
                break
            log(
                f"[{name}] Ray's OOM killer killed workers (memory pressure on the machine); retry {attempt + 1}"
            )
            res = run_config(name, a.steps, out_dir, a.timeout)
        results[name] = res
        if "error" in res:
            log(
                f"[{name}] FAILED rc={res['rc']} after {res['wall_s']:.0f} s, {len(res['rows'])} step(s): {res['error']}"
            )
        else:
            log(f"[{name}] done in {res['wall_s']:.0f} s, {len(res['rows'])} steps")
        if a.out:  # after every configuration, so a cut-short run keeps what it measured
            report(results, a.steps, out_dir, final=False)

    report(results, a.steps, out_dir if a.out else None, final=True)
    return 0 if not any("error" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
