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


from textattack.constraints.semantics.sentence_encoders import SentenceEncoder as _TASentenceEncoder  # noqa: E402

# TextFooler's Universal Sentence Encoder setting (Jin et al. 2020; textattack's TextFoolerJin2019):
# angular similarity of a 15-word window around the swapped word, at least 0.840845057.
TEXTFOOLER_THRESHOLD = 0.840845057
TEXTFOOLER_WINDOW = 15


class MiniLMSentenceEncoder(_TASentenceEncoder):
    """TextAttack's sentence-encoder constraint on all-MiniLM-L6-v2 (:mod:`audit.scorers.encoder`), offline.

    TextAttack's recipes that expect a sentence encoder load the Universal Sentence Encoder from TF Hub
    (a download, and TensorFlow); this is the same constraint (a swap is kept only while the window
    around it stays similar to the original's) with the local MiniLM encoder, one instance per process.

    Args: as :class:`textattack.constraints.semantics.sentence_encoders.SentenceEncoder`; the defaults are
    TextFooler's (angular similarity, threshold 0.8408, 15-word window, compared with the text before the
    swap) but one: TextFooler skips the check on texts shorter than the window, which would leave most
    chat prompts (under 15 words) unchecked; here a short text is compared whole.

    Example:
        >>> c = MiniLMSentenceEncoder()  # doctest: +SKIP
        >>> c.encode(["a text"]).shape  # doctest: +SKIP
        torch.Size([1, 384])
    """

    def __init__(self, threshold: float = TEXTFOOLER_THRESHOLD, metric: str = "angular",
                 compare_against_original: bool = False, window_size: int | None = TEXTFOOLER_WINDOW,
                 skip_text_shorter_than_window: bool = False):
        super().__init__(threshold=threshold, metric=metric, compare_against_original=compare_against_original,
                         window_size=window_size, skip_text_shorter_than_window=skip_text_shorter_than_window)
        from ..scorers.encoder import SentenceEncoder

        SentenceEncoder.shared()   # loaded now: a missing encoder fails when the attack is built, in one line
        self.model = self   # TextAttack's single-pair path calls self.model.encode

    def encode(self, sentences):
        """Through the shared embedding cache: TextAttack asks for the original's window again for every
        candidate swap, and answers' similarities may already hold the same texts."""
        import torch

        from .similarity import embeddings

        return torch.from_numpy(embeddings(sentences))

    def extra_repr_keys(self):
        return ["metric", "threshold", "window_size", "skip_text_shorter_than_window", "compare_against_original"]
