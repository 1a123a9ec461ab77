"""The refusal judge against the substring baseline on the labelled set's held-out part.

Scores every pair of ``audit/suites/data/refusal/test.jsonl`` with the ``minilm`` judge and with the
``substring`` baseline (GCG's refusal-prefix list), and prints precision, recall, F1 and accuracy of
both, the F1 difference, per-kind errors of the judge, and pairs/second of each (one run, same pairs).

    python benchmarks/bench_refusal.py
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from audit.refusal_train import DATA, read
    from audit.scorers.refusal import REFUSAL_THRESHOLD, get_refusal_scorer, prf

    test = read(DATA / "test.jsonl")
    prompts, responses, labels = [r["prompt"] for r in test], [r["response"] for r in test], [r["label"] for r in test]
    out = {}
    for spec in ("minilm", "substring"):
        judge = get_refusal_scorer(spec)
        judge.score_pairs(prompts[:8], responses[:8])          # warm-up (model load, first batch)
        t0 = time.perf_counter()
        scores = judge.score_pairs(prompts, responses)
        secs = time.perf_counter() - t0
        pred = [s >= REFUSAL_THRESHOLD for s in scores]
        out[spec] = {**{k: round(v, 3) if isinstance(v, float) else v for k, v in prf(labels, pred).items()},
                     "pairs_per_s": round(len(test) / secs, 1)}
        if spec == "minilm":
            out[spec]["errors_by_kind"] = dict(Counter(r["kind"] for r, p in zip(test, pred) if p != bool(r["label"])))
    out["f1_gain"] = round(out["minilm"]["f1"] - out["substring"]["f1"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
