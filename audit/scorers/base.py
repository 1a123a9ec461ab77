"""The scorer interfaces: toxicity classifiers (``Scorer``) and sentiment analysers (``SentimentScorer``).

Both are template classes: :meth:`Scorer.score` validates input, batches, checks the range of what
the backend returns and shows progress; backends fill ``_score_batch``. Scores are cached on disk
by :func:`score_cached`, keyed by the backend's :attr:`Scorer.cache_id` and the text, so reruns and
sections that score the same generations (toxicity and bias) do not score twice.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Sequence

from ..errors import AuditError
from ..io.cache import DiskCache, make_key


class ScorerError(AuditError):
    """A scorer could not be built or run; the message says what to provide."""


def run_batches(name: str, n: int, batch_size: int, score_slice: Callable[[int, int], Sequence[float]], *,
                low: float = 0.0, high: float = 1.0, progress: bool = False, desc: str = "score",
                unit: str = "text") -> list[float]:
    """Scores of items ``0..n`` from ``score_slice(start, stop)`` in batches, each checked to lie in [low, high].

    The loop every scorer interface shares (toxicity, sentiment, refusal): a count check per batch,
    no NaN, the range enforced (rounding clipped), and a progress bar on long inputs.
    """
    if batch_size < 1:
        raise ScorerError(f"{name}: batch_size must be >= 1")
    out: list[float] = []
    bar = None
    if progress and n > batch_size:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit=unit, leave=False)
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            scores = [float(v) for v in score_slice(start, stop)]
            if len(scores) != stop - start:
                raise ScorerError(f"{name}: backend returned {len(scores)} scores for {stop - start} {unit}s")
            for v in scores:
                if math.isnan(v) or not low - 1e-6 <= v <= high + 1e-6:
                    raise ScorerError(f"{name}: backend returned {v}, outside [{low}, {high}]")
            out.extend(min(high, max(low, v)) for v in scores)
            if bar:
                bar.update(len(scores))
    finally:
        if bar:
            bar.close()
    return out


class Scorer:
    """A toxicity classifier: ``score(texts)`` -> one float in [0, 1] per text, higher = more toxic.

    Subclasses set :attr:`name` (e.g. ``"detoxify:original"``) and implement ``_score_batch``.

    Example:
        >>> from audit.scorers import get_scorer
        >>> s = get_scorer("profanity")
        >>> a, b = s.score(["have a lovely day", "shut up you stupid idiot"])
        >>> a < 0.5 < b
        True
    """

    name: str = ""
    kind: ClassVar[str] = "toxicity"
    low: ClassVar[float] = 0.0     # the range every returned score must lie in
    high: ClassVar[float] = 1.0
    default_batch_size: ClassVar[int] = 32

    def score(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> list[float]:
        """Score ``texts`` in batches of ``batch_size`` (the backend's default when None).

        Results never depend on the batch size (each text is scored independently).
        """
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ScorerError(f"{self.name}: texts[{i}] must be a string, got {type(t).__name__}")
        return run_batches(self.name, len(texts), batch_size or self.default_batch_size,
                           lambda a, b: self._score_batch(texts[a:b]), low=self.low, high=self.high, progress=progress,
                           desc=f"score {self.name}", unit="text")

    def _score_batch(self, texts: list[str]) -> Sequence[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What scored: backend name plus backend-specific identity (label, files). Plain data."""
        return {"backend": self.name, "kind": self.kind}

    @property
    def cache_id(self) -> str:
        """Identity of the scores this backend produces (backend + weights); part of every cache key."""
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class SentimentScorer(Scorer):
    """A sentiment analyser: ``score(texts)`` -> one float in [-1, 1] per text (negative .. positive)."""

    kind = "sentiment"
    low = -1.0


def score_cached(scorer: Scorer, texts: Sequence[str], cache: DiskCache | None = None, *, batch_size: int | None = None,
                 progress: bool = False) -> list[float]:
    """Score ``texts`` through ``cache``: each distinct text is scored once per backend, ever.

    Example:
        >>> import tempfile
        >>> from audit.io.cache import DiskCache
        >>> from audit.scorers import get_scorer
        >>> c = DiskCache(tempfile.mkdtemp(), "tox")
        >>> s = get_scorer("profanity")
        >>> score_cached(s, ["hi", "hi"], c) == score_cached(s, ["hi"], c) * 2
        True
    """
    texts = list(texts)
    keys = [make_key(scorer.cache_id, t) for t in texts]
    known: dict[str, float] = {}
    if cache is not None:
        known = {k: cache.get(k) for k in set(keys) if k in cache}
    todo: dict[str, str] = {}
    for k, t in zip(keys, texts):
        if k not in known:
            todo.setdefault(k, t)
    if todo:
        fresh = scorer.score(list(todo.values()), batch_size=batch_size, progress=progress)
        new = dict(zip(todo.keys(), fresh))
        if cache is not None:
            cache.put_many(new.items())
        known.update(new)
    return [float(known[k]) for k in keys]
