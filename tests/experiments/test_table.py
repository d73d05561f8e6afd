"""`tinylora-verl table`: synthetic result records -> exact best LRs, mean ± std, CSV, Markdown, figures."""

from __future__ import annotations

import csv
import json

import pytest

from tinylora_verl.cli import main
from tinylora_verl.experiments.figures import plot_accuracy_vs_params
from tinylora_verl.experiments.table import load_records, summarize

TEST = "arithmetic_add"


def _record(method, kind, budget, lr, seed, val, test, params):
    name = f"{method}-{kind}{budget or ''}-lr{lr}-s{seed}"
    return {
        "name": name,
        "status": "finished",
        "attempt": 1,
        "trainable_params": params,
        "params": {"method": method, "kind": kind, "budget": budget, "lr": lr, "seed": seed},
        "eval": {"val": {"accuracy": val}, TEST: {"accuracy": test}},
        "train": {},
        "wall_s": 1.0,
    }


# (method, kind, budget, params, lr) -> [(val, test) per seed]
GRID = {
    ("sft", "tinylora", 1, 1, 1e-3): [(0.5, 0.40), (0.6, 0.50), (0.7, 0.60)],  # val mean 0.6  <- best
    ("sft", "tinylora", 1, 1, 1e-2): [
        (0.8, 0.90),
        (0.4, 0.90),
        (0.3, 0.90),
    ],  # val mean 0.5 (test is a decoy)
    ("sft", "tinylora", 13, 13, 1e-3): [(0.1, 0.2), (0.1, 0.2), (0.1, 0.2)],
    ("sft", "tinylora", 13, 13, 1e-2): [(0.9, 0.70), (0.9, 0.80), (0.9, 0.75)],  # best: 75.0 ± 5.0
    ("rl", "tinylora", 1, 1, 1e-3): [(0.5, 0.30)],  # tie on val: the smaller LR
    ("rl", "tinylora", 1, 1, 1e-2): [(0.5, 0.99)],
    ("sft", "full", None, 1000, 1e-4): [(0.95, 0.85), (0.95, 0.95)],
    ("sft", "lora", None, 100, 1e-3): [(0.6, 0.65), (0.6, 0.55)],
    ("base", "base", None, 0, None): [(0.25, 0.20)],
}


@pytest.fixture
def runs_dir(tmp_path):
    for (method, kind, budget, params, lr), seeds in GRID.items():
        for seed, (val, test) in enumerate(seeds):
            rec = _record(method, kind, budget, lr, seed, val, test, params)
            path = tmp_path / "runs" / rec["name"]
            path.mkdir(parents=True)
            (path / "result.json").write_text(json.dumps(rec))
    failed = tmp_path / "runs" / "sft-tinylora1-lr0.1-s0"
    failed.mkdir()
    (failed / "result.json").write_text(
        json.dumps({"name": "x", "status": "failed", "params": {}, "eval": {}})
    )
    return tmp_path


def test_best_lr_on_validation_and_mean_std_at_it(runs_dir):
    records, failed = load_records(runs_dir)
    assert (len(records), failed) == (sum(len(v) for v in GRID.values()), 1)
    best, every = summarize(records)
    got = {(r.method, r.kind, r.budget): (r.lr, r.n_seeds, r.acc[TEST]) for r in best}
    assert got[("sft", "tinylora", 1)][:2] == (1e-3, 3)
    assert got[("sft", "tinylora", 1)][2] == pytest.approx((0.5, 0.1))
    assert got[("sft", "tinylora", 13)][0] == 1e-2 and got[("sft", "tinylora", 13)][2] == pytest.approx(
        (0.75, 0.05)
    )
    assert got[("rl", "tinylora", 1)] == (1e-3, 1, (0.3, None))  # one seed: no std
    assert got[("sft", "full", None)][2] == pytest.approx((0.9, 0.0707107), abs=1e-6)
    assert got[("base", "base", None)][2] == (0.2, None)
    assert [(r.method, r.kind, r.budget) for r in best][0] == ("base", "base", None)
    assert len(every) == len(GRID) and len(best) == 6


