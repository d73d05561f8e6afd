"""launch/local.sh, launch/ray_job.sh and launch/slurm.sbatch: their dry runs print the command they
would run and the config it resolves to (composed for real, offline); the real paths of local.sh and
ray_job.sh run (Hydra's --cfg job; a stand-in `ray` that records its arguments); slurm.sbatch's srun
steps pass --cpus-per-task, and its Ray head address skips loopback (stand-in `hostname`, `ip`, `srun`);
user mistakes give one line on stderr and exit 2; shellcheck finds nothing. A real Ray cluster (a job
submitted by ray_job.sh, the sweep's Ray backend): test_real_ray.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
SCRIPTS = ["_common.sh", "local.sh", "ray_job.sh", "slurm.sbatch", "setup_venv.sh"]


def _env(**extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "TINYLORA_", "RAY_")) and k not in ("PYTHONPATH", "RAY")
    }
    env.update(PYTHON=sys.executable, **extra)
    return env


def run(script: str, *args, cwd=None, **env):
    return subprocess.run(
        ["bash", str(LAUNCH / script) if "/" not in script else script, *args],
        cwd=cwd or REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def dry_run_parts(out: str) -> tuple[list[str], dict]:
    """(the command after '# command...:', the YAML after '# resolved config ...:') of a dry run."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("# command"))
    j = next(n for n, line in enumerate(lines) if line.startswith("# resolved config"))
    command = shlex.split(lines[i + 1])
    return command, yaml.safe_load("\n".join(lines[j + 1 :]))


def one_line_error(res, *fragments):
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_local_dry_run_prints_command_and_resolved_preset():
    res = run(
        "local.sh",
        "--preset",
        "gsm8k_paper",
        "--gpus",
        "4",
        "--dry-run",
        "trainer.logger=[console,wandb]",
        TINYLORA_DATA="/nfs/data",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    cmd, cfg = dry_run_parts(res.stdout)
    assert cmd[0] == f"PYTHONPATH={REPO}" and cmd[1] == sys.executable
    assert cmd[2:] == [
        "-m",
        "tinylora_verl.main",
        "--config-name",
        "experiment/gsm8k_paper",
        "trainer.n_gpus_per_node=4",
        "trainer.logger=[console,wandb]",
    ]
    assert cfg["trainer"]["n_gpus_per_node"] == 4 and cfg["trainer"]["logger"] == ["console", "wandb"]
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-7B-Instruct"
    assert cfg["data"]["train_files"] == "/nfs/data/gsm8k/train.parquet"  # resolved
    assert cfg["trainer"]["device"] == "cuda"


def test_local_default_is_the_cpu_demo():
    res = run("local.sh", "--dry-run")
    assert res.returncode == 0, res.stderr[-3000:]
    cmd, cfg = dry_run_parts(res.stdout)
    assert "--config-name" not in cmd
    assert cfg["trainer"]["device"] == "cpu" and cfg["trainer"]["experiment_name"] == "cpu_demo"


def test_local_runs_the_command():
    """Without --dry-run the command itself runs: here Hydra's own --cfg job, passed through."""
    res = run("local.sh", "--preset", "math_paper", "--cfg", "job")
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = yaml.safe_load(res.stdout)
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-Math-7B"
    assert "local.sh: " in res.stderr and "--config-name experiment/math_paper" in res.stderr


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--preset", "gsm8k"], ["unknown preset 'gsm8k'", "gsm8k_paper", "math_paper"]),
        (["--preset"], ["--preset needs a name"]),
        (["--preset=math_paper", "--config-name", "cpu_demo"], ["not both"]),
        (["--gpus", "four"], ["--gpus needs a positive number"]),
    ],
)
def test_local_user_errors(args, fragments):
    one_line_error(run("local.sh", *args), *fragments)


def test_local_bad_override_fails():
    res = run("local.sh", "--dry-run", "--preset", "math_paper", "data.no_such_key=1")
    assert res.returncode == 2 and "does not compose" in res.stderr


RAY_ARGS = [
    "--address",
    "http://head:8265",
    "--preset",
    "gsm8k_paper",
    "--env",
    "TINYLORA_DATA=/nfs/data",
    "--pip",
    "math-verify==0.9.0",
    "--no-wait",
    "actor_rollout_ref.actor.optim.lr=1e-4",
]


