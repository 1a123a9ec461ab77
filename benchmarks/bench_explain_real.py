"""Attribution on a real model: `audit explain` at its defaults, and the attribution section's work.

Times, on a chat model (default SmolLM2-135M-Instruct as a transformers directory), in one run:

1. `audit explain` at default settings (method auto -> feature ablation above 20M parameters,
   the deletion check on) of one greedy answer of --tokens tokens, end to end as the CLI does it
   (load, generate, explain), with the peak RSS;
2. the attribution section's inner loop with the settings of suites/smollm2.yaml (8 explanations
   of --section-tokens tokens), and the same with per-token integrated gradients at its defaults
   for ONE answer (capped, completeness shown and flagged) for comparison;
3. counted work: forward rows of each (rows x sequence length), which does not depend on how
   busy the machine is; timings do (say so when you record them).

Usage:
    python benchmarks/bench_explain_real.py [--model DIR] [--threads 2] [--tokens 16] [--section-tokens 12] [--skip-ig]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

QUESTIONS = [
    "Why is the sky blue? Answer in one sentence.",
    "My order is late. What should I do?",
    "How do I reset my password?",
    "Can I return a gift without a receipt?",
    "What is the capital of France?",
    "Give me a tip for writing clear emails.",
    "Is it safe to pay with a credit card on your site?",
    "Your product broke after two days. I want a refund.",
]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_rows(model):
    """Wrap model.forward to count rows x tokens of every pass (forward-only and with gradients)."""
    seen = {"rows": 0, "tokens": 0}
    orig = model.forward

    def forward(*a, **kw):
        x = kw.get("input_ids")
        if x is None:
            x = kw.get("inputs_embeds")
        if x is not None:
            seen["rows"] += int(x.shape[0])
            seen["tokens"] += int(x.shape[0] * x.shape[1])
        return orig(*a, **kw)
    model.forward = forward
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/work/models/smollm2-hf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--section-tokens", type=int, default=12)
    ap.add_argument("--skip-ig", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from audit.config import GenerationSettings
    from audit.explain import explain, explain_many
    from audit.explain.files import explain_to_files, text_summary
    from audit.models.local import LanguageModel

    t0 = time.perf_counter()
    e, _ = explain_to_files(args.model, QUESTIONS[0], max_new_tokens=args.tokens)   # what `audit explain` runs
    t_cli = time.perf_counter() - t0
    print(f"# audit explain defaults ({e.method}, {len(e.target_tokens)} tokens, {e.n_prompt} prompt tokens of which "
          f"{e.n_prompt - len(e.excluded)} the user's): {t_cli:.1f} s end to end (load + generate + explain), "
          f"explain alone {e.seconds:.1f} s; peak RSS {rss_mb():.0f} MB")
    print(text_summary(e))

    lm = LanguageModel.load(args.model, chat_template="auto")
    counter = count_rows(lm.model)
    answers = [g[0] for g in lm.generate(QUESTIONS, GenerationSettings(max_new_tokens=args.section_tokens))]
    counter.update(rows=0, tokens=0)
    t0 = time.perf_counter()
    exps = explain_many(lm, list(zip(QUESTIONS, answers)), method="feature_ablation", max_target_tokens=args.section_tokens,
                        attribute_generated=False, top_k=2, n_random=4)
    t_sec = time.perf_counter() - t0
    print(f"# section settings of suites/smollm2.yaml, {len(exps)} explanations: {t_sec:.1f} s "
          f"({t_sec / len(exps):.1f} s each), {counter['rows']} forward rows / {counter['tokens']} row-tokens; "
          f"peak RSS {rss_mb():.0f} MB; faithfulness "
          f"{sum(x.faithfulness.score for x in exps) / len(exps):+.3f} nats, win rate "
          f"{sum(x.faithfulness.win_rate for x in exps) / len(exps):.2f}")
    if not args.skip_ig:
        counter.update(rows=0, tokens=0)
        t0 = time.perf_counter()
        ig = explain(lm, QUESTIONS[0], target=answers[0], method="integrated_gradients", faithfulness=False)
        t_ig = time.perf_counter() - t0
        print(f"# per-token integrated gradients, defaults, 1 answer of {len(ig.target_tokens)} tokens: {t_ig:.1f} s, "
              f"{ig.settings['n_steps']} points in {ig.settings['panels']} panels, completeness gap "
              f"{ig.completeness_error():.3g} ({'complete' if ig.complete else 'FLAGGED not complete'}), "
              f"{counter['rows']} forward rows (+ a backward per token per pass); peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
