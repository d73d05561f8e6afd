"""Time stamps of the generation phase, in every process of an e2e run (measurement only).

Put this directory on PYTHONPATH and name a trace file; every Python process of the run (trainer, agent-loop
worker, vLLM server, EngineCore, vLLM worker, reward worker) then imports this module at start-up and, as
soon as one of the verl/vLLM modules below is imported, wraps the listed methods so that each call appends
`{"ev": ..., "ph": "b"|"e", "t": ..., "pid": ...}` lines to the file:

    TINYLORA_GEN_TRACE=/tmp/trace.jsonl PYTHONPATH=$PWD:$PWD/bench/gen_trace python -m tinylora_verl.main ...
    python bench/gen_phase.py --trace /tmp/trace.jsonl       # the per-step breakdown

Without TINYLORA_GEN_TRACE nothing is patched. Nothing here changes what a method does or returns.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import time

_PATH = os.environ.get("TINYLORA_GEN_TRACE", "")

# module -> [(class, method, event name)]
TARGETS = {
    "verl.trainer.ppo.v1.trainer_base": [
        ("PPOTrainer", "_submit_batch_to_rollout", "submit"),
        ("PPOTrainer", "_step_once", "step_once"),
    ],
    "verl.trainer.ppo.v1.trainer_sync": [("PPOTrainerSync", "on_sample_end", "sleep_replicas")],
    "verl.trainer.ppo.v1.replay_buffer": [
        ("ReplayBuffer", "sample", "sample"),
        ("ReplayBufferAsync", "sample", "sample"),
        ("ReplayBuffer", "_sync_metadata_from_transfer_queue", "poll"),
        ("ReplayBuffer", "_wait_for_next_poll", "poll_sleep"),
    ],
    "verl.trainer.ppo.v1.agent_loop_tq": [
        ("AgentLoopWorkerTQ", "generate_sequences", "alw_dispatch"),
        ("AgentLoopWorkerTQ", "_run_prompt", "prompt"),
        ("AgentLoopWorkerTQ", "_agent_loop_postprocess", "postprocess"),
    ],
    "verl.experimental.agent_loop.agent_loop": [
        ("AgentLoopWorker", "_run_agent_loop", "agent_loop"),
        ("AgentLoopWorker", "_compute_score", "score"),
        ("AgentLoopBase", "ct_build_initial_tokens", "tokenize"),
    ],
    "verl.workers.rollout.vllm_rollout.vllm_async_server": [
        ("vLLMHttpServer", "generate", "server_generate"),
        ("vLLMHttpServer", "sleep", "server_sleep"),
        ("vLLMHttpServer", "wait_for_requests_to_drain", "server_drain"),
    ],
    "vllm.v1.engine.core": [("EngineCore", "step", "engine_step")],
    "vllm.v1.worker.gpu_worker": [("Worker", "execute_model", "execute_model")],
    "tinylora_verl.rollout.cpu_sleep": [(None, "sleep", "cpu_sleep")],
}


def _emit(ev: str, ph: str, **extra) -> None:
    line = json.dumps({"ev": ev, "ph": ph, "t": time.time(), "pid": os.getpid(), **extra}) + "\n"
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _extra(ev: str, result) -> dict:
    if ev == "engine_step" and isinstance(result, tuple) and result:
        outputs = result[0] or {}
        return {"n_out": sum(len(getattr(o, "outputs", []) or []) for o in outputs.values())}
    return {}


def _wrap(func, ev: str):
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args, **kwargs):
            _emit(ev, "b")
            try:
                result = await func(*args, **kwargs)
            finally:
                _emit(ev, "e")
            return result

        return awrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if ev == "execute_model" and args:
            so = args[1] if len(args) > 1 else kwargs.get("scheduler_output")
            n = getattr(so, "total_num_scheduled_tokens", None)
            _emit(ev, "b", tokens=n)
        else:
            _emit(ev, "b")
        result = None
        try:
            result = func(*args, **kwargs)
        finally:
            _emit(ev, "e", **_extra(ev, result))
        return result

    return wrapper


def _patch(module) -> None:
    for cls_name, meth, ev in TARGETS.get(module.__name__, []):
        owner = module if cls_name is None else getattr(module, cls_name, None)
        meta = getattr(owner, "__ray_metadata__", None)  # a @ray.remote class: patch the class it wraps
        if meta is not None:
            owner = meta.modified_class
        func = getattr(owner, meth, None) if owner is not None else None
        if func is None or getattr(func, "_gen_trace", False):
            continue
        wrapped = _wrap(func, ev)
        wrapped._gen_trace = True
        setattr(owner, meth, wrapped)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


if _PATH:
    sys.meta_path.insert(0, _Finder())
    for _name in list(TARGETS):
        if _name in sys.modules:
            _patch(sys.modules[_name])
