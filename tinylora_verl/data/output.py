"""A data set directory written all at once: files go to a temporary directory beside the target, which
then takes the target's place by renames. A run that fails, or is killed, leaves the previous set as it
was (at worst, after a kill between the two renames, the old set sits beside it as `.NAME.old-*`) and
never a partial set under the target's name.

The target may be missing, empty, or a set written before (only SET_FILES in it); anything else in it
is refused up front, so replacing it can never delete a file prepare did not write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError, check_dir_path

# what `prepare` writes: <split>.parquet for the splits of every data set, and rejected.jsonl
SET_FILES = frozenset({"train.parquet", "test.parquet", "rejected.jsonl"})


def check_target(out: str | Path, flag: str = "--out") -> Path:
    """`out` as a place for a data set: refuses a file, an unwritable parent, a directory with other files."""
    target = check_dir_path(out, flag)
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if p.name not in SET_FILES)
        if others:
            listed = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise UserError(
                f"{flag} {out} holds files prepare did not write ({listed}); replacing the set there would "
                "delete them: give a new or empty directory"
            )
    return target


@contextmanager
def replaced_dir(out: str | Path) -> Iterator[Path]:
    """Yields a fresh temporary directory beside `out`; on a normal exit it becomes `out` (replacing the
    previous one), on an exception it is deleted and `out` is left untouched."""
    target = check_target(out).absolute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as err:
        raise UserError(
            f"--out {out}: cannot create a directory beside it ({err}); give another path"
        ) from None
    try:
        yield tmp
        mode = target.stat().st_mode if target.is_dir() else 0o777 & ~_umask()
        os.chmod(tmp, mode & 0o7777)
        if target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
