"""Pure-function metrics: diversity (Self-BLEU, distinct-n, rep-n, entropy), reference-based
quality (BLEU, chrF, ROUGE-L), perplexity, toxicity rates and stereotype preference.

Every function takes plain Python data and returns floats (or lists of floats
for the per-sample variants); none loads a model or touches the network.

Example:
    >>> from audit.metrics import distinct_n, self_bleu
    >>> texts = ["the cat sat", "the cat sat", "a dog ran"]
    >>> round(self_bleu(texts, max_n=2), 4), round(distinct_n(texts, 1), 4)
    (0.6667, 0.6667)
"""

from audit.metrics.distinct import distinct_n
from audit.metrics.entropy import ngram_entropy
from audit.metrics.evaluate_modules import MODULE_NAMES, module_path
from audit.metrics.perplexity import perplexity
from audit.metrics.repetition import rep_n, rep_n_per_text
from audit.metrics.self_bleu import self_bleu, self_bleu_per_text
from audit.metrics.stereotype import stereotype_preference
from audit.metrics.text_quality import (
    corpus_bleu,
    corpus_chrf,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
    sentence_rouge_l,
)
from audit.metrics.toxicity import expected_max_toxicity, mean_score, per_prompt_max, toxic_rate, toxicity_probability

__all__ = [
    "MODULE_NAMES",
    "corpus_bleu",
    "corpus_chrf",
    "distinct_n",
    "expected_max_toxicity",
    "mean_score",
    "module_path",
    "ngram_entropy",
    "per_prompt_max",
    "perplexity",
    "rep_n",
    "rep_n_per_text",
    "rouge_l",
    "self_bleu",
    "self_bleu_per_text",
    "sentence_bleu",
    "sentence_chrf",
    "sentence_rouge_l",
    "stereotype_preference",
    "toxic_rate",
    "toxicity_probability",
]