def _check_submit(argv: list[str]):
    assert argv[:4] == ["job", "submit", "--address", "http://head:8265"]
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime_env["working_dir"] == str(REPO)
    assert {".git", ".venv"} <= set(runtime_env["excludes"])
    assert runtime_env["pip"] == ["math-verify==0.9.0"]
    assert runtime_env["env_vars"] == {"TINYLORA_DATA": "/nfs/data"}
    assert "--no-wait" in argv
    assert argv[argv.index("--") + 1 :] == [
        "python",
        "-m",
        "tinylora_verl.main",
        "--config-name",
        "experiment/gsm8k_paper",
        "actor_rollout_ref.actor.optim.lr=1e-4",
    ]


def test_ray_job_dry_run():
    res = run("ray_job.sh", "--dry-run", *RAY_ARGS, RAY="ray")
    assert res.returncode == 0, res.stderr[-3000:]
    cmd, cfg = dry_run_parts(res.stdout)
    assert cmd[0] == "ray"
    _check_submit(cmd[1:])
    assert cfg["data"]["train_files"] == "/nfs/data/gsm8k/train.parquet"  # --env applied when composing
    assert cfg["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-4


def test_ray_job_submits_with_the_ray_cli(tmp_path):
    fake = tmp_path / "ray"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    res = run("ray_job.sh", *RAY_ARGS, RAY=str(fake))
    assert res.returncode == 0, res.stderr
    _check_submit(json.loads((tmp_path / "argv.json").read_text()))


def test_ray_job_image_runtime_env():
    res = run(
        "ray_job.sh",
        "--dry-run",
        "--address",
        "http://h:8265",
        "--image",
        "registry/tinylora:gpu",
        "--env",
        "A=b=c",
        RAY="ray",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    cmd, cfg = dry_run_parts(res.stdout)
    runtime_env = json.loads(cmd[cmd.index("--runtime-env-json") + 1])
    assert runtime_env == {
        "image_uri": "registry/tinylora:gpu",
        "env_vars": {"A": "b=c"},
    }  # image_uri: no working_dir
    assert cfg["trainer"]["experiment_name"] == "cpu_demo"


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--preset", "gsm8k_paper"], ["--address", "RAY_ADDRESS"]),
        (["--address", "a", "--image", "i", "--pip", "p"], ["--image and --pip"]),
        (["--address", "a", "--image", "i", "--working-dir", "."], ["--image and --working-dir"]),
        (["--address", "a", "--env", "NOT-A-KEY"], ["--env needs KEY=VALUE"]),
        (["--address"], ["--address needs a value"]),
        (["--address", "a", "--preset", "nope"], ["unknown preset 'nope'"]),
    ],
)
def test_ray_job_user_errors(args, fragments):
    one_line_error(run("ray_job.sh", *args), *fragments)


# the dry run validates the composed config as verl will: the GSM8K preset's 64 prompts do not split over
# 3 nodes x 8 GPUs = 24, so the tests on SLURM's allocation give a batch that does
BATCH_24 = "data.train_batch_size=96"
SLURM = {
    "SLURM_JOB_NODELIST": "gpu[07-09]",
    "SLURM_NNODES": "3",
    "SLURM_GPUS_PER_TASK": "8",
    "SLURM_CPUS_PER_TASK": "64",
}


