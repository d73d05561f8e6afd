"""Reward functions with verl's custom-reward signature: compute_score(data_source, solution_str, ground_truth, extra_info)."""
