"""bench/grpo_step.py's arithmetic on synthetic rows: VmHWM parsing, steady-step medians with 'other' as the
remainder of the step, the ratios to TinyLoRA full and the goals' met / not met; and the poller's reading of
a live process's VmHWM. The runs themselves take minutes and are not run here."""

import os

import pytest

from bench import grpo_step as g

STATUS = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"


def row(step, gen, old, update, sync, ref=None, probe=None):
    return {
        "t_step": step,
        "t_gen": gen,
        "t_old_logprob": old,
        "t_ref": ref,
        "t_update": update,
        "t_sync": sync,
        "probe_s": probe,
    }


def test_vm_hwm_parsing():
    assert g.vm_hwm_bytes(STATUS) == 123456 * 1024
    assert g.vm_hwm_bytes("Name:\tkthreadd\nState:\tS\n") is None
    with pytest.raises(ValueError):
        g.vm_hwm_bytes("VmHWM:\t 12 MB\n")


def test_summarise_drops_the_first_step_and_takes_other_as_the_remainder():
    rows = [
        row(100.0, 50.0, 20.0, 20.0, 5.0),  # warm-up step: dropped
        row(40.0, 20.0, 8.0, 10.0, 1.0, probe=0.5),
        row(44.0, 21.0, 9.0, 11.0, 1.0, probe=0.7),
        row(50.0, 22.0, 9.0, 12.0, 2.0, probe=0.6),
    ]
    s = g.summarise(rows)
    assert s["steps"] == 3
    assert s["gen"] == 21.0 and s["old_logprob"] == 9.0 and s["update"] == 11.0 and s["sync"] == 1.0
    assert s["ref"] is None  # never ran: shown as '-', not 0
    assert s["step"] == 44.0
    assert s["other"] == pytest.approx(2.0)  # per step 40-39, 44-42, 50-45 = 1, 2, 5
    assert s["probe_s"] == pytest.approx(0.6)


def test_summarise_other_is_a_median_of_per_step_remainders():
    rows = [row(9.0, 1, 1, 1, 1), row(10.0, 2.0, 1.0, 3.0, 0.0), row(20.0, 2.0, 1.0, 3.0, 0.0)]
    assert g.summarise(rows)["other"] == pytest.approx(9.0)  # remainders 4 and 14


def test_summarise_needs_a_steady_step():
    with pytest.raises(ValueError, match="no steady steps"):
        g.summarise([row(1.0, 0, 0, 0, 0)])


def test_ratios_and_goals():
    s = {name: {"step": step} for name, step in [("tinylora-full", 30.0), ("tinylora-vector", 36.0)]}
    s |= {"verl-full-ft": {"step": 60.0}, "verl-lora-r1": {"step": 36.0}, g.TRL: {"step": 50.0}}
    ratios, goals = g.ratios_and_goals(s)
    assert ratios["tinylora-full"] == 1.0 and ratios["verl-full-ft"] == 2.0
    by = {(x["tinylora"], x["vs"]): x for x in goals}
    assert by[("tinylora-full", "verl-full-ft")]["met"] is True  # 0.5 <= 0.6
    assert by[("tinylora-full", "verl-lora-r1")]["met"] is False  # 0.83 > 0.8
    assert by[("tinylora-full", g.TRL)]["met"] is False  # 0.6 > 0.5
    assert by[("tinylora-vector", "verl-full-ft")]["met"] is True  # 0.6 <= 0.6
    lines = g.goal_lines(goals)
    assert "tinylora-full step / verl-lora-r1 step = 0.83 (goal <= 0.8): not met" in lines


def test_goals_skip_missing_configs_and_table_marks_absent_phases():
    s = {"tinylora-full": g.summarise([row(9, 1, 1, 1, 1), row(10.0, 2.0, 1.0, 3.0, 0.5)])}
    ratios, goals = g.ratios_and_goals(s)
    assert goals == [] and ratios == {"tinylora-full": 1.0}
    text = g.table(s, {"tinylora-full": 2_500_000_000}, ratios)
    assert "| tinylora-full | 1 | 2.0 | 1.0 | - | 3.0 | 0.50 | 3.5 | 10.0 | 2.50 | 1.00 |" in text


def test_poller_reads_this_process():
    poller = g.PeakPoller(os.getpid(), None)
    poller.poll_once()
    assert poller.peak() and poller.peak() > 1_000_000


def test_report_merges_saved_runs(tmp_path, capsys):
    rows = [row(90.0, 9, 9, 9, 9), row(30.0, 10.0, 5.0, 10.0, 1.0), row(32.0, 10.0, 5.0, 12.0, 1.0)]
    trl_rows = [row(200.0, 90, None, 80, None), row(150.0, 80.0, None, 60.0, None)]
    first = {
        "steps": 3,
        "results": {"tinylora-full": {"rows": rows, "peak_rss_bytes": 2e9}, g.TRL: {"error": "x"}},
    }
    second = {"steps": 2, "results": {g.TRL: {"rows": trl_rows, "peak_rss_bytes": 3e9}}}
    (tmp_path / "a.json").write_text(g.json.dumps(first))
    (tmp_path / "b.json").write_text(g.json.dumps(second))
    assert g.main(["--report", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert f"| {g.TRL} | 1 | 80.0 | - | - | 60.0 | - | 10.0 | 150.0 | 3.00 | 4.84 |" in out
    assert f"tinylora-full step / {g.TRL} step = 0.21 (goal <= 0.5): met" in out


def test_oom_failures_are_recognised():
    assert g.oom_failure({"rc": "Ray's OOM killer killed workers", "error": "x"})
    msg = "ray.exceptions.OutOfMemoryError: 4 worker(s) were killed due to the node running low on memory."
    assert g.oom_failure({"rc": 1, "error": msg})
    assert not g.oom_failure({"rc": 1, "error": "ValueError: bad config"})


def test_a_failed_rollout_engine_is_recognised_in_the_log(tmp_path):
    log = tmp_path / "tinylora_train.log"
    assert not g.rollout_engine_failed(log)  # no log yet
    log.write_text("(EngineCore pid=1) INFO ready\n")
    assert not g.rollout_engine_failed(log)
    log.write_text(
        "(EngineCore pid=8663) ERROR [core.py:1750] RuntimeError: Worker failed with error 'cannot close "
        "exported pointers exist', please check the stack trace above for the root cause\n"
    )
    assert g.rollout_engine_failed(log)
    assert not g.oom_failure({"rc": "vLLM's engine failed", "error": log.read_text()})  # not retried
