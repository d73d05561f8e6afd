"""Find the final boxed answer in model output or a reference solution.

`last_boxed(text)` returns the content of the last complete `\\boxed{...}` or `\\fbox{...}` in `text`
(nested braces handled; escaped `\\{`/`\\}` are literal braces, not grouping), or of the brace-less
form `\\boxed 5` (content runs to the next whitespace or `$`). A box whose closing brace never comes
(an output cut off at the token limit) is skipped, so an earlier complete box counts. None if no box.

Cost is linear in the length of the text (one regex pass over the braces after the first box), so
megabyte outputs are safe; nothing here can raise on a str.
"""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# a run of backslashes followed by a brace: the brace is literal when the run has odd length
_BRACE_RE = re.compile(r"(\\*)([{}])")
_BARE_END_RE = re.compile(r"[\s$]")


def _brace_pairs(text: str, start: int) -> dict[int, int]:
    """{index of '{' -> index of its matching '}'} for the grouping braces in text[start:]."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for m in _BRACE_RE.finditer(text, start):
        if len(m.group(1)) % 2 == 1:  # \{ or \} : a literal brace
            continue
        pos = m.start(2)
        if m.group(2) == "{":
            stack.append(pos)
        elif stack:
            pairs[stack.pop()] = pos
    return pairs


def _bare_content(text: str, pos: int) -> str | None:
    """Content of `\\boxed 5`: after spaces, up to the next whitespace or `$`."""
    if pos >= len(text) or text[pos] not in " \t":
        return None
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    m = _BARE_END_RE.search(text, pos)
    content = text[pos : m.start() if m else len(text)]
    return content or None


def boxed_all(text: str) -> list[str]:
    """Contents of every complete box in `text`, in order of appearance."""
    if not isinstance(text, str):
        return []
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    pairs = _brace_pairs(text, starts[0])
    out = []
    for pos in starts:
        brace = pos
        while brace < len(text) and text[brace] in " \t":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            pos = brace
            close = pairs.get(pos)
            if close is not None:
                out.append(text[pos + 1 : close])
        else:
            bare = _bare_content(text, pos)
            if bare is not None:
                out.append(bare)
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{}`/`\\fbox{}` in `text`, or None."""
    found = boxed_all(text)
    return found[-1] if found else None
