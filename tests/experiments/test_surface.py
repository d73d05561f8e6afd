"""The 2-parameter loss surface: origin = base model, axes the right way round, row-by-row resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl.experiments import surface
from tinylora_verl.experiments.objective import build_examples, mean_loss
from tinylora_verl.experiments.tasks import arithmetic_rows


@pytest.fixture(scope="module")
def examples(tokenizer):
    rows = arithmetic_rows({"kind": "arithmetic", "op": "add", "n_train": 6, "n_val": 2, "n_test": 2})[
        "train"
    ]
    return build_examples(tokenizer, rows, 512)[0]


def test_axis_is_symmetric_with_an_exact_zero():
    assert surface.axis(5, 0.5) == [-0.5, -0.25, 0.0, 0.25, 0.5]
    assert surface.axis(21, 0.3)[10] == 0.0
    with pytest.raises(ValueError):
        surface.axis(1, 1.0)


def test_grid_origin_is_the_base_model_and_points_are_the_adapted_loss(tokenizer, examples, tmp_path):
    pad = tokenizer.pad_token_id
    base_loss = mean_loss(tiny_qwen2(seed=4, initializer_range=0.2), examples, pad)
    handle = surface.surface_adapter(tiny_qwen2(seed=4, initializer_range=0.2))
    assert handle.num_trainable == 2 and handle.plan.num_groups == 1  # one v = (v1, v2) for every module
    grid = surface.axis(3, 0.8)
    with torch.no_grad():
        values = surface.scan(
            surface.loss_at(handle, examples, pad, 8), grid, grid, tmp_path, {"t": 1}, log=None
        )
        assert values.shape == (3, 3)
        assert abs(values[1, 1] - base_loss) < 1e-6 * base_loss  # v = (0, 0): the base model
        handle.set_vectors([torch.tensor([-0.8, 0.8])])  # row 0 = v1 -0.8, column 2 = v2 +0.8
        assert abs(values[0, 2] - mean_loss(handle.model, examples, pad)) < 1e-9
        handle.set_vectors([torch.tensor([0.8, -0.8])])
        assert abs(values[2, 0] - mean_loss(handle.model, examples, pad)) < 1e-9
    assert np.ptp(values) > 0.01  # the two numbers matter
    png = surface.plot_surface(values, grid, grid, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_an_interrupted_scan_resumes_at_the_first_missing_row_and_gives_the_same_grid(tmp_path):
    grid1, grid2 = surface.axis(5, 1.0), surface.axis(3, 2.0)
    f = lambda v1, v2: (v1 - 0.3) ** 2 + 3 * (v2 + 0.1) ** 2 + v1 * v2  # noqa: E731
    full = surface.scan(f, grid1, grid2, tmp_path / "once", {"k": 1}, log=None)

    calls = []

    def dies_in_row_3(v1, v2):
        calls.append((v1, v2))
        if len(calls) == 2 * len(grid2) + 2:
            raise KeyboardInterrupt
        return f(v1, v2)

    with pytest.raises(KeyboardInterrupt):
        surface.scan(dies_in_row_3, grid1, grid2, tmp_path / "twice", {"k": 1}, log=None)
    state = json.loads((tmp_path / "twice" / surface.STATE).read_text())
    assert len(state["rows"]) == 2  # finished rows were saved
    calls.clear()
    counted = lambda v1, v2: (calls.append((v1, v2)), f(v1, v2))[1]  # noqa: E731
    resumed = surface.scan(counted, grid1, grid2, tmp_path / "twice", {"k": 1}, log=None)
    assert [c[0] for c in calls] == [v for v in grid1[2:] for _ in grid2]  # rows 0-1 not recomputed
    assert np.array_equal(resumed, full)
    with pytest.raises(ValueError, match="other settings"):
        surface.scan(f, grid1, grid2, tmp_path / "twice", {"k": 2}, log=None)


def test_surface_command_scans_draws_and_refuses_other_settings_on_the_same_out(
    tiny_model_dir, tmp_path, capsys
):
    from tinylora_verl.cli import main

    argv = [
        "surface",
        "--model",
        str(tiny_model_dir),
        "--arithmetic",
        "add",
        "--n-train",
        "4",
        "--n-val",
        "2",
        "--n-test",
        "2",
        "--n-examples",
        "3",
        "--grid",
        "3",
        "--extent",
        "0.5",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    state = json.loads((tmp_path / surface.STATE).read_text())
    assert len(state["rows"]) == 3 and state["settings"]["grid1"] == [-0.5, 0.0, 0.5]
    assert (tmp_path / surface.FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert "loss at v=(0, 0) (base model)" in capsys.readouterr().out
    assert main([*argv[:-5], "5", *argv[-4:]]) == 2  # --grid 5 on a 3x3 scan
    assert "other settings (differs in grid1, grid2)" in capsys.readouterr().err
