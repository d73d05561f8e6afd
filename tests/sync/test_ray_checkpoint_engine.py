"""The `tinylora_ray` checkpoint-engine backend, driven the way verl's CheckpointEngineManager drives it
(prepare -> build_topology -> init_process_group -> send/receive -> finalize), on a local Ray cluster:
one sender rank, one non-sending actor rank, two rollout receivers; a setup-sized stream cut into chunks
and a vector stream must arrive complete, in order and bit-identical."""

import asyncio

import pytest
import torch

from tinylora_verl.sync import wire


@pytest.fixture(scope="module")
def ray_local():
    import ray
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


async def _sync(engines_actor, engines_rollout, stream_fn):
    from tinylora_verl.sync.ray_checkpoint_engine import RayObjectCheckpointEngine
    meta = [e.prepare() for e in engines_actor + engines_rollout]
    a_kw, r_kw = RayObjectCheckpointEngine.build_topology(len(engines_actor), len(engines_rollout), meta)
    for i, e in enumerate(engines_actor):
        e.init_process_group(**{k: v[i] for k, v in a_kw.items()})
    for i, e in enumerate(engines_rollout):
        e.init_process_group(**{k: v[i] for k, v in r_kw.items()})
    iterated = [0] * len(engines_actor)

    def counting(i):
        for item in stream_fn():
            iterated[i] += 1
            yield item

    async def collect(e):
        return [x async for x in e.receive_weights()]

    results = await asyncio.gather(*[e.send_weights(counting(i)) for i, e in enumerate(engines_actor)],
                                   *[collect(e) for e in engines_rollout])
    for e in engines_actor + engines_rollout:
        e.finalize()
    return results[:len(engines_actor)], results[len(engines_actor):], iterated


def test_streams_arrive_complete_and_in_order(ray_local):
    from tinylora_verl.sync.ray_checkpoint_engine import RayObjectCheckpointEngine
    torch.manual_seed(0)
    setup = [(wire.META, wire.encode_meta({"kind": "setup", "modules": [], "siblings": []}))]
    setup += [(f"model.layers.{i}.w", torch.randn(64, 64)) for i in range(20)]      # 16 KB each
    setup += [(wire.VECTOR, torch.randn(13, 1))]
    vector = [(wire.META, wire.encode_meta({"kind": "vector", "sync": 2})), (wire.VECTOR, torch.randn(13, 1))]
    actor = [RayObjectCheckpointEngine(bucket_size=40_000, is_master=True),
             RayObjectCheckpointEngine(bucket_size=40_000, is_master=False)]
    rollout = [RayObjectCheckpointEngine(bucket_size=40_000) for _ in range(2)]
    for stream in (setup, vector):
        sent, received, iterated = asyncio.run(_sync(actor, rollout, lambda: iter(stream)))
        assert iterated == [len(stream)] * 2                 # every actor rank ran the stream (collectives)
        total = sum(t.numel() * t.element_size() for _, t in stream)
        assert sent[0]["tinylora/ray_ckpt_bytes"] == total and sent[1] == {}
        # 16 KB tensors, objects closed at >= 40 KB: 3 tensors per object, 20 tensors -> 7 objects
        assert sent[0]["tinylora/ray_ckpt_chunks"] == (1 if stream is vector else 7)
        for got in received:
            assert [n for n, _ in got] == [n for n, _ in stream]
            assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, stream))
    assert total <= 1024                                      # the vector sync
