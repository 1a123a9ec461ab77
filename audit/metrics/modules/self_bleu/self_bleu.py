"""Self-BLEU as a Hugging Face ``evaluate`` metric; the maths is audit.metrics.self_bleu.

Load it offline by path (``evaluate`` copies this script into its module cache,
so it imports the installed ``audit`` package instead of neighbouring files):

    import evaluate
    from audit.metrics import module_path
    metric = evaluate.load(module_path("self_bleu"))
    metric.compute(predictions=["the cat sat", "the cat sat", "a dog ran"], max_n=2)
    # {'self_bleu': 0.666...}
"""

import datasets
import evaluate

from audit.metrics import self_bleu

_DESCRIPTION = (
    "Self-BLEU: the mean, over generated texts, of each text's BLEU against all the other "
    "texts as references (NLTK sentence_bleu, uniform weights, SmoothingFunction().method1). "
    "Higher means less diverse. Computed in linear time, identical to the NLTK loop."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts (at least 2), whitespace tokenized.
    max_n: highest n-gram order, default 4.
Returns:
    self_bleu: float in [0, 1].
"""

_CITATION = (
    "Zhu et al. 2018, Texygen: A Benchmarking Platform for Text Generation Models. SIGIR."
)


class SelfBleu(evaluate.Metric):
    """``evaluate`` wrapper around :func:`audit.metrics.self_bleu`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, max_n=4):
        return {"self_bleu": self_bleu(list(predictions), max_n)}
