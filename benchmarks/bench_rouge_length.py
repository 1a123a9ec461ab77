"""How ROUGE-L and chrF of the same answers change with where they are cut (the smollm2 suite's quality gate).

Reads a run's ``samples.jsonl`` (``audit run smollm2 --out DIR``), cuts every first generation at N tokens of
the model's tokenizer, and scores the cut answers against the references with the quality section's own
metrics. The answers do not change between columns; only how much of each is scored does.

    python benchmarks/bench_rouge_length.py DIR/samples.jsonl [--model builtin:smollm2] [--cuts 16 32 48 64 96 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from audit.metrics.text_quality import corpus_chrf, rouge_l  # noqa: E402
from audit.models.load import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples")
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--cuts", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128])
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.samples, encoding="utf-8")]
    hyps, refs = [r["generations"][0] for r in rows], [r["reference"] for r in rows]
    tok = load_model(args.model).tokenizer
    ids = [tok.encode(h, add_special_tokens=False) for h in hyps]
    print(f"{len(rows)} answers; median words: references {statistics.median(len(r.split()) for r in refs)}, "
          f"answers {statistics.median(len(h.split()) for h in hyps)}\n")
    print("| cut at (tokens) | " + " | ".join(map(str, args.cuts)) + " |\n|---|" + "---|" * len(args.cuts))
    cut = {n: [tok.decode(i[:n]) for i in ids] for n in args.cuts}
    print("| ROUGE-L F1 | " + " | ".join(f"{rouge_l(cut[n], refs):.3f}" for n in args.cuts) + " |")
    print("| corpus chrF | " + " | ".join(f"{corpus_chrf(cut[n], refs):.1f}" for n in args.cuts) + " |")


if __name__ == "__main__":
    main()
