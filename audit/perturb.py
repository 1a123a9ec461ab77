"""Prompt perturbations for consistency (CheckList INV / DIR) and HELM-style worst-case robustness.

Pure Python, no model and no TextAttack: each perturbation maps a prompt to a variant, seeded by
``(seed, name, prompt)`` so runs are reproducible and independent of order. Two kinds:

- ``inv`` (meaning-preserving; the output should not change): ``lowercase``, ``uppercase_first``,
  ``punctuation`` (drop or add sentence-final punctuation), ``contractions`` (contract or expand,
  HELM's contraction/expansion), ``typos`` (HELM-style keyboard-neighbour, swap and drop typos),
  ``whitespace`` (extra spaces between words).
- ``dir`` (meaning-changing; the output should change): ``negation`` (add or remove "not"),
  ``numbers`` (change the numbers in the prompt).

A perturbation that does not apply returns the prompt unchanged; callers skip those pairs.

Example:
    >>> perturb("Where is my order?", "lowercase")
    'where is my order?'
    >>> perturb("I do not know", "contractions")
    "I don't know"
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .registry import Registry


@dataclass(frozen=True)
class Perturbation:
    """A named prompt perturbation: ``fn(text, rng) -> text``; ``kind`` is ``inv`` or ``dir``."""

    name: str
    fn: Callable[[str, random.Random], str]
    kind: str
    description: str


PERTURBATIONS: Registry = Registry("perturbation")


def _register(name: str, kind: str, description: str):
    def deco(fn):
        PERTURBATIONS.register(name)(Perturbation(name, fn, kind, description))
        return fn

    return deco


def perturb(text: str, name: str, *, seed: int = 0, protect: Sequence[str | re.Pattern] = ()) -> str:
    """Apply the perturbation ``name`` to ``text`` (deterministic for a given seed).

    ``protect`` (regular expressions, e.g. :data:`ROLE_TAGS`) marks text the perturbation must
    leave exactly as it is: each match is swapped for a private-use placeholder character (not a
    letter, digit or space, so no perturbation edits it or sees a word there), the perturbation runs
    on the whole masked text (so "the first line", "at least one gap" keep their meaning), and the
    matches are put back. The random seed depends on the original text, so a prompt without
    matches gets exactly the variant it gets without ``protect``.

    Example:
        >>> perturb("Hello world", "whitespace", seed=1) != "Hello world"
        True
        >>> perturb("Customer: Where is my order?\\nAgent:", "lowercase", protect=ROLE_TAGS)
        'Customer: where is my order?\\nAgent:'
    """
    p = PERTURBATIONS.get(name)
    digest = hashlib.sha256(f"{seed}\x00{name}\x00{text}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "little"))
    spans = protected_spans(text, protect)
    if not spans:
        return p.fn(text, rng)
    masked, marks = _mask(text, spans)
    out = p.fn(masked, rng)
    # Every placeholder must survive once, in order; a perturbation that moved or dropped one
    # cannot be re-assembled faithfully, so the prompt counts as not perturbed (the pair is skipped).
    if [c for c in out if c in marks] != list(marks):
        return text
    for mark, original in marks.items():
        out = out.replace(mark, original)
    return out


#: The default protected spans of the robustness and consistency sections: a role tag (one word and a
#: colon, e.g. ``Customer:`` / ``Agent:``, not ``https:``) at the start of any line, with the spaces
#: after it. Prompts built as ``Customer: <message>\nAgent:`` then expose only the message.
ROLE_TAGS = (r"(?m)^[ \t]*[A-Za-z][\w-]{0,30}:(?!//)[ \t]*",)


def compile_protect(patterns: Sequence[str | re.Pattern], *, field_name: str = "protect") -> list[re.Pattern]:
    """Compile ``patterns``; raise ``ValueError`` naming ``field_name`` for an invalid or empty-matching one.

    Example:
        >>> compile_protect(["^Q:"])[0].pattern
        '^Q:'
    """
    out = []
    for p in patterns:
        if isinstance(p, re.Pattern):
            out.append(p)
            continue
        if not isinstance(p, str) or not p:
            raise ValueError(f"{field_name}: expected a non-empty regular expression, got {p!r}")
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"{field_name}: invalid regular expression {p!r}: {e}") from None
    return out


def protected_spans(text: str, patterns: Sequence[str | re.Pattern]) -> list[tuple[int, int]]:
    """Character spans of ``text`` matched by any of ``patterns``, merged and sorted (empty matches ignored).

    Example:
        >>> protected_spans("Customer: Hi\\nAgent:", ROLE_TAGS)
        [(0, 10), (13, 19)]
    """
    found = sorted(m.span() for rx in compile_protect(patterns) for m in rx.finditer(text) if m.end() > m.start())
    merged: list[tuple[int, int]] = []
    for a, b in found:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _mask(text: str, spans: list[tuple[int, int]]) -> tuple[str, dict[str, str]]:
    # Private-use characters (category Co: not \w, not \s, unchanged by lower()/upper()) that the
    # text does not already contain.
    free = (chr(c) for c in range(0xE000, 0xF8FF) if chr(c) not in text)
    marks: dict[str, str] = {}
    out, last = [], 0
    for a, b in spans:
        mark = next(free)
        marks[mark] = text[a:b]
        out += [text[last:a], mark]
        last = b
    out.append(text[last:])
    return "".join(out), marks


def names(kind: str | None = None) -> list[str]:
    """Registered perturbation names, optionally only one kind (``inv`` or ``dir``)."""
    return [n for n, p in PERTURBATIONS.items() if kind is None or p.kind == kind]


# ---- meaning-preserving (INV) -------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@_register("lowercase", "inv", "lower-case the whole prompt")
def _lowercase(text: str, rng: random.Random) -> str:
    return text.lower()


@_register("uppercase_first", "inv", "capitalise the first letter of every sentence and line")
def _uppercase_first(text: str, rng: random.Random) -> str:
    return re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


@_register("punctuation", "inv", "drop sentence-final punctuation, or add a period where there is none")
def _punctuation(text: str, rng: random.Random) -> str:
    stripped = re.sub(r"([A-Za-z0-9])[.!?]+(?=\s|$)", r"\1", text)
    if stripped != text:
        return stripped
    # Nothing to drop: end the first line that has words with a period instead.
    return re.sub(r"([A-Za-z0-9])(?=\s*(\n|$))", r"\1.", text, count=1)


# Contractions and their expansions (a small closed list: unambiguous both ways).
CONTRACTIONS = {
    "do not": "don't", "does not": "doesn't", "did not": "didn't", "is not": "isn't", "are not": "aren't",
    "was not": "wasn't", "were not": "weren't", "have not": "haven't", "has not": "hasn't", "had not": "hadn't",
    "can not": "can't", "cannot": "can't", "could not": "couldn't", "will not": "won't", "would not": "wouldn't",
    "should not": "shouldn't", "must not": "mustn't", "I am": "I'm", "you are": "you're", "we are": "we're",
    "they are": "they're", "it is": "it's", "that is": "that's", "there is": "there's", "what is": "what's",
    "I have": "I've", "you have": "you've", "we have": "we've", "they have": "they've", "I will": "I'll",
    "you will": "you'll", "we will": "we'll", "they will": "they'll", "I would": "I'd", "let us": "let's",
}
_EXPANSIONS = {v.lower(): k for k, v in CONTRACTIONS.items() if k != "cannot"}


def _match_case(src: str, repl: str) -> str:
    return repl[0].upper() + repl[1:] if src[:1].isupper() and repl[:1].islower() else repl


@_register("contractions", "inv", "contract expanded forms (do not -> don't), or expand contractions when there are none")
def _contractions(text: str, rng: random.Random) -> str:
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(CONTRACTIONS, key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    keys = {k.lower(): v for k, v in CONTRACTIONS.items()}
    contracted = pattern.sub(lambda m: _match_case(m.group(0), keys[m.group(0).lower()]), text)
    if contracted != text:
        return contracted
    rev = re.compile(r"\b(" + "|".join(re.escape(k) for k in _EXPANSIONS) + r")(?![A-Za-z'])", re.IGNORECASE)
    return rev.sub(lambda m: _match_case(m.group(0), _EXPANSIONS[m.group(0).lower()]), text)


# Neighbouring keys on a QWERTY keyboard (lower case), for realistic typos.
_QWERTY = {
    "q": "wa", "w": "qase", "e": "wsdr", "r": "edft", "t": "rfgy", "y": "tghu", "u": "yhji", "i": "ujko", "o": "iklp",
    "p": "ol", "a": "qwsz", "s": "awedxz", "d": "serfcx", "f": "drtgvc", "g": "ftyhbv", "h": "gyujnb", "j": "huikmn",
    "k": "jiolm", "l": "kop", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}


def _typo(word: str, rng: random.Random) -> str:
    for _ in range(8):  # swapping "tt" changes nothing: draw again
        out = _one_typo(word, rng)
        if out != word:
            return out
    return word[:1] + word[2:]


def _one_typo(word: str, rng: random.Random) -> str:
    # Keep the first and last letter (the word stays readable); words have 4+ letters.
    op = rng.choice(("neighbour", "swap", "drop"))
    if op == "swap":
        i = rng.randrange(1, len(word) - 2)  # swap letters i and i+1, both inner
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    i = rng.randrange(1, len(word) - 1)
    if op == "drop":
        return word[:i] + word[i + 1:]
    c = word[i]
    near = _QWERTY.get(c.lower())
    if not near:
        return word[:i] + word[i + 1:]
    r = rng.choice(near)
    return word[:i] + (r.upper() if c.isupper() else r) + word[i + 1:]


@_register("typos", "inv", "typos in ~10% of words of 4+ letters (at least one): neighbouring key, swap or drop")
def _typos(text: str, rng: random.Random) -> str:
    spans = [m.span() for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not spans:
        return text
    chosen = {j for j in range(len(spans)) if rng.random() < 0.1} or {rng.randrange(len(spans))}
    out, last = [], 0
    for j, (a, b) in enumerate(spans):
        out.append(text[last:a])
        out.append(_typo(text[a:b], rng) if j in chosen else text[a:b])
        last = b
    out.append(text[last:])
    return "".join(out)


@_register("whitespace", "inv", "an extra space after ~20% of word gaps (at least one)")
def _whitespace(text: str, rng: random.Random) -> str:
    gaps = [m.start() for m in re.finditer(r"(?<=\S) (?=\S)", text)]
    if not gaps:
        return text
    chosen = {g for g in gaps if rng.random() < 0.2} or {rng.choice(gaps)}
    return "".join(ch + (" " if i in chosen else "") for i, ch in enumerate(text))


# ---- meaning-changing (DIR) ---------------------------------------------------------------------
_NEGATABLE = re.compile(r"\b(is|are|was|were|can|could|will|would|should|do|does|did|have|has)\b(?! not\b)(?!n't)",
                        re.IGNORECASE)
# Negations to remove: can't/cannot -> can, won't -> will, <aux>n't -> <aux> (ASCII or typographic
# apostrophe), and a standalone "not" wherever it stands ("do not", "is it not").
_NEGATED = re.compile(r"\b(can)(?:not|['\u2019]t)\b|\b(won)['\u2019]t\b"
                      r"|\b(is|are|was|were|could|would|should|must|do|does|did|have|has|had|need)n['\u2019]t\b"
                      r"|\s+not\b", re.IGNORECASE)


@_register("negation", "dir", "remove the first negation, or negate the first auxiliary verb (is -> is not)")
def _negation(text: str, rng: random.Random) -> str:
    m = _NEGATED.search(text)
    if m:
        can, won, aux = m.group(1, 2, 3)
        kept = can or aux or (_match_case(won, "will") if won else "")
        return text[:m.start()] + kept + text[m.end():]
    special = {"can": "cannot"}
    m = _NEGATABLE.search(text)
    if m:
        word = m.group(1)
        repl = special.get(word.lower(), f"{word} not")
        return text[:m.start()] + _match_case(word, repl) + text[m.end():]
    return text


@_register("numbers", "dir", "replace every number with a different one")
def _numbers(text: str, rng: random.Random) -> str:
    def change(m: re.Match) -> str:
        old = int(m.group(0))
        new = old
        while new == old:
            new = rng.randint(max(0, old // 2), old * 2 + 9)
        return str(new)

    return re.sub(r"\b\d{1,9}\b", change, text)
