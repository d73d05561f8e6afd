"""Find the final boxed answer in model output or a reference solution.

`last_boxed(text)` returns the content of the last complete `\\boxed{...}` or `\\fbox{...}` in `text`
(nested braces handled; escaped `\\{`/`\\}` are literal braces, not grouping), or of the brace-less
form `\\boxed 5` (content runs to the next whitespace or `$`). A box whose closing brace never comes
(an output cut off at the token limit) is skipped, so an earlier complete box counts. None if no box.

Cost: one regex pass over the text; runs of backslashes and of braces are single tokens, boxes are a
stack of (marker, depth), and only the chosen box's content is copied. So time is linear in the text
and memory linear in the nesting depth, whatever the input (issue 14: the previous brace regex was
quadratic on backslash runs, and every nested box's content was copied). Nothing here can raise on a str.
"""

from __future__ import annotations

import re

# a run of backslashes, then a box command (with the spaces and brace after it) or a brace;
# else a run of unescaped braces. Escaping: a brace after an odd run of backslashes is literal.
_TOKEN_RE = re.compile(r"(\\+)(?:(?:boxed|fbox)(?![A-Za-z])([ \t]*)(\{)?|([{}]))?|(\{+)|(\}+)")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_END_RE = re.compile(r"[\s$]")


def _boxes(text: str, start: int = 0):
    """Yield (marker position, content start, content end or None for a bare box) per complete box.

    Braced boxes are yielded when they close (inner before outer), bare ones where they appear.
    """
    depth, open_boxes = 0, []  # open_boxes: (marker, depth before its brace, position of its brace)
    n = len(text)
    for m in _TOKEN_RE.finditer(text, start):
        run, spaces, box_brace, run_brace, opens, closes = m.groups()
        if spaces is not None:  # \boxed or \fbox
            marker = m.start(1) + len(run) - 1
            if box_brace:
                open_boxes.append((marker, depth, m.end() - 1))
                depth += 1
            elif spaces and m.end() < n and not _BARE_END_RE.match(text, m.end()):
                yield marker, m.end(), None
            continue
        if opens:
            depth += len(opens)
            continue
        if closes:
            count, pos = len(closes), m.start(6)
        elif run_brace is not None and len(run) % 2 == 0:  # an odd run makes the brace literal
            if run_brace == "{":
                depth += 1
                continue
            count, pos = 1, m.start(4)
        else:
            continue
        floor = max(depth - count, 0)
        while open_boxes and open_boxes[-1][1] >= floor:  # the boxes these braces close
            marker, level, brace = open_boxes.pop()
            yield marker, brace + 1, pos + (depth - 1 - level)
        depth = floor


def _content(text: str, box) -> str:
    marker, start, end = box
    if end is None:
        m = _BARE_END_RE.search(text, start)
        end = m.start() if m else len(text)
    return text[start:end]


def boxed_all(text: str) -> list[str]:
    """Contents of every complete box in `text`, in order of appearance (copies them all: for short text)."""
    if not isinstance(text, str):
        return []
    return [_content(text, box) for box in sorted(_boxes(text))]


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{}`/`\\fbox{}` in `text`, or None."""
    if not isinstance(text, str):
        return None
    first = _BOX_RE.search(text)
    if first is None:
        return None
    best = max(_boxes(text, first.start()), default=None)
    return _content(text, best) if best is not None else None


def outer_groups(s: str) -> int:
    """How many outer brace pairs group the whole of `s` ("{{x}}" -> 2, "{1}+{2}" -> 0), in one pass."""
    k = len(s) - len(s.lstrip("{"))
    if k == 0 or not s.endswith("}"):
        return 0
    alive = k  # leading braces (levels 0..alive-1) not closed yet
    closes: list[int] = [-1] * k  # closes[level] = position of the brace closing leading level
    depth = 0
    for m in _TOKEN_RE.finditer(s):
        run, spaces, box_brace, run_brace, opens, close_run = m.groups()
        if spaces is not None:
            if box_brace:
                depth += 1
            continue
        count, pos = 0, 0
        if run_brace is not None and len(run) % 2 == 0:
            if run_brace == "{":
                depth += 1
            else:
                count, pos = 1, m.start(4)
        elif opens:
            depth += len(opens)
        elif close_run:
            count, pos = len(close_run), m.start(6)
        if count:
            floor = max(depth - count, 0)
            for level in range(floor, min(alive, depth)):
                closes[level] = pos + (depth - 1 - level)
            alive = min(alive, floor)
            depth = floor
    n, j = len(s), 0
    while j < k and closes[j] == n - 1 - j:
        j += 1
    return j
