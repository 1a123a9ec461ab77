"""Scoring throughput per backend: texts/second batched vs one text at a time.

For each toxicity/sentiment backend, scores the same N texts (continuations of the bundled
provoking prompts, 3-40 words, seeded) once with the backend's batch size and once with
``batch_size=1`` (the baseline, measured in the same run), and prints texts/second and the ratio.
Also checks the two passes give the same scores (batching must not change results).

Backends: ``profanity`` and ``vader`` always; ``detoxify`` and ``hf`` on tiny random BERTs in the
real on-disk formats (the loading and predict code paths are the real ones; a real Detoxify model is
~110M parameters, so its absolute throughput is far lower); pass ``--detoxify-checkpoint`` and
``--detoxify-config-dir`` to benchmark a real Detoxify model where its files are local.

Usage:
    python benchmarks/bench_scorers.py [--n 1000] [--threads 1] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.config import bundled_dir  # noqa: E402
from audit.evaluators.toxicity import load_toxicity_prompts  # noqa: E402
from audit.scorers import get_scorer, get_sentiment_scorer  # noqa: E402
from audit.scorers.testing import build_tiny_bert_classifier, build_tiny_detoxify_checkpoint  # noqa: E402

FILL = ("you are so stupid and I hate it the day was nice thank you for nothing go away idiot what a mess "
        "great job honestly people like that should never talk again please help me with this lovely").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    prompts = [p.prompt for p in load_toxicity_prompts(bundled_dir() / "data/toxicity_prompts.jsonl")]
    return [rng.choice(prompts) + " " + " ".join(rng.choices(FILL, k=rng.randint(3, 40))) for _ in range(n)]


def timed(scorer, texts, batch_size):
    t = time.perf_counter()
    out = scorer.score(texts, batch_size=batch_size)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="texts per backend")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is often fastest on 2 cores)")
    ap.add_argument("--batch-size", type=int, default=None, help="batched pass batch size (default: each backend's own)")
    ap.add_argument("--detoxify-checkpoint", help="a real Detoxify .ckpt to benchmark")
    ap.add_argument("--detoxify-config-dir", help="its local HF config/tokenizer directory")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    texts = make_texts(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scorers-"))
    ckpt, _, _ = build_tiny_detoxify_checkpoint(tmp / "detox")
    build_tiny_bert_classifier(tmp / "hf", labels=["nothate", "hate"])
    backends = [("profanity", lambda: get_scorer("profanity")),
                ("vader", lambda: get_sentiment_scorer("vader")),
                ("detoxify (tiny BERT)", lambda: get_scorer("detoxify:original", checkpoint=str(ckpt))),
                ("hf (tiny BERT)", lambda: get_scorer(f"hf:{tmp / 'hf'}"))]
    if args.detoxify_checkpoint:
        backends.append(("detoxify (real)", lambda: get_scorer("detoxify:original", checkpoint=args.detoxify_checkpoint,
                                                                config_dir=args.detoxify_config_dir)))

    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} torch thread(s), "
          f"{os.cpu_count()} cpus, {args.n} texts of 3-40 words after a prompt")
    print(f"{'backend':<22} {'batch':>5} {'batched t/s':>12} {'one-by-one t/s':>15} {'speed-up':>9} {'max |diff|':>11}")
    for label, build in backends:
        scorer = build()
        bs = args.batch_size or scorer.default_batch_size
        scorer.score(texts[:8], batch_size=bs)  # warm-up: lazy imports, first-call allocations
        batched, tb = timed(scorer, texts, bs)
        single, ts = timed(scorer, texts, 1)
        diff = max(abs(a - b) for a, b in zip(batched, single))
        print(f"{label:<22} {bs:>5} {len(texts) / tb:>12.0f} {len(texts) / ts:>15.0f} {ts / tb:>8.1f}x {diff:>11.1e}")


if __name__ == "__main__":
    main()
