"""The project's user-error types: a mistake in what the user gave (a setting, a path, a data file).

`tinylora-verl` (cli.py) prints a `UserError` as one line and exits 2; any other exception is a bug and
keeps its traceback. Raise one of these where the mistake is detected, with a message that names the
setting or path and the fix. The subclasses also derive from the builtin a library caller would expect
(`ValueError` for a bad value, `FileNotFoundError` for a missing path, `NotADirectoryError` for a file
where a directory belongs), so `except ValueError` in callers keeps working. Other packages hook in by
subclassing `UserError` (e.g. `class AdapterLoadError(UserError, ValueError)`).
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input; the message says what was wrong and what to do."""


class InvalidValue(UserError, ValueError):
    """A setting, argument or data value that is out of range or of the wrong type."""


class MissingPath(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class NotADirectory(UserError, NotADirectoryError):
    """A path that should be a directory (an output or cache directory) is something else."""


def check_dir_path(path: str | Path, flag: str) -> Path:
    """`path` checked as a place for a directory, before any work starts; nothing is created.

    Refuses, as a UserError naming `flag`, a path that is an existing file (or has a file among its
    parents) and a missing directory whose nearest existing parent is not writable."""
    p = Path(path).expanduser()
    for parent in (p, *p.parents):
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise NotADirectory(f"{flag} {path}: {parent} is a file, not a directory; give a directory path")
        if parent != p and not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: cannot create it, {parent} is not writable; give another path")
        break
    return p
