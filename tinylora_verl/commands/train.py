"""tinylora-verl train [HYDRA OVERRIDES...]  — run GRPO training (tinylora_verl.main) with overrides.

Everything after `train` goes to Hydra unchanged, e.g.
    tinylora-verl train trainer.total_training_steps=2 tinylora.budget=26
    tinylora-verl train --cfg job          # print the composed config
    tinylora-verl train --config-name NAME # another config in config/
"""

from __future__ import annotations

import argparse
import sys

# cli.py hands every argument after `train` to run() unparsed (Hydra's own flags included).
PASSTHROUGH = True


def add_arguments(p) -> None:
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides (key=value ...) and flags")


def run(args) -> int:
    from .. import main as entry

    sys.argv = ["tinylora-verl train", *args.overrides]
    entry.main()
    return 0
