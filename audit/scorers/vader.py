"""``vader``: rule-based sentiment (VADER, Hutto & Gilbert 2014), whose lexicon ships in the wheel.

The score is VADER's ``compound`` value in [-1, 1]: the normalised sum of the valence of every
lexicon word, adjusted for negation, intensifiers, capitals and punctuation. Fast and offline; blind
to sentiment carried without lexicon words, which is fine for comparing groups on the same templates.
"""

from __future__ import annotations

from typing import Sequence

from . import SENTIMENT_SCORERS
from .base import ScorerError, SentimentScorer


class VaderScorer(SentimentScorer):
    """VADER compound sentiment per text (-1 most negative, +1 most positive)."""

    name = "vader"
    default_batch_size = 512   # per-text Python; batching only amortises call overhead

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def _score_batch(self, texts: list[str]) -> Sequence[float]:
        return [self._analyzer.polarity_scores(t)["compound"] for t in texts]

    def describe(self) -> dict:
        return {"backend": self.name, "kind": self.kind, "package": "vaderSentiment", "value": "compound"}


@SENTIMENT_SCORERS.register("vader")
def vader(arg: str | None) -> VaderScorer:
    if arg:
        raise ScorerError(f"vader:{arg}: the vader backend takes no argument")
    return VaderScorer()
