"""bench/threads.py: each allocation's environment reaches the demo's process, and the table's ratios."""

import json
import sys

import pytest

from bench import threads


def _fake_demo(calls):
    def call(cmd, stdout, stderr, cwd, env):
        run_dir = cmd[cmd.index("--out") + 1]
        calls.append((cmd, env))
        import pathlib

        d = pathlib.Path(run_dir)
        d.mkdir(parents=True)
        slow = 1.0 if env.get("VLLM_CPU_NUM_OF_RESERVED_CPU") is None else 0.5  # what this fake "measures"
        rows = [{"step": s, "t_gen": 10.0 * slow + s, "t_step": 40.0} for s in (1, 2, 3)]
        (d / "tinylora_metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        return 0

    return call


def test_environments_reach_the_runs_and_ratios_are_to_the_first(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(threads.subprocess, "call", _fake_demo(calls))
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    rc = threads.main(["--out", str(tmp_path), "--steps", "3", "--only", "default,vllm_all_cores", "x=1"])
    assert rc == 0
    (cmd0, env0), (cmd1, env1) = calls
    assert cmd0[:3] == [sys.executable, "-m", "tinylora_verl.demo"] and "--steps=3" in cmd0
    assert cmd0[-3:] == [*threads.NO_VALIDATION, "x=1"]
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env0
    assert env1["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    gen = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("generation s"))
    # steady medians: default 12.5, all cores 7.5 -> ratio 0.6
    assert gen.split()[2:] == ["12.5", "7.5", "0.600"]
    saved = json.loads((tmp_path / "threads.json").read_text())
    assert saved["vllm_all_cores"]["t_gen"] == 7.5 and saved["default"]["exit_code"] == 0


def test_unknown_allocation_is_refused(tmp_path):
    with pytest.raises(SystemExit) as e:
        threads.main(["--out", str(tmp_path), "--only", "default,eight_cores"])
    assert e.value.code == 2