def test_slurm_dry_run(tmp_path):
    """As sbatch runs it: a copy of the script in a spool directory, the checkout found by SLURM_SUBMIT_DIR."""
    spooled = tmp_path / "slurm_script"
    shutil.copy(LAUNCH / "slurm.sbatch", spooled)
    res = run(
        str(spooled),
        "--dry-run",
        "--preset",
        "math_paper",
        "trainer.n_gpus_per_node=4",
        cwd=tmp_path,
        SLURM_SUBMIT_DIR=str(REPO),
        **SLURM,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "# nodes (3): gpu07 gpu08 gpu09; head: gpu07; 8 GPUs and 64 CPUs per node" in out
    lines = out.splitlines()
    starts = [shlex.split(line.rstrip(" &")) for line in lines if line.startswith("srun ")]
    assert [s[s.index("-w") + 1] for s in starts] == ["gpu07", "gpu08", "gpu09"]
    head, workers = starts[0], starts[1:]
    assert {"start", "--head", "--port=6379", "--num-gpus=8", "--num-cpus=64", "--block"} <= set(head)
    assert all("--address=HEAD_IP:6379" in w and "--head" not in w for w in workers)
    cmd, cfg = dry_run_parts(out)
    assert cmd[0] == "RAY_ADDRESS=HEAD_IP:6379"
    assert cmd[3:] == [
        "-m",
        "tinylora_verl.main",
        "--config-name",
        "experiment/math_paper",
        "trainer.nnodes=3",
        "trainer.n_gpus_per_node=8",
        "trainer.n_gpus_per_node=4",
    ]
    assert (
        cfg["trainer"]["nnodes"] == 3 and cfg["trainer"]["n_gpus_per_node"] == 4
    )  # the user's override wins
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-Math-7B"


def _srun_commands(out: str) -> list[list[str]]:
    """Every srun command line a dry run prints (the Ray starts and the head-address lookup)."""
    return [
        shlex.split(line[line.index("srun ") :].rstrip(" &)")) for line in out.splitlines() if "srun " in line
    ]


def test_slurm_srun_passes_cpus_per_task():
    """Slurm >= 22.05: srun does not inherit --cpus-per-task from sbatch, so every srun passes it."""
    res = run("slurm.sbatch", "--dry-run", BATCH_24, **SLURM)
    assert res.returncode == 0, res.stderr[-3000:]
    sruns = _srun_commands(res.stdout)
    assert len(sruns) == 4, res.stdout  # the address lookup and three `ray start`s
    assert all("--cpus-per-task=64" in s[: s.index("-w")] for s in sruns), sruns  # srun's option, not ray's
    # without SLURM_CPUS_PER_TASK srun keeps its default; Ray still gets the node's CPUs
    res = run(
        "slurm.sbatch",
        "--dry-run",
        BATCH_24,
        **{**SLURM, "SLURM_CPUS_PER_TASK": "", "SLURM_CPUS_ON_NODE": "32"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sruns = _srun_commands(res.stdout)
    assert len(sruns) == 4 and not any(a.startswith("--cpus-per-task") for s in sruns for a in s), sruns
    assert all("--num-cpus=32" in s for s in sruns if "start" in s), sruns


def _address_stubs(tmp_path, by_name: str, all_addresses: str, route: str | None = None) -> str:
    """A PATH whose `hostname` and `ip` only print the given text (no network): hostname --ip-address ->
    by_name, hostname -I -> all_addresses, ip route get -> route (None: the error for no route)."""
    (tmp_path / "hostname").write_text(
        f'#!/bin/sh\ncase "$1" in\n  --ip-address|-i) echo "{by_name}" ;;\n  -I) echo "{all_addresses}" ;;\n'
        f"  *) echo node1 ;;\nesac\n"
    )
    ip = (
        "echo 'RTNETLINK answers: Network is unreachable' >&2; exit 2"
        if route is None
        else f"printf '%s\\n    cache\\n' '{route}'"
    )
    (tmp_path / "ip").write_text(f"#!/bin/sh\n{ip}\n")
    for name in ("hostname", "ip"):
        (tmp_path / name).chmod(0o755)
    return f"{tmp_path}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize(
    "by_name,all_addresses,route,want",
    [
        ("127.0.1.1", "127.0.1.1 10.1.2.3", None, "10.1.2.3"),  # Debian's /etc/hosts, no route: hostname -I
        (
            "127.0.1.1",
            "10.1.2.3",
            "1.1.1.1 via 10.0.0.1 dev ib0 src 10.0.0.7 uid 1000",
            "10.0.0.7",
        ),  # the route's src
        (
            "127.0.1.1 fe80::1 10.0.0.5",
            "10.1.2.3",
            None,
            "10.0.0.5",
        ),  # several addresses: the first usable one
        ("169.254.3.4", "fd00::2 172.16.0.9", None, "172.16.0.9"),  # link-local and IPv6 skipped too
    ],
)
def test_slurm_head_ip_skips_loopback(tmp_path, by_name, all_addresses, route, want):
    """What the script runs on the head (srun ... slurm.sbatch --head-ip), with stand-in hostname and ip."""
    res = run("slurm.sbatch", "--head-ip", PATH=_address_stubs(tmp_path, by_name, all_addresses, route))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{want}\n"


def test_slurm_head_ip_only_loopback_is_an_error(tmp_path):
    res = run("slurm.sbatch", "--head-ip", PATH=_address_stubs(tmp_path, "127.0.1.1", "127.0.1.1"))
    one_line_error(res, "no address for the Ray head on node1", "'127.0.1.1'", "set RAY_HEAD_IP")


def test_slurm_head_ip_override(tmp_path):
    """RAY_HEAD_IP wins: over the picker on the node, and in the job (no lookup step at all)."""
    path = _address_stubs(tmp_path, "10.0.0.5", "10.0.0.5")
    res = run("slurm.sbatch", "--head-ip", PATH=path, RAY_HEAD_IP="10.9.9.9")
    assert res.returncode == 0 and res.stdout == "10.9.9.9\n", res.stderr
    res = run("slurm.sbatch", "--dry-run", BATCH_24, PATH=path, RAY_HEAD_IP="10.9.9.9", **SLURM)
    assert res.returncode == 0, res.stderr[-3000:]
    sruns = _srun_commands(res.stdout)
    assert len(sruns) == 3 and all("start" in s for s in sruns), sruns  # the three Ray starts only
    assert "--node-ip-address=10.9.9.9" in sruns[0]
    assert all("--address=10.9.9.9:6379" in s for s in sruns[1:]), sruns
    assert dry_run_parts(res.stdout)[0][0] == "RAY_ADDRESS=10.9.9.9:6379"


def test_slurm_dry_run_looks_up_the_head_address_on_the_head():
    res = run("slurm.sbatch", "--dry-run", BATCH_24, **SLURM)
    assert res.returncode == 0, res.stderr[-3000:]
    lookup = next(line for line in res.stdout.splitlines() if line.startswith("HEAD_IP=$("))
    argv = shlex.split(lookup[len("HEAD_IP=$(") : -1])
    assert argv[0] == "srun" and argv[argv.index("-w") + 1] == "gpu07"
    assert argv[argv.index("-w") + 2 :] == ["bash", str(LAUNCH / "slurm.sbatch"), "--head-ip"]


def test_slurm_real_path_picks_the_head_address_through_srun(tmp_path):
    """Without --dry-run, against a stand-in srun (records its arguments, runs the command here) and ray
    (prints and exits); RAY_WAIT_S=0 stops the script at the first wait, before the job."""
    path = _address_stubs(tmp_path, "127.0.1.1", "127.0.1.1 10.1.2.3")
    log = tmp_path / "srun.log"
    (tmp_path / "srun").write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(log))}\n'
        "while [ $# -gt 0 ]; do case $1 in -w) shift 2; break ;; *) shift ;; esac; done\n"
        'exec "$@"\n'
    )
    (tmp_path / "ray").write_text("#!/bin/sh\nexit 0\n")
    for name in ("srun", "ray"):
        (tmp_path / name).chmod(0o755)
    res = run("slurm.sbatch", PATH=path, RAY=str(tmp_path / "ray"), RAY_WAIT_S="0", **SLURM)
    assert res.returncode == 2 and "only 0 of 1 Ray nodes joined" in res.stderr, res.stderr
    assert "the Ray head's address: 10.1.2.3" in res.stderr
    # the lookup ran on the head, through srun (the Ray start runs in the background: its echo, not the log)
    lookup = log.read_text().splitlines()[0]
    assert (
        lookup == f"--nodes=1 --ntasks=1 --cpus-per-task=64 -w gpu07 bash {LAUNCH / 'slurm.sbatch'} --head-ip"
    )
    head = next(line for line in res.stderr.splitlines() if " ray start " in line or "/ray start " in line)
    assert "--cpus-per-task=64 -w gpu07 " in head and "--node-ip-address=10.1.2.3" in head, head


