"""Run an audit from Python, inspect the results, and gate on them yourself.

    python examples/python_api.py [--model builtin:tiny] [--out reports/api]
"""

from __future__ import annotations

import argparse
import sys

from audit import LanguageModel, run_suite
from audit.config import GenerationSettings
from audit.suite import load_suite
from audit.metrics import distinct_n, self_bleu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--out", default="reports/api")
    args = ap.parse_args()

    # 1. A bundled suite, narrowed to two sections, on the chosen model.
    suite = load_suite("demo", model_override=args.model)
    result = run_suite(suite, out_dir=args.out, only_sections=["quality", "diversity"], progress=True)
    for key in ("quality.perplexity", "quality.chrf", "diversity.distinct_2", "diversity.self_bleu"):
        print(f"{key:<24} {result.metrics[key]:.4f}")
    worst = result.to_frame().sort_values("quality.chrf").head(3)
    print("lowest-chrF generations:")
    for _, row in worst.iterrows():
        print(f"  {row['id']}: {row['generation']!r}")

    # 2. The model adapter and metrics directly.
    lm = LanguageModel.load(args.model)
    samples = lm.generate(["Customer: my order has not arrived.\nAgent:"],
                          GenerationSettings(max_new_tokens=24, do_sample=True, num_samples=4, top_p=0.9), seed=0)[0]
    print("4 samples, self-BLEU %.3f, distinct-2 %.3f" % (self_bleu(samples), distinct_n(samples, 2)))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
