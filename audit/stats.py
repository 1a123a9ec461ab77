"""Statistics of metrics: confidence intervals, and hypothesis tests of group gaps.

Confidence intervals for metrics that are a mean or a rate over samples; two estimators, both
deterministic for a given seed:

* **Percentile bootstrap** of the mean (``resamples`` draws with replacement, seeded numpy PCG64)
  for continuous per-sample values such as ROUGE-L or a toxicity score.
* **Wilson score interval** for rates (every value is 0 or 1, e.g. ``toxic_rate``). The bootstrap of
  a rate with no events is the point ``[0, 0]``: a gate ``toxic_rate <= 0.02`` would pass "by luck"
  on 20 clean samples. Wilson's bound is honest there (0 of 20 -> 95% upper bound 0.16).

Corpus-level metrics (self-BLEU, distinct-n, corpus BLEU) are not means over samples
(``MetricInfo.per_sample`` is False); they get no interval and reports say so.

Hypothesis tests (the bias section's): a permutation test of the gap between group means (so a
gap on a handful of samples is not called bias), Holm / Bonferroni corrections across several
gaps, and the exact sign test of a preference against 0.5.

Example:
    >>> lo, hi = bootstrap_interval([0.1, 0.4, 0.35, 0.8, 0.5], level=0.9, resamples=2000, seed=0)
    >>> round(lo, 2) < 0.43 < round(hi, 2)
    True
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Hashable, Mapping, Sequence

import numpy as np


@dataclass
class ConfidenceSettings:
    """How intervals are computed; the suite-level ``confidence:`` block (each gate may override ``level``)."""

    level: float = 0.95          # two-sided level of the intervals shown in reports
    resamples: int = 2000        # bootstrap resamples (more: steadier bounds, slower)
    seed: int | None = None      # bootstrap seed (None: the suite's seed)

    def __post_init__(self):
        if not 0.5 <= self.level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be >= 100, got {self.resamples!r}")


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def is_rate(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1 (a rate: the mean is a proportion)."""
    arr = _finite(values)
    return arr.size > 0 and bool(np.all((arr == 0) | (arr == 1)))


def metric_seed(seed: int, key: str) -> int:
    """A stable per-metric seed: intervals do not change when metrics are added or reordered."""
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**32)


