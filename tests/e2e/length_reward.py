"""A reward on which samples of a group differ even for a random tiny model (response length mod 7).

With exact-match rewards a random model scores 0 everywhere, every GRPO advantage is 0 and the update
is exactly zero; the e2e tests need a signal that varies within groups.
"""


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return (len(solution_str) % 7) / 7.0
