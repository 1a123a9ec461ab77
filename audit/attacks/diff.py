"""Word-level diffs of prompts and outputs as plain data, for reports to highlight what changed.

A diff is a list of ``[op, text]`` pairs, ``op`` one of ``"="`` (kept), ``"-"`` (only in the
original), ``"+"`` (only in the changed text); concatenating the ``"="`` and ``"-"`` pieces gives
the original back and the ``"="`` and ``"+"`` pieces the changed text, except that invisible and
control characters are spelled out (``⟨U+200B⟩``) so an imperceptible attack is visible on the
page. Reports must still escape every piece: the text is untrusted.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def visible(text: str) -> str:
    """Spell out invisible and control characters (zero-width, bidi overrides, backspace, ...).

    Example:
        >>> visible("a\\u200bb\\n")
        'a⟨U+200B⟩b\\n'
    """
    out = []
    for ch in text:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp"):
            out.append(ch)
        else:
            out.append(f"⟨U+{ord(ch):04X}⟩")
    return "".join(out)


def word_diff(a: str, b: str) -> list[list[str]]:
    """Diff ``a`` -> ``b`` at word granularity (whitespace and punctuation are their own tokens).

    Example:
        >>> word_diff("reset my password", "reset my pasword")
        [['=', 'reset my '], ['-', 'password'], ['+', 'pasword']]
    """
    ta, tb = _tokens(visible(a)), _tokens(visible(b))
    out: list[list[str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":
            _push(out, "=", "".join(ta[i1:i2]))
            continue
        if op in ("replace", "delete"):
            _push(out, "-", "".join(ta[i1:i2]))
        if op in ("replace", "insert"):
            _push(out, "+", "".join(tb[j1:j2]))
    return out


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text)


def _push(out: list[list[str]], op: str, text: str) -> None:
    if not text:
        return
    if out and out[-1][0] == op:
        out[-1][1] += text
    else:
        out.append([op, text])
