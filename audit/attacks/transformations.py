"""TextAttack transformations audit adds: contraction and expansion as one correct word swap.

TextAttack 0.3.11's ``WordSwapContract`` compares a list position with a word index
(``(idx + 1) != next_idx``), so it only fires when every word index is modifiable and never under
a word-importance search that modifies one index at a time. This swap works per index: a
contraction at ``i`` is expanded (``don't`` -> ``do not``); an expandable pair starting at ``i``
is contracted (``do not`` -> ``don't``). It shares its table with :mod:`audit.perturb`.
"""

from __future__ import annotations

from ..perturb import CONTRACTIONS
from .offline import import_textattack

textattack = import_textattack()
from textattack.transformations import WordSwap  # noqa: E402

_CONTRACT = {k.lower(): v for k, v in CONTRACTIONS.items()}
_EXPAND = {v.lower(): k for k, v in CONTRACTIONS.items() if k != "cannot"}


def _cased(src: str, repl: str) -> str:
    return repl[0].upper() + repl[1:] if src[:1].isupper() and repl[:1].islower() else repl


class WordSwapContractions(WordSwap):
    """Contract an expandable pair of words, or expand a contraction, at each modifiable index.

    Example:
        >>> from textattack.shared import AttackedText
        >>> [t.text for t in WordSwapContractions()(AttackedText("I do not know"))]
        ["I don't know"]
    """

    def _get_transformations(self, current_text, indices_to_modify):
        words = current_text.words
        out = []
        for i in sorted(indices_to_modify):
            w = words[i]
            if w.lower() in _EXPAND:
                out.append(current_text.replace_word_at_index(i, _cased(w, _EXPAND[w.lower()])))
            if i + 1 < len(words):
                pair = f"{w} {words[i + 1]}".lower()
                if pair in _CONTRACT:
                    contracted = current_text.replace_word_at_index(i, _cased(w, _CONTRACT[pair]))
                    out.append(contracted.delete_word_at_index(i + 1))
        return out

    @property
    def deterministic(self):
        return True
