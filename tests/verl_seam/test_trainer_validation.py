"""TinyLoRATrainer._validate: verl's validation metrics come back unchanged, and the headline ones
(val-core/...) are appended to tinylora_val.jsonl with the step, which the demo's summary reads."""

import json

from omegaconf import OmegaConf

from tinylora_verl.verl_seam import trainer as trainer_mod
from tinylora_verl.verl_seam.trainer_files import VAL_FILE


def test_validate_records_headline_metrics(tmp_path, monkeypatch, capsys):
    import numpy as np

    steps = iter([0, 12])
    results = iter(
        [
            {"val-core/tinylora/arithmetic/reward/mean@8": np.float64(0.1875), "val-aux/x/reward/std@8": 0.3},
            {"val-core/tinylora/arithmetic/reward/mean@8": 0.5, "val-core/note": "text"},
        ]
    )

    def fake_super_validate(self):
        self.global_steps = next(steps)
        return next(results)

    monkeypatch.setattr(trainer_mod.PPOTrainerSync, "_validate", fake_super_validate)
    t = object.__new__(trainer_mod.TinyLoRATrainer)
    t.config = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path / "run")}})
    first = t._validate()
    second = t._validate()
    assert first["val-aux/x/reward/std@8"] == 0.3 and second["val-core/note"] == "text"
    rows = [json.loads(x) for x in (tmp_path / "run" / VAL_FILE).read_text().splitlines()]
    assert rows == [
        {"step": 0, "val-core/tinylora/arithmetic/reward/mean@8": 0.1875},
        {"step": 12, "val-core/tinylora/arithmetic/reward/mean@8": 0.5},
    ]
    assert (
        "[tinylora] validation step=12 val-core/tinylora/arithmetic/reward/mean@8=0.5"
        in capsys.readouterr().out
    )