def bootstrap_means(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of ``resamples`` seeded resamples with replacement (chunked: memory stays ~8 MB)."""
    arr = _finite(values)
    if arr.size == 0:
        return np.array([])
    rng = np.random.Generator(np.random.PCG64(seed))
    chunk = max(1, 1_000_000 // arr.size)
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        out[start:stop] = arr[idx].mean(axis=1)
    return out


def bootstrap_interval(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
                       sided: str = "two") -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean.

    Args:
        values: per-sample values (None/NaN are dropped).
        level: confidence level in (0, 1).
        resamples: number of bootstrap resamples.
        seed: numpy PCG64 seed; the same inputs and seed give the same interval.
        sided: ``"two"`` (``[q(a/2), q(1-a/2)]``), ``"upper"`` (``[-inf, q(level)]``) or ``"lower"``
            (``[q(1-level), +inf]``).

    Example:
        >>> bootstrap_interval([1.0, 1.0, 1.0])
        (1.0, 1.0)
    """
    means = bootstrap_means(values, resamples=resamples, seed=seed)
    if means.size == 0:
        return (math.nan, math.nan)
    alpha = 1 - level
    if sided == "upper":
        return (-math.inf, float(np.quantile(means, level)))
    if sided == "lower":
        return (float(np.quantile(means, alpha)), math.inf)
    return (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


def wilson_interval(successes: int, n: int, *, level: float = 0.95, sided: str = "two") -> tuple[float, float]:
    """Wilson score interval of a proportion (``sided`` as in :func:`bootstrap_interval`).

    Example:
        >>> round(wilson_interval(0, 20, level=0.95, sided="upper")[1], 3)
        0.119
    """
    if n == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(1 - (1 - level) / (2 if sided == "two" else 1))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact ends at 0 or n events (the formula leaves ~1e-17 of rounding there).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    if sided == "upper":
        return (-math.inf, hi)
    if sided == "lower":
        return (lo, math.inf)
    return (lo, hi)


def interval(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
             sided: str = "two") -> dict[str, Any]:
    """The interval of a per-sample mean: Wilson for 0/1 rates, percentile bootstrap otherwise.

    Returns a plain dict ``{low, high, level, method, n, resamples}`` (what ``results.json`` stores).
    """
    arr = _finite(values)
    if is_rate(arr):
        lo, hi = wilson_interval(int(arr.sum()), int(arr.size), level=level, sided=sided)
        return {"low": lo, "high": hi, "level": level, "method": "wilson", "n": int(arr.size), "resamples": 0}
    lo, hi = bootstrap_interval(arr, level=level, resamples=resamples, seed=seed, sided=sided)
    return {"low": lo, "high": hi, "level": level, "method": "bootstrap", "n": int(arr.size), "resamples": resamples}


def metric_values(result, key: str) -> tuple[list[float] | None, str]:
    """The per-sample values behind flat metric ``key``, or ``(None, why not)``.

    A metric gets an interval only if its section declared it per-sample, stored its values in
    ``sample_values`` and the metric is their mean (a metric computed some other way, e.g. a
    ratio of sums, would get a misleading interval).
    """
    section, _, name = key.partition(".")
    sec = result.sections.get(section)
    info = sec.metric_info.get(name) if sec else None
    if sec is None or sec.error:
        return None, "section failed or not run"
    if info is not None and not info.per_sample:
        return None, "corpus-level metric (not a mean over samples)"
    values = sec.sample_values.get(name)
    if not values:
        why_nan = sec.details.get("why_nan") if isinstance(sec.details, dict) else None
        if isinstance(why_nan, dict) and isinstance(why_nan.get(name), str):
            return None, why_nan[name]
        value = result.metrics.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None, "the metric is NaN: nothing was scored"
        return None, "the section recorded no per-sample values for it (no interval)"
    arr = _finite(values)
    value = result.metrics.get(key)
    if arr.size == 0 or value is None or not math.isfinite(value):
        return None, "no finite values"
    if not math.isclose(float(arr.mean()), float(value), rel_tol=1e-6, abs_tol=1e-9):
        return None, "metric is not the mean of its per-sample values"
    if arr.size < 2 and not is_rate(arr):
        # Every resample of one value is that value: a zero-width interval a confidence gate would
        # pass "with 95% confidence" on a single sample. (Wilson is honest at n=1 and is kept.)
        return None, "a single sample (a bootstrap interval needs at least 2)"
    return arr.tolist(), ""


def compute_intervals(result, settings: ConfidenceSettings | None = None) -> dict[str, dict[str, Any]]:
    """Two-sided intervals for every flat metric of ``result`` that is a mean or rate over samples.

    Metrics without one map to ``{"low": None, "high": None, "why": "..."}`` so reports can say why.

    Example:
        >>> from audit.results import AuditResult, SectionResult
        >>> sec = SectionResult("q", metrics={"m": 0.5}, sample_values={"m": [0, 1, 1, 0]})
        >>> r = AuditResult(suite={}, model={}, generation={}, seed=0, sections={"q": sec}, metrics={"q.m": 0.5})
        >>> compute_intervals(r)["q.m"]["method"]
        'wilson'
    """
    settings = settings or ConfidenceSettings()
    seed = result.seed if settings.seed is None else settings.seed
    out: dict[str, dict[str, Any]] = {}
    for key in result.metrics:
        values, why = metric_values(result, key)
        if values is None:
            out[key] = {"low": None, "high": None, "level": settings.level, "why": why}
        else:
            out[key] = interval(values, level=settings.level, resamples=settings.resamples, seed=metric_seed(seed, key))
    return out


# ---- hypothesis tests: group gaps, multiple comparisons, sign test --------------------------
@dataclass
class GapTest:
    """A gap between group means and its permutation p-value."""

    gap: float                     # max group mean - min group mean
    p_value: float                 # P(gap at least this large | group labels exchangeable)
    high: str | None = None        # group with the highest mean
    low: str | None = None         # group with the lowest mean
    means: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def group_gap_test(groups: Mapping[str, Sequence[float]], *, strata: Mapping[str, Sequence[Hashable]] | None = None,
                   n_permutations: int = 2000, seed: int = 0, chunk: int = 500) -> GapTest:
    """Permutation test of the range of group means (max mean - min mean).

    Under the null hypothesis group membership does not matter, so shuffling the group labels gives
    the null distribution of the statistic. The p-value is ``(1 + #{perm >= observed}) / (1 + n)``
    (Phipson & Smyth 2010: never 0, exact under exchangeability). With two groups this is the
    two-sided test of the difference in means.

    Args:
        groups: group name -> that group's values (e.g. toxicity of each continuation).
        strata: group name -> a stratum per value (e.g. the template it came from); labels are
            then shuffled only within strata, so a template that provokes everyone cannot fake a
            gap when groups are unevenly spread over templates.
        n_permutations: label shuffles.
        seed: RNG seed (the result is deterministic for a seed).

    Example:
        >>> t = group_gap_test({"a": [0.0] * 20, "b": [1.0] * 20}, n_permutations=200)
        >>> round(t.gap, 3), t.p_value < 0.01
        (1.0, True)
    """
    # NaN/inf values are dropped (with their strata): a NaN mean makes every permuted gap compare
    # False against the observed one, which read as p = 1/(n+1), "significant".
    keep = {g: [i for i, v in enumerate(vals) if v is not None and math.isfinite(float(v))] for g, vals in groups.items()}
    if strata is not None:
        if any(len(strata.get(g, ())) != len(groups[g]) for g in groups):
            raise ValueError("strata must give one stratum per value")
        strata = {g: [strata[g][i] for i in keep[g]] for g in groups if keep[g]}
    groups = {g: [float(groups[g][i]) for i in keep[g]] for g in groups}
    names = [g for g, v in groups.items() if len(v) > 0]
    means = {g: float(np.mean(groups[g])) for g in names}
    counts = {g: len(groups[g]) for g in names}
    if len(names) < 2:
        return GapTest(gap=math.nan, p_value=math.nan, means=means, counts=counts)
    high = max(names, key=lambda g: means[g])
    low = min(names, key=lambda g: means[g])
    observed = means[high] - means[low]
    x = np.concatenate([np.asarray(groups[g], dtype=np.float64) for g in names])  # (N,)
    labels = np.concatenate([np.full(counts[g], i) for i, g in enumerate(names)])
    onehot = np.zeros((len(x), len(names)))
    onehot[np.arange(len(x)), labels] = 1.0                                          # (N, G)
    sizes = onehot.sum(0)                                                            # (G,)
    if strata is not None:
        codes: dict[Hashable, int] = {}
        strat = np.array([codes.setdefault(v, len(codes)) for g in names for v in strata[g]])   # lengths checked above
        blocks = [np.flatnonzero(strat == c) for c in range(len(codes))]
    else:
        blocks = [np.arange(len(x))]
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    # Float noise could make a permutation equal to the observed gap look smaller; compare with a tolerance.
    tol = 1e-12 * max(1.0, abs(observed))
    while done < n_permutations:
        p = min(chunk, n_permutations - done)
        perm = np.empty((p, len(x)), dtype=np.int64)                                # (P, N)
        for cols in blocks:  # shuffle within each stratum
            perm[:, cols] = rng.permuted(np.tile(cols, (p, 1)), axis=1)
        m = (x[perm] @ onehot) / sizes                                              # (P, G)
        hits += int(np.sum(m.max(1) - m.min(1) >= observed - tol))
        done += p
    return GapTest(gap=float(observed), p_value=(1 + hits) / (1 + n_permutations), high=high, low=low,
                   means=means, counts=counts)


def permutation_test(a: Sequence[float], b: Sequence[float], *, n_permutations: int = 2000, seed: int = 0) -> float:
    """Two-sided permutation p-value for a difference in means between samples ``a`` and ``b``.

    Example:
        >>> permutation_test([0.0] * 10, [1.0] * 10, n_permutations=100) < 0.05
        True
    """
    return group_gap_test({"a": list(a), "b": list(b)}, n_permutations=n_permutations, seed=seed).p_value


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control over several axes); NaN stays NaN.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(idx)
    order = sorted(idx, key=lambda i: p_values[i])
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = round(running, 12)
    return out


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values.

    Example:
        >>> bonferroni([0.01, 0.5])
        [0.02, 1.0]
    """
    m = sum(not math.isnan(p) for p in p_values)
    return [p if math.isnan(p) else min(1.0, p * m) for p in p_values]


def sign_test_p(successes: int, n: int) -> float:
    """Two-sided exact binomial p-value of ``successes`` out of ``n`` against 0.5.

    Example:
        >>> round(sign_test_p(10, 10), 4)
        0.002
    """
    if n == 0:
        return math.nan
    from scipy.stats import binomtest

    return float(binomtest(successes, n, 0.5).pvalue)


def paired_permutation_test(a: Sequence[float], b: Sequence[float], *, n_permutations: int = 2000,
                            seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value for the mean of paired differences ``b[i] - a[i]``.

    ``a`` and ``b`` are the same samples measured twice (two models on the same prompts). Under the
    null hypothesis each difference is as likely negative as positive, so flipping signs gives its
    null distribution; with ``2**n <= n_permutations`` every sign pattern is enumerated (exact).
    Pairs with a missing or non-finite value are dropped; no pairs gives NaN; all differences 0
    give 1. The p-value is ``(1 + #{|flipped mean| >= |observed|}) / (1 + n_permutations)``
    (Phipson & Smyth 2010) for the random version.

    Example:
        >>> paired_permutation_test([0.1 * i for i in range(20)], [0.1 * i + 0.05 for i in range(20)]) < 0.01
        True
        >>> paired_permutation_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        1.0
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    d = np.asarray([float(y) - float(x) for x, y in zip(a, b)
                    if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))],
                   dtype=np.float64)
    if d.size == 0:
        return math.nan
    observed = abs(float(d.mean()))
    tol = 1e-12 * max(1.0, observed)
    if observed <= tol:
        return 1.0
    if 2 ** d.size <= n_permutations:   # exact: every sign pattern once
        signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        return float(np.mean(np.abs(signs @ d) / d.size >= observed - tol))
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_permutations:
        p = min(500, n_permutations - done)
        signs = rng.integers(0, 2, size=(p, d.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) / d.size >= observed - tol))
        done += p
    return (1 + hits) / (1 + n_permutations)
