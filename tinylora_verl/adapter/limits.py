"""Bounds on the adapter's settings, so a mistyped value is refused before any work starts.

MAX_PROJECTION_ENTRIES  the P matrices of all modules together hold modules * u * r^2 numbers, generated in
                        pure Python (platform-independent by design, ~1-5 us each): 2**22 of them take
                        seconds, not minutes, and 16 MB of float32. Since every module has at least one
                        vector entry per trained parameter of its group, budget * r^2 and u * r^2 are
                        bounded by it too (checked on the config), and modules * u * r^2 on the model.
                        The paper's largest TinyLoRA budgets (10,000 on Qwen2.5-7B: u = 250) use ~5 %.
MAX_POWER_ITERS         the randomized SVD's error falls like (s_k+1 / s_j)^(2q+1) in q power iterations;
                        6 is the default, 32 is far past any use and still bounded work (2 QRs each).
MAX_SEED                seeds feed torch.Generator.manual_seed and the P recipe: 0 <= seed < 2**63.
MAX_SCALE               |alpha| and |lora_alpha|: the paper uses 1, the authors' scripts 32; beyond 1e6 a
                        value is a typo (it scales Delta W by a million), so it is refused.
The frozen rank r is bounded by the model (r <= min(out, in) of every adapted weight) and, through
MAX_PROJECTION_ENTRIES, by r^2 <= 2**22.
"""

from __future__ import annotations

MAX_PROJECTION_ENTRIES = 1 << 22
MAX_POWER_ITERS = 32
MAX_SEED = (1 << 63) - 1
MAX_SCALE = 1e6
