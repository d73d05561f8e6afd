"""rollout/vllm_replica.RequestSeeds: a request's sampling seed depends on what it is (the weights step,
its prompt, how many requests for that prompt came before it at that step), never on what else was served
before: so a run resumed from a checkpoint draws the same seeds at step k+1 as the uninterrupted run."""

from tinylora_verl.rollout.vllm_replica import RequestSeeds


def test_the_samples_of_a_group_get_different_seeds():
    seeds = RequestSeeds(seed=42, replica_rank=0)
    group = [seeds(1, [5, 6, 7]) for _ in range(4)]
    assert len(set(group)) == 4 and all(0 <= s < 2**31 for s in group)


def test_seeds_do_not_depend_on_earlier_steps_or_other_prompts():
    uninterrupted = RequestSeeds(seed=42, replica_rank=0)
    for _ in range(4):  # step 0's rollouts and a validation pass
        uninterrupted(0, [5, 6, 7])
        uninterrupted(0, [1, 2])
    want = [uninterrupted(1, [5, 6, 7]), uninterrupted(1, [8]), uninterrupted(1, [5, 6, 7])]
    resumed = RequestSeeds(seed=42, replica_rank=0)  # a fresh server after the restart
    assert [resumed(1, [5, 6, 7]), resumed(1, [8]), resumed(1, [5, 6, 7])] == want
    interleaved = RequestSeeds(seed=42, replica_rank=0)
    assert [interleaved(1, [8]), interleaved(1, [5, 6, 7]), interleaved(1, [5, 6, 7])] == [
        want[1],
        want[0],
        want[2],
    ]


def test_seed_rank_step_and_prompt_all_count():
    def first(seed=42, rank=0, step=1, prompt=(5, 6, 7)):
        return RequestSeeds(seed, rank)(step, list(prompt))

    base = first()
    assert (
        base == first()
        and len({base, first(seed=43), first(rank=1), first(step=2), first(prompt=(5, 6))}) == 5
    )
