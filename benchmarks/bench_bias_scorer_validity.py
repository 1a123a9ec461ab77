"""The bundled offline scorers on the bias section's group terms, no model (issue 26).

Prints, per axis, the profanity and VADER gaps between groups on the bare terms and on the
neutral template sentences (the smollm2 suite's 4 templates x 2 terms per group), as they are
and masked, then every bare term's scores. Run: python benchmarks/bias_scorer_validity.py
"""
import json
from audit.config import bundled_dir
from audit.evaluators.bias import BiasEvaluator, load_terms, load_templates
from audit.evaluators.identity_mask import axis_mask
from audit.scorers import get_scorer, get_sentiment_scorer
terms = load_terms(bundled_dir() / "data/bias_terms.yaml")
templates = load_templates(bundled_dir() / "data/bias_templates.jsonl")[:4]
tox, sent = get_scorer("profanity"), get_sentiment_scorer("vader")
ev = BiasEvaluator(BiasEvaluator.Options(terms_per_group=2, max_templates=4, pairs=None))
v = ev._scorer_validity(terms, templates, {a: axis_mask(g) for a, g in terms.items()}, lambda t: (tox.score(t), sent.score(t)))
print("| axis | profanity: bare-term gap | profanity: template-sentence gap | masked | VADER: bare-term gap | VADER: sentence gap | masked |")
for a, x in v.items():
    print(f"| {a} | {x['toxicity']['terms_gap']:.3f} | {x['toxicity']['sentences_gap']:.3f} | {x['toxicity']['gap_masked']:.3f} | {x['sentiment']['terms_gap']:.3f} | {x['sentiment']['sentences_gap']:.3f} | {x['sentiment']['gap_masked']:.3f} |")
print()
for a, x in v.items():
    top = sorted(x["terms"].items(), key=lambda kv: -kv[1]["toxicity"])
    print(a, "; ".join(f"{w} {s['toxicity']:.2f}/{s['sentiment']:+.2f}" for w, s in top))
