"""The adapter's user-error types: a request or a file that cannot be honoured, never a bug.

Every message says what was wrong and what to do. All derive from TinyLoRAUserError (a ValueError),
so a front end (the CLI) can print these as one line and let anything else — a bug — show its traceback.
"""

from __future__ import annotations

from ..errors import UserError


class TinyLoRAUserError(UserError, ValueError):
    """Base of every error a user can cause through the adapter's API or files."""


class TinyLoRAConfigError(TinyLoRAUserError):
    """Invalid TinyLoRA settings; the message lists every problem and its fix."""


class PlanError(TinyLoRAUserError):
    """A budget/tying request that cannot be satisfied; the message says what to change."""


class TinyLoRAError(TinyLoRAUserError):
    """A TinyLoRA request that cannot be carried out on this model; the message says what to do."""


class AdapterLoadError(TinyLoRAUserError):
    """The adapter at a path cannot be loaded onto this model; the message says why and what to do."""
