"""Weight sync to the rollout engines: the `vector` wire format and its rollout-side receiver.

`sync_mode: full` (default) sends W_base + ΔW(v) for the adapted modules every step (engine.py).
`sync_mode: vector` sends, once, the pristine base weights and the frozen factors, and afterwards only
v and the sync number; each rollout worker rebuilds dtype(W_base + ΔW(v)) itself (receiver.py).
"""

SYNC_MODES = ("full", "vector")


def check_sync_mode(mode: str) -> str:
    if mode not in SYNC_MODES:
        raise ValueError(f"tinylora.sync_mode={mode!r}: use one of {', '.join(SYNC_MODES)}")
    return mode
