"""Evaluation: generate with vLLM (generate.py), score with reward_fns and summarise (scoring.py)."""
