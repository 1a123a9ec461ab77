"""Showing text that came from outside (a suite, a dataset, a model) on one safe line.

Two hazards: a terminal obeys what it prints (a suite ``name`` with a newline and ANSI escapes can
print a fake ``PASS`` line in live colour), and a hostile value can be huge (an error message that
``repr``s a YAML alias bomb runs out of memory). :func:`one_line` makes a string a single line
without control characters; :func:`excerpt` shows a short, bounded ``repr`` of any value without
ever building the full one.

Example:
    >>> one_line("demo\\n\\x1b[32mPASS\\x1b[0m")
    'demo \\ufffd[32mPASS\\ufffd[0m'
    >>> excerpt("x" * 10_000, limit=20)
    "'xxxxxxx...xxxxxxx'"
"""

from __future__ import annotations

import re
import reprlib

# C0 and C1 control characters and DEL, left after whitespace is collapsed: ESC starts ANSI
# sequences, CR rewrites the line, NUL makes tools call a file binary, U+0085 is a line break.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Unicode line and paragraph separators and bidirectional overrides (which reorder what is shown).
_INVISIBLE = re.compile("[\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text, *, limit: int | None = None) -> str:
    """``text`` as one printable line: whitespace runs collapse to one space, control characters
    (ANSI escapes included) become U+FFFD; cut to ``limit`` characters with ``...`` if given."""
    s = _INVISIBLE.sub("\ufffd", _CONTROL.sub("\ufffd", " ".join(str(text).split())))
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def excerpt(value, *, limit: int = 80) -> str:
    """A short ``repr`` of ``value`` for an error message: bounded in time and length whatever its size.

    ``reprlib`` stops after a few items and levels, so a value with billions of shared sub-lists
    (a YAML alias bomb) costs microseconds.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # a hostile __repr__ (values from YAML never have one; stay safe anyway)
        text = f"<{type(value).__name__}>"
    s = one_line(text)
    if len(s) > limit:
        half = (limit - 3) // 2
        s = s[:half] + "..." + s[len(s) - half:]
    return s
