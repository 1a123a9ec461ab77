"""Distinct-n as a Hugging Face ``evaluate`` metric; the maths is audit.metrics.distinct_n.

Load it offline by path (``evaluate`` copies this script into its module cache,
so it imports the installed ``audit`` package instead of neighbouring files):

    import evaluate
    from audit.metrics import module_path
    metric = evaluate.load(module_path("distinct_n"))
    metric.compute(predictions=["a b a b", "a b c"], n=2)
    # {'distinct_n': 0.6}
"""

import datasets
import evaluate

from audit.metrics import distinct_n

_DESCRIPTION = (
    "Distinct-n: unique n-grams / total n-grams over the whole corpus of generated texts "
    "(n-grams never cross text boundaries; 0.0 when there are none). Higher means more diverse."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts, whitespace tokenized.
    n: n-gram order, default 2.
Returns:
    distinct_n: float in [0, 1].
"""

_CITATION = (
    "Li et al. 2016, A Diversity-Promoting Objective Function for Neural Conversation Models. NAACL."
)


class DistinctN(evaluate.Metric):
    """``evaluate`` wrapper around :func:`audit.metrics.distinct_n`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, n=2):
        return {"distinct_n": distinct_n(list(predictions), n)}
