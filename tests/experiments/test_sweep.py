"""`tinylora-verl sweep`: spec validation, dry run, resume (skip finished / retry failed), failure records,
the Ray Jobs backend against a fake client (against a real cluster: tests/launch/test_real_ray.py), and a
real local sweep of two SFT runs on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_SFT_SWEEP_ARGS
from tinylora_verl.cli import main
from tinylora_verl.experiments import records
from tinylora_verl.experiments.backends import LocalBackend, PendingRun, RayJobsBackend
from tinylora_verl.experiments.spec import PAPER_LRS, Run, expand, validate
from tinylora_verl.experiments.sweep import plan, run_sweep

TASK = {"kind": "arithmetic", "op": "add", "n_train": 8, "n_val": 4, "n_test": 4}


def _spec(**kw) -> dict:
    return {
        "model": "/models/m",
        "task": TASK,
        "methods": ["sft"],
        "budgets": [1],
        "lrs": [0.01, 0.1],
        "seeds": [0],
        "base_eval": False,
        **kw,
    }


def test_defaults_are_the_papers_grid_and_names_are_deterministic():
    spec = validate({"model": "m", "task": TASK})
    assert (
        spec["lrs"] == PAPER_LRS
        and spec["seeds"] == [0, 1, 2]
        and spec["budgets"] == [1, 13, 120, 1000, 10000]
    )
    runs = expand({**spec, "baselines": ["lora", "full"]})
    assert len(runs) == 1 + 2 * (5 * 7 * 3 + 2 * 7 * 3)
    assert runs[0] == Run("base", "base")
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert (
        "rl-tinylora13-lr5e-07-s2" in names
        and "sft-lora1-lr0.0002-s0" in names
        and "rl-full-lr1e-07-s1" in names
    )


def test_each_baseline_can_have_its_own_learning_rates():
    spec = validate(
        _spec(methods=["rl"], baselines=["lora", "full"], baseline_lrs={"lora": [1e-4, 1e-3], "full": [1e-5]})
    )
    names = [r.name for r in expand(spec)]
    assert [n for n in names if "tinylora" not in n] == [
        "rl-lora1-lr0.0001-s0",
        "rl-lora1-lr0.001-s0",
        "rl-full-lr1e-05-s0",
    ]
    with pytest.raises(ValueError) as err:
        validate(_spec(baselines=["lora", "full"], baseline_lrs={"lora": [1e-4, -1], "dora": [1e-3]}))
    msg = str(err.value)
    for part in (
        "baseline_lrs.dora is not a baseline (valid: lora, full)",
        "baseline_lrs.lora: -1 is not a positive float",
        "baselines: 'full' has no learning rates; add baseline_lrs.full",
    ):
        assert part in msg, part


def test_a_label_names_a_variant_in_run_names_and_settings(tmp_path):
    from tinylora_verl.experiments.spec import run_settings

    spec = validate(_spec(label="matched", baselines=["full"], baseline_lrs=[1e-4]))
    runs = expand(spec)
    assert [r.name for r in runs] == [
        "sft-matched-tinylora1-lr0.01-s0",
        "sft-matched-tinylora1-lr0.1-s0",
        "sft-matched-full-lr0.0001-s0",
    ]
    assert run_settings(spec, runs[0], {})["label"] == "matched"
    plain = validate(_spec())
    assert "label" not in run_settings(plain, expand(plain)[0], {})  # older runs' settings unchanged
    # both variants in one OUT: neither sees the other's runs as changed settings
    plan(plain, tmp_path)
    for p in plan(spec, tmp_path) + plan(plain, tmp_path):
        records.write_settings(p.run_dir, p.settings)
    assert len(plan(spec, tmp_path)) == 3 and len(plan(plain, tmp_path)) == 2
    for bad in ("Matched", "a b", "", "x" * 33, 3):
        with pytest.raises(ValueError, match="label="):
            validate(_spec(label=bad))


def test_every_spec_mistake_is_reported_at_once():
    with pytest.raises(ValueError) as err:
        validate(
            {
                "model": "m",
                "task": {"kind": "arithmetic", "op": "div"},
                "budgets": [0, 13],
                "lrs": [],
                "methods": ["ppo"],
                "baselines": ["dora"],
                "sft": {"lr": 1.0},
                "colour": 1,
            }
        )
    msg = str(err.value)
    for part in (
        "unknown key 'colour'",
        "task.op='div'",
        "budgets: 0",
        "lrs must be a non-empty list",
        "'ppo' is not one of",
        "'dora' is not one of",
        "sft.lr is set per run",
    ):
        assert part in msg, part


def test_dry_run_lists_runs_and_commands_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "--out",
        str(out),
        "--model",
        "smollm2",
        "--arithmetic",
        "add",
        "--methods",
        "rl,sft",
        "--budgets",
        "1,13",
        "--lrs",
        "1e-5,1e-4",
        "--seeds",
        "0",
        "--baselines",
        "full",
        "--dry-run",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "13 runs; run 13" in text
    for name in ("base", "rl-tinylora13-lr1e-05-s0", "rl-full-lr0.0001-s0", "sft-tinylora1-lr0.0001-s0"):
        assert f"{name} " in text and f"{out.resolve()}/runs/{name}\n" in text
    assert "tinylora-verl train --config-name=cpu_demo" in text
    rl_line = next(line for line in text.splitlines() if "rl-tinylora13-lr1e-05-s0/verl" in line)
    assert "tinylora.budget=13" in rl_line and "actor_rollout_ref.actor.optim.lr=1e-05" in rl_line
    full_line = next(line for line in text.splitlines() if "rl-full-lr0.0001-s0/verl" in line)
    assert "tinylora.enable=false" in full_line and "lora_rank" not in full_line
    assert not out.exists()


class RecordingBackend:
    """Runs nothing; writes the record a run would (finished, or failed for the LRs in `fail`)."""

    name = "fake"

    def __init__(self, fail=(), val=None):
        self.fail, self.ran = set(fail), []
        self.val = val or (lambda settings: 0.5)  # the record's validation accuracy

    def describe(self, run):
        return run.name

    def run_all(self, runs, on_done):
        for run in runs:
            self.ran.append((run.name, run.attempt))
            settings = records.read_settings(run.run_dir)
            status = "failed" if settings["lr"] in self.fail else "finished"
            records.write_result(
                run.run_dir,
                records.make_record(
                    settings,
                    status,
                    attempt=run.attempt,
                    wall_s=1.0,
                    error="boom" if status == "failed" else None,
                    eval_={"val": {"accuracy": self.val(settings)}},
                ),
            )
            on_done(run)


def test_select_seeds_runs_the_grid_then_the_other_seeds_at_each_rows_best_lr(tmp_path):
    # val accuracy: LR 0.1 is best on seed 0 for TinyLoRA, 0.01 for the full fine-tune; seeds 1 and 2 score
    # LR 0.1 worse, which must not change the choice (it is made on the seed every LR has)
    def val(st):
        best = 0.1 if st["kind"] == "tinylora" else 0.01
        return 0.9 if st["lr"] == best and st["seed"] == 0 else (0.1 if st["lr"] == best else 0.5)

    spec = _spec(seeds=[0, 1, 2], select_seeds=[0], baselines=["full"], baseline_lrs=[0.01, 0.1])
    assert [r.name for r in expand(validate(spec))] == [
        "sft-tinylora1-lr0.01-s0",
        "sft-tinylora1-lr0.1-s0",
        "sft-full-lr0.01-s0",
        "sft-full-lr0.1-s0",
    ]
    lines: list[str] = []
    out = tmp_path / "s"
    run_sweep(spec, out, RecordingBackend(), dry_run=True, log=lines.append)
    assert "  + 4 runs of later seeds, planned once their row's LR grid has finished" in lines
    backend = RecordingBackend(val=val)
    run_sweep(spec, out, backend, log=lines.append)
    assert [n for n, _ in backend.ran] == [
        "sft-tinylora1-lr0.01-s0",
        "sft-tinylora1-lr0.1-s0",
        "sft-full-lr0.01-s0",
        "sft-full-lr0.1-s0",
        "sft-tinylora1-lr0.1-s1",
        "sft-tinylora1-lr0.1-s2",
        "sft-full-lr0.01-s1",
        "sft-full-lr0.01-s2",
    ]
    again = RecordingBackend(val=val)
    run_sweep(None, out, again, log=lambda m: None)  # resumed: the choice is the same, nothing to run
    assert again.ran == []


def test_a_row_whose_grid_is_not_finished_waits(tmp_path):
    spec = _spec(seeds=[0, 1], select_seeds=[0])
    lines: list[str] = []
    backend = RecordingBackend(fail={0.1})
    run_sweep(spec, tmp_path, backend, log=lines.append)
    assert [n for n, _ in backend.ran] == ["sft-tinylora1-lr0.01-s0", "sft-tinylora1-lr0.1-s0"]
    assert any("1 waiting for their row's LR grid" in line for line in lines)
    retry = RecordingBackend()
    run_sweep(None, tmp_path, retry, retry_failed=True, log=lines.append)  # tie on val: the smaller LR
    assert [n for n, _ in retry.ran] == ["sft-tinylora1-lr0.1-s0", "sft-tinylora1-lr0.01-s1"]
    with pytest.raises(ValueError, match=r"select_seeds: 3 is not in seeds \[0, 1\]"):
        validate(_spec(seeds=[0, 1], select_seeds=[3]))


def test_resume_skips_finished_retries_failed_on_request_and_refuses_changed_settings(tmp_path):
    out = tmp_path / "s"
    first = RecordingBackend(fail={0.1})
    summary = run_sweep(_spec(), out, first, log=lambda m: None)
    assert first.ran == [("sft-tinylora1-lr0.01-s0", 1), ("sft-tinylora1-lr0.1-s0", 1)]
    assert summary.results == {"sft-tinylora1-lr0.01-s0": "finished", "sft-tinylora1-lr0.1-s0": "failed"}
    again = RecordingBackend()
    run_sweep(None, out, again, log=lambda m: None)  # no spec: OUT/sweep.yaml is reused
    assert again.ran == []  # finished skipped, failed not retried
    retry = RecordingBackend()
    run_sweep(None, out, retry, retry_failed=True, log=lambda m: None)
    assert retry.ran == [("sft-tinylora1-lr0.1-s0", 2)]
    assert records.read_result(out / "runs" / "sft-tinylora1-lr0.1-s0")["attempt"] == 2
    grown = RecordingBackend()
    run_sweep(_spec(seeds=[0, 1]), out, grown, log=lambda m: None)  # a bigger grid runs only the new runs
    assert [n for n, _ in grown.ran] == ["sft-tinylora1-lr0.01-s1", "sft-tinylora1-lr0.1-s1"]
    with pytest.raises(ValueError, match=r"made with other settings: sft-tinylora1-lr0.01-s0 \(sft\)"):
        plan(validate(_spec(sft={"steps": 3})), out)


def test_a_run_that_dies_without_a_record_is_recorded_failed(tmp_path):
    out = tmp_path / "s"
    backend = LocalBackend(python="/bin/false")  # exits 1 before writing anything
    summary = run_sweep(_spec(lrs=[0.01]), out, backend, log=lambda m: None)
    rec = records.read_result(out / "runs" / "sft-tinylora1-lr0.01-s0")
    assert summary.results == {"sft-tinylora1-lr0.01-s0": "failed"}
    assert rec["status"] == "failed" and "exited with status 1" in rec["error"] and rec["attempt"] == 1
    assert rec["params"] == {
        "method": "sft",
        "kind": "tinylora",
        "budget": 1,
        "lr": 0.01,
        "seed": 0,
        "label": None,
    }


def test_a_run_that_raises_records_the_error(tmp_path):
    from tinylora_verl.experiments.run_one import execute

    run_sweep(_spec(lrs=[0.01]), tmp_path, RecordingBackend(), dry_run=True, log=lambda m: None)
    run_dir = tmp_path / "runs" / "sft-tinylora1-lr0.01-s0"
    settings = plan(validate(_spec(lrs=[0.01])), tmp_path)[0].settings
    records.write_settings(run_dir, settings)  # model /models/m does not exist
    rec = execute(run_dir, log=lambda m: None)
    assert rec["status"] == "failed" and "/models/m" in rec["error"]
    assert records.read_result(run_dir) == rec


class FakeJobClient:
    """JobSubmissionClient stand-in: jobs finish at once; a job 'writes' a finished record unless its run is
    in `no_record` (then it FAILED without one, as a crashed job would)."""

    def __init__(self, no_record=()):
        self.no_record, self.submitted, self.active, self.max_active = set(no_record), [], set(), 0
        self.crashed = set()

    def submit_job(self, **kw):
        self.submitted.append(kw)
        job = kw["submission_id"]
        self.active.add(job)
        self.max_active = max(self.max_active, len(self.active))
        run_dir = Path(kw["metadata"]["run_dir"])
        if kw["metadata"]["tinylora_run"] in self.no_record:
            self.crashed.add(job)
        else:
            settings = records.read_settings(run_dir)
            records.write_result(run_dir, records.make_record(settings, "finished", attempt=1, wall_s=2.0))
        return job

    def get_job_status(self, job):
        from ray.job_submission import JobStatus

        self.active.discard(job)
        return JobStatus.FAILED if job in self.crashed else JobStatus.SUCCEEDED

    def get_job_logs(self, job):
        return f"logs of {job}: Traceback ... CUDA out of memory"


def test_ray_jobs_backend_submits_one_job_per_run_with_its_entrypoint_and_env(tmp_path):
    client = FakeJobClient(no_record={"rl-tinylora1-lr0.1-s0"})
    backend = RayJobsBackend(
        None,
        client=client,
        python="python3",
        max_parallel=2,
        poll_s=0,
        runtime_env={"env_vars": {"HF_HOME": "/nfs/hf"}},
        sweep_dir=tmp_path,
    )
    summary = run_sweep(_spec(methods=["rl", "sft"]), tmp_path, backend, log=lambda m: None)
    assert len(client.submitted) == 4 and client.max_active <= 2
    by_run = {kw["metadata"]["tinylora_run"]: kw for kw in client.submitted}
    sft = by_run["sft-tinylora1-lr0.01-s0"]
    run_dir = tmp_path.resolve() / "runs" / "sft-tinylora1-lr0.01-s0"
    assert sft["entrypoint"] == f"python3 -m tinylora_verl.experiments.run_one {run_dir}"
    assert sft["entrypoint_num_gpus"] == 1.0  # SFT computes in the entrypoint
    assert "entrypoint_num_gpus" not in by_run["rl-tinylora1-lr0.01-s0"]  # verl's workers take the GPUs
    assert sft["runtime_env"]["env_vars"] == {"HF_HOME": "/nfs/hf", "PYTHONUNBUFFERED": "1"}
    ids = [kw["submission_id"] for kw in client.submitted]
    assert len(set(ids)) == 4 and all(
        i.startswith("tinylora-") and i.endswith("-a1") and "." not in i for i in ids
    )
    failed = records.read_result(tmp_path / "runs" / "rl-tinylora1-lr0.1-s0")
    assert (
        failed["status"] == "failed"
        and "ended FAILED" in failed["error"]
        and "out of memory" in failed["error"]
    )
    assert summary.counts() == {"finished": 3, "failed": 1}
    line = RayJobsBackend("http://head:8265", client=client, python="python3").describe(
        PendingRun("sft-tinylora1-lr0.01-s0", "sft", run_dir, 1)
    )
    assert line.startswith("ray job submit --address http://head:8265 --submission-id tinylora-")
    assert '--runtime-env-json \'{"env_vars": {"PYTHONUNBUFFERED": "1"}}\'' in line
    assert line.endswith(
        f"--entrypoint-num-gpus 1.0 -- python3 -m tinylora_verl.experiments.run_one {run_dir}"
    )
    assert "out of memory" in (tmp_path / "runs" / "rl-tinylora1-lr0.1-s0" / "log.txt").read_text()


def test_spec_mistakes_exit_2_with_one_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: m\ntask: {kind: arithmetic}\nbudgets: [-1]\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinylora_verl.cli",
            "sweep",
            "--spec",
            str(spec),
            "--out",
            str(tmp_path / "o"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "budgets: -1" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_real_local_sweep_of_two_sft_runs_then_a_table(tiny_model_dir, tmp_path):
    out = tmp_path / "sweep"
    argv = [
        *TINY_SFT_SWEEP_ARGS,
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
    ]
    assert main(argv) == 0
    recs = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")}
    assert sorted(recs) == ["sft-tinylora2-lr0.01-s0", "sft-tinylora2-lr0.1-s0"]
    for rec in recs.values():
        assert rec["status"] == "finished" and rec["trainable_params"] == 2
        assert set(rec["eval"]) == {"val", "arithmetic_add"} and rec["eval"]["val"]["n_prompts"] == 4
        assert rec["train"]["steps"] == 2 and rec["train"]["val_loss"] != rec["train"]["val_loss_before"]
    assert (out / "runs" / "sft-tinylora2-lr0.1-s0" / "adapter" / "tinylora_config.json").exists()
    logs = {n: (out / "runs" / n / "log.txt").stat().st_mtime_ns for n in recs}
    assert main(["sweep", "--out", str(out)]) == 0  # resume: nothing left to run
    assert {n: (out / "runs" / n / "log.txt").stat().st_mtime_ns for n in recs} == logs
    assert main(["table", str(out), "--no-figures"]) == 0
    assert "SFT TinyLoRA 2" in (out / "table.md").read_text()