@pytest.mark.parametrize(
    "env,args,fragments",
    [
        ({}, [], ["not inside a Slurm allocation"]),
        ({**SLURM, "SLURM_GPUS_PER_TASK": ""}, [], ["--gpus-per-node"]),
        ({**SLURM, "SLURM_NNODES": "2"}, [], ["SLURM_NNODES=2", "3 nodes"]),
        ({**SLURM, "SLURM_JOB_NODELIST": "r[1-2]n[1-2]", "SLURM_NNODES": ""}, [], ["without scontrol"]),
        (SLURM, ["--preset", "gsm8k_papr"], ["unknown preset"]),
        (SLURM, ["--gpus-per-node", "0"], ["--gpus-per-node needs a positive number"]),
    ],
)
def test_slurm_user_errors(env, args, fragments):
    one_line_error(run("slurm.sbatch", "--dry-run", *args, **env), *fragments)


def test_slurm_nodelist_forms():
    res = run(
        "slurm.sbatch",
        "--dry-run",
        "--gpus-per-node",
        "2",
        "data.train_batch_size=224",  # 7 nodes x 2 GPUs = 14 divides it, as verl requires
        SLURM_JOB_NODELIST="n[08-10,12]-ib,login,x[9-10]",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "# nodes (7): n08-ib n09-ib n10-ib n12-ib login x9 x10; head: n08-ib; 2 GPUs per node" in res.stdout
    ), res.stderr


def _linter(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed: it comes with the test extra (pip install -e .[test])"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return found


def test_shellcheck_clean():
    res = subprocess.run(
        [_linter("shellcheck"), "-x", *[f"launch/{s}" for s in SCRIPTS]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
