"""bench/precision_demo.py's summary and table, from run directories written by hand."""

import json

from bench.precision_demo import summarize, table


def _run(tmp, name, t_gen, acc_before, acc_after):
    d = tmp / name
    d.mkdir()
    rows = [
        {"step": 1, "t_gen": 99.0, "t_step": 200.0, "logp_k3_kl": 0.1, "effect_kept": float("nan")},
        {"step": 2, "t_gen": t_gen, "t_step": 30.0, "logp_k3_kl": 0.3, "effect_kept": 0.5},
        {"step": 3, "t_gen": t_gen + 2, "t_step": 32.0, "logp_k3_kl": 0.2, "effect_kept": 0.7},
    ]
    (d / "tinylora_metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    val = [
        {"step": 0, "val-core/tinylora/arithmetic/acc/mean@8": acc_before},
        {"step": 3, "val-core/tinylora/arithmetic/acc/mean@8": acc_after},
    ]
    (d / "tinylora_val.jsonl").write_text("\n".join(json.dumps(r) for r in val))
    return d


def test_summary_excludes_the_warm_up_step_and_nan(tmp_path):
    s = summarize(_run(tmp_path, "fp32", 10.0, 0.2, 0.4))
    assert s["t_gen"] == 11.0 and s["t_step"] == 31.0  # medians of steps 2-3
    assert abs(s["logp_k3_kl"] - 0.2) < 1e-12  # mean over every step
    assert s["effect_kept"] == 0.6  # NaN (v = 0) left out
    assert s["held-out acc, step 0"] == 0.2 and s["held-out acc, step 3"] == 0.4


def test_table_has_the_ratio_column(tmp_path):
    res = {
        "fp32": summarize(_run(tmp_path, "fp32", 10.0, 0.2, 0.4)),
        "bf16": summarize(_run(tmp_path, "bf16", 4.0, 0.2, 0.5)),
    }
    text = table(res)
    gen = next(line for line in text.splitlines() if line.startswith("generation s"))
    assert gen.split()[-1] == f"{5.0 / 11.0:.3f}"
