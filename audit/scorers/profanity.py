"""``profanity``: alt-profanity-check, the fully offline toxicity backend.

A linear SVM (calibrated) over TF-IDF character/word features, trained on ~200k human-labelled
comments; its model ships inside the wheel, so it needs no download and scores thousands of texts
per second on one core. It flags profanity and insults, not subtler toxicity (threats without swear
words, identity attacks in polite wording): prefer ``detoxify:*`` where its weights are available.
"""

from __future__ import annotations

from typing import Sequence

from . import SCORERS
from .base import Scorer, ScorerError


class ProfanityScorer(Scorer):
    """alt-profanity-check's ``predict_prob``: P(profane) per text."""

    name = "profanity"
    default_batch_size = 256   # a sparse matrix product: big batches are nearly free

    def __init__(self):
        try:
            import profanity_check
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ScorerError(f"profanity: alt-profanity-check is not installed ({e}); pip install alt-profanity-check") from None
        self._predict_prob = profanity_check.predict_prob
        from importlib import metadata

        try:
            self._version = metadata.version("alt-profanity-check")
        except metadata.PackageNotFoundError:  # pragma: no cover
            self._version = "unknown"

    def _score_batch(self, texts: list[str]) -> Sequence[float]:
        return self._predict_prob(texts).tolist()

    def describe(self) -> dict:
        return {"backend": self.name, "kind": self.kind, "package": f"alt-profanity-check {self._version}",
                "label": "profane"}

    @property
    def cache_id(self) -> str:
        # A new release may ship a retrained model: its scores must not mix with the old ones.
        return f"profanity@{self._version}"


@SCORERS.register("profanity")
def profanity(arg: str | None) -> ProfanityScorer:
    """``profanity`` takes no argument and no options."""
    if arg:
        raise ScorerError(f"profanity:{arg}: the profanity backend takes no argument (use plain 'profanity')")
    return ProfanityScorer()
