"""`tinylora_ray`: a verl checkpoint-engine backend that moves weight streams through Ray's object store.

For disaggregated rollouts (trainer and vLLM on different workers) verl sends weights through a
checkpoint-engine backend (`actor_rollout_ref.rollout.checkpoint_engine.backend`). The TinyLoRA vector
protocol (tinylora_verl/sync/wire.py) is an ordinary (name, tensor) stream, so verl's own backends carry
it unchanged; this backend is the one sized for it: no NCCL group, no RDMA registration, any network
Ray reaches. The vector stream after the setup is ~100 bytes: one small object per step. The setup stream
(every weight once) is cut into objects of `bucket_size` bytes.

Select it with
    actor_rollout_ref.rollout.checkpoint_engine.backend=tinylora_ray
    actor_rollout_ref.rollout.checkpoint_engine.custom_backend_module=tinylora_verl.sync.ray_checkpoint_engine

Protocol per sync (verl's CheckpointEngineManager drives it): `prepare` on every worker, then
`build_topology` (in the trainer process) creates a mailbox actor for this sync, `init_process_group`
gives each worker its handle; every actor rank iterates the stream (the FSDP all-gathers are collectives)
and rank 0 posts it chunk by chunk; every rollout worker reads the chunks in order; `finalize` drops them.
"""

from __future__ import annotations

import asyncio
import uuid

import ray
import torch

from verl.checkpoint_engine.base import CheckpointEngine, CheckpointEngineRegistry

BACKEND = "tinylora_ray"


@ray.remote(num_cpus=0)
class _Mailbox:
    """Chunks of one sync, in order; `get(i)` waits until chunk i (or the end) has been posted."""

    def __init__(self):
        self.chunks: list = []
        self.closed = False
        self.event = asyncio.Event()

    async def put(self, wrapped_ref: list) -> None:
        self.chunks.append(wrapped_ref[0])
        self.event.set()

    async def close(self) -> None:
        self.closed = True
        self.event.set()

    async def get(self, index: int):
        while index >= len(self.chunks) and not self.closed:
            self.event.clear()
            await self.event.wait()
        return [self.chunks[index]] if index < len(self.chunks) else None


@CheckpointEngineRegistry.register(BACKEND)
class RayObjectCheckpointEngine(CheckpointEngine):
    def __init__(self, bucket_size: int, is_master: bool = False, **kwargs):
        self.bucket_size = int(bucket_size)
        self.is_master = is_master
        self.mailbox = None
        self.rank = None

    def prepare(self) -> dict:
        return {"is_master": self.is_master}

    @classmethod
    def build_topology(cls, actor_wg_world_size: int, rollout_world_size: int, metadata: list[dict]):
        mailbox = _Mailbox.options(name=f"tinylora_ckpt_{uuid.uuid4().hex}").remote()
        actor = {"rank": list(range(actor_wg_world_size)), "mailbox": [mailbox] * actor_wg_world_size}
        rollout = {"rank": [-1] * rollout_world_size, "mailbox": [mailbox] * rollout_world_size}
        return actor, rollout

    def init_process_group(self, rank: int, mailbox, **kwargs):
        self.rank, self.mailbox = rank, mailbox

    def finalize(self):
        self.mailbox = None

    async def send_weights(self, weights, global_steps: int | None = None):
        """Every actor rank iterates the stream; rank 0 posts it. Returns per-sync metrics."""
        sender = self.rank == 0
        chunk, size, total, chunks = [], 0, 0, 0
        for name, tensor in weights:
            if not sender:
                continue
            t = tensor.detach().to("cpu", copy=True).contiguous()
            chunk.append((name, t))
            size += t.numel() * t.element_size()
            if size >= self.bucket_size:
                await self.mailbox.put.remote([ray.put(chunk)])
                total, chunks, chunk, size = total + size, chunks + 1, [], 0
        if sender:
            if chunk:
                await self.mailbox.put.remote([ray.put(chunk)])
                total, chunks = total + size, chunks + 1
            await self.mailbox.close.remote()
            return {"tinylora/ray_ckpt_bytes": float(total), "tinylora/ray_ckpt_chunks": float(chunks)}
        return {}

    async def receive_weights(self, global_steps: int | None = None):
        index = 0
        while True:
            wrapped = await self.mailbox.get.remote(index)
            if wrapped is None:
                return
            for name, tensor in await wrapped[0]:
                yield name, tensor
            index += 1
