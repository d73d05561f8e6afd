"""Subcommands of the `tinylora-verl` CLI (see tinylora_verl/cli.py)."""
