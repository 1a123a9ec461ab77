"""TextAttack pre-transformation constraint that keeps protected parts of a prompt (role tags) intact.

Prompts are often templates (``Customer: <message>\\nAgent:``); a robustness finding should be about
the words a user writes, not about the template. :class:`ProtectedSpans` maps character spans
matched by regular expressions (by default :data:`audit.perturb.ROLE_TAGS`) to the word indices of
TextAttack's ``AttackedText`` that overlap them, and forbids modifying those words. As every
pre-transformation constraint it also restricts the search's word-importance ranking (deleting a
word to measure its importance), so no query is spent on the template.

Example:
    >>> from textattack.shared import AttackedText  # doctest: +SKIP
    >>> ProtectedSpans()._get_modifiable_indices(AttackedText("Customer: Hi there\\nAgent:"))  # doctest: +SKIP
    {1, 2}
"""

from __future__ import annotations

from typing import Sequence

from ..perturb import ROLE_TAGS, compile_protect, protected_spans
from .offline import import_textattack

import_textattack()   # offline NLTK set-up before textattack's constraint module imports it

from textattack.constraints import PreTransformationConstraint  # noqa: E402


def word_spans(attacked_text) -> list[tuple[int, int] | None]:
    """Character span of each of ``attacked_text.words`` in its text (``None`` if a word cannot be located).

    One left-to-right pass (TextAttack's ``_text_index_of_word_index`` rescans from the start for every word).
    """
    text = attacked_text.text
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for w in attacked_text.words:
        i = text.find(w, pos)
        if i < 0:
            spans.append(None)
            continue
        spans.append((i, i + len(w)))
        pos = i + len(w)
    return spans


class ProtectedSpans(PreTransformationConstraint):
    """Forbid modifying words that overlap a match of any of ``patterns`` (regular expressions).

    Args:
        patterns: regular expressions (strings or compiled); default: role tags at the start of a line.
    """

    def __init__(self, patterns: Sequence[str] = ROLE_TAGS):
        self.patterns = [p.pattern if hasattr(p, "pattern") else p for p in patterns]
        self._compiled = compile_protect(patterns)

    def _get_modifiable_indices(self, current_text):
        # Matched on the current text: protected words are never modified, so a tag found in the
        # original is found again in every perturbed text.
        spans = protected_spans(current_text.text, self._compiled)
        indices = set()
        for i, ws in enumerate(word_spans(current_text)):
            if ws is None or not any(ws[0] < b and a < ws[1] for a, b in spans):
                indices.add(i)
        return indices

    def extra_repr_keys(self):
        return ["patterns"]
