"""Experiments on top of the adapter and the trainer: SFT baseline, sweeps, tables and figures, loss surface.

    objective.py  masked next-token loss on reference solutions      sft.py      the SFT loop (AdamW)
    tasks.py      train / val / test data (arithmetic or parquet)    evaluate.py held-out generation + scoring
    spec.py       a sweep spec -> runs with deterministic names      rl.py       an RL run's Hydra command
    records.py    run.json / result.json of one run                  run_one.py  executes one run
    backends.py   local child processes or Ray jobs                  sweep.py    the resumable driver
    table.py      best LR per budget, mean ± std                     figures.py  accuracy vs parameters
    surface.py    2-D loss surface of a 2-parameter TinyLoRA         options.py  shared CLI flags
Commands: `tinylora-verl sft | sweep | table | surface` (tinylora_verl/commands/).
"""