def test_table_command_writes_markdown_csv_and_figures(runs_dir, capsys):
    assert main(["table", str(runs_dir), "--out", str(runs_dir / "out")]) == 0
    out = runs_dir / "out"
    rows = list(csv.DictReader(open(out / "table.csv")))
    by = {(r["method"], r["kind"], r["budget"]): r for r in rows}
    assert by[("sft", "tinylora", "13")]["lr"] == "0.01"
    assert float(by[("sft", "tinylora", "13")][f"{TEST}_mean"]) == 0.75
    assert float(by[("sft", "tinylora", "13")][f"{TEST}_std"]) == 0.05
    assert (
        float(by[("sft", "tinylora", "1")]["val_mean"]) == 0.6
        and by[("rl", "tinylora", "1")][f"{TEST}_std"] == ""
    )
    assert len(list(csv.DictReader(open(out / "table_all_lrs.csv")))) == len(GRID)
    md = (out / "table.md").read_text()
    assert "| SFT TinyLoRA 1 | 1 | 0.001 (of 2) | 3 | 60.0 ± 10.0 | 50.0 ± 10.0 |" in md
    assert "| base model | 0 | – | 1 | 25.0 | 20.0 |" in md
    for name in ("val", TEST):
        png = out / f"accuracy_vs_params_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 failed" in capsys.readouterr().out


def test_figure_plots_the_table_numbers(runs_dir, tmp_path):
    best, _ = summarize(load_records(runs_dir)[0])
    fig = plot_accuracy_vs_params(best, TEST, tmp_path / "f.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = {
        tuple(line.get_xdata()): [round(y, 9) for y in line.get_ydata()]
        for line in ax.lines
        if line.get_color() == "tab:orange" and line.get_marker() in ("o", "s")
    }  # SFT points, not caps
    assert lines[(1, 13)] == [50.0, 75.0]  # SFT TinyLoRA at the best LRs
    assert lines[(100,)] == [60.0]  # SFT LoRA r=1 marker
    horizontal = {
        line.get_gid(): line.get_ydata()[0] for line in ax.lines if line.get_gid() in ("base", "sft-full")
    }
    assert horizontal == {"base": 20.0, "sft-full": pytest.approx(90.0)}


def test_no_records_is_a_user_error(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished result.json" in err and len(err.strip().splitlines()) == 1


def _scored(method, kind, budget, lr, seed, per_prompt, params, label=None, update=None):
    rec = _record(method, kind, budget, lr, seed, 0.0, sum(per_prompt) / len(per_prompt), params)
    rec["params"]["label"] = label
    ids = list(range(len(per_prompt)))
    rec["eval"][TEST].update(per_prompt=per_prompt, prompt_ids=ids)
    rec["eval"]["val"].update(per_prompt=[0.0] * 3, prompt_ids=[0, 1, 2])
    rec["update"] = None if update is None else {"relative": update}
    if label:
        rec["name"] = rec["name"].replace(method, f"{method}-{label}", 1)
    return rec


def test_intervals_variants_update_sizes_and_the_share_recovered(tmp_path, capsys):
    recs = [
        _scored("base", "base", None, None, 0, [0, 0, 1, 0], 0),  # 25 %
        _scored("rl", "full", None, 1e-5, 0, [1, 1, 1, 0], 1000, update=2e-2),  # 75 %
        _scored("rl", "full", None, 1e-5, 1, [1, 1, 1, 0], 1000, update=4e-2),
        _scored("rl", "tinylora", 13, 0.03, 0, [1, 0, 1, 0], 13, update=1e-3),  # 50 %
        _scored("rl", "tinylora", 13, 0.03, 1, [1, 0, 1, 0], 13, update=3e-3),
        _scored("sft", "tinylora", 13, 0.03, 0, [1, 1, 1, 1], 13, label="matched", update=5e-3),  # 100 %
    ]
    for rec in recs:
        (tmp_path / rec["name"]).mkdir()
        (tmp_path / rec["name"] / "result.json").write_text(json.dumps(rec))
    assert main(["table", str(tmp_path), "--no-figures"]) == 0
    md = (tmp_path / "table.md").read_text()
    # every problem right in the one seed: an interval of one point; the update is the mean over seeds
    assert (
        "| SFT (matched) TinyLoRA 13 | 13 | 0.03 | 1 | 0.0 [0.0, 0.0] | 100.0 [100.0, 100.0] | 5.00e-03 |"
        in md
    )
    assert "| RL TinyLoRA 13 | 13 | 0.03 | 2 | 0.0 ± 0.0 [0.0, 0.0] | 50.0 ± 0.0 [" in md
    assert md.count("2.00e-03") == 1 and md.count("3.00e-02") == 1
    rows = {r["label"] + r["kind"]: r for r in csv.DictReader(open(tmp_path / "table.csv"))}
    low, high = float(rows["tinylora"][f"{TEST}_ci_low"]), float(rows["tinylora"][f"{TEST}_ci_high"])
    assert 0.0 <= low < 0.5 < high <= 1.0  # 4 problems, half right: a wide interval around 50 %
    recovered = (tmp_path / "recovered.md").read_text()
    line = next(x for x in recovered.splitlines() if x.startswith("| RL TinyLoRA 13 |"))
    assert line.startswith("| RL TinyLoRA 13 | 13 | 50 % [")  # (50 - 25) / (75 - 25)
    assert "SFT" not in recovered and "| RL full FT |" not in recovered


def test_figure_error_bars_are_the_bootstrap_intervals(tmp_path):
    from tinylora_verl.experiments.table import add_intervals, eval_sets

    recs = [
        _scored("base", "base", None, None, 0, [0, 0, 1, 0], 0),
        _scored("rl", "tinylora", 13, 0.03, 0, [1, 0, 1, 0], 13),
        _scored("rl", "tinylora", 100, 0.03, 0, [1, 1, 1, 1], 100),
        _scored("rl", "lora", None, 1e-3, 0, [1, 1, 0, 0], 500),
        _scored("sft", "tinylora", 13, 0.03, 0, [0, 1, 0, 0], 13, label="matched"),
    ]
    best, _ = summarize(recs)
    add_intervals(best, eval_sets(recs))
    ci = {r.label: r.ci[TEST] for r in best}
    fig = plot_accuracy_vs_params(best, TEST, tmp_path / "f.png")
    ax = fig.axes[0]
    import matplotlib.colors as mcolors

    bars = {}
    for coll in ax.collections:  # error bar segments: (x, y_low) -> (x, y_high), by colour
        color = mcolors.to_hex(coll.get_colors()[0])
        for seg in coll.get_segments():
            bars[(color, float(seg[0][0]))] = (float(seg[0][1]), float(seg[1][1]))
    blue = mcolors.to_hex("tab:blue")
    want = ci["RL TinyLoRA 13"]
    assert bars[(blue, 13.0)] == pytest.approx((100 * want[0], 100 * want[1]))
    assert want[0] < 0.5 < want[1]
    assert ci["RL TinyLoRA 100"] == (1.0, 1.0)
    gids = {line.get_gid() for line in ax.lines}
    assert {"rl-lora-line", "sft-matched-tinylora", "base"} <= gids
    colors = {line.get_gid(): line.get_color() for line in ax.lines}
    assert colors["sft-matched-tinylora"] not in ("tab:blue", "tab:orange")


def test_accuracy_vs_update_plots_each_row_at_its_update_size(tmp_path):
    from tinylora_verl.experiments.figures import plot_accuracy_vs_update, write_figures

    recs = [
        _scored("base", "base", None, None, 0, [0, 0, 1, 0], 0),
        _scored("rl", "tinylora", 13, 0.03, 0, [1, 0, 1, 0], 13, update=1e-3),
        _scored("rl", "tinylora", 13, 0.03, 1, [1, 1, 1, 0], 13, update=3e-3),
        _scored("sft", "full", None, 1e-4, 0, [1, 1, 0, 0], 1000, label="matched", update=5e-2),
        _scored("sft", "lora", None, 1e-4, 0, [1, 1, 0, 0], 100),  # no update recorded: not drawn
    ]
    best, _ = summarize(recs)
    ax = plot_accuracy_vs_update(best, TEST, tmp_path / "u.png").axes[0]
    points = {
        line.get_gid(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.lines
        if line.get_marker() in ("o", "s", "D")
    }
    assert points == {
        "rl-tinylora": ([pytest.approx(2e-3)], [pytest.approx(62.5)]),  # means over the two seeds
        "sft-matched-full": ([pytest.approx(5e-2)], [pytest.approx(50.0)]),
    }
    assert ax.get_xscale() == "log"
    names = [p.name for p in write_figures(best, [TEST], tmp_path)]
    assert f"accuracy_vs_update_{TEST}.png" in names


def test_best_lr_is_chosen_on_the_seeds_every_lr_has():
    # LR 1e-3 ran seeds 0-2 (a sweep's select_seeds: its later seeds ran at the best LR only); its seed-0 val
    # 0.8 beats 1e-2's 0.7, though its mean over three seeds (0.5) does not
    recs = [_record("rl", "tinylora", 1, 1e-3, s, v, 0.5, 1) for s, v in enumerate((0.8, 0.4, 0.3))] + [
        _record("rl", "tinylora", 1, 1e-2, 0, 0.7, 0.9, 1)
    ]
    best, every = summarize(recs)
    assert [(r.lr, r.n_seeds) for r in best] == [(1e-3, 3)]
    assert best[0].select == pytest.approx(0.8) and best[0].acc["val"][0] == pytest.approx(0.5)
    assert [r.select for r in every] == pytest.approx([0.8, 0.7])
