"""Self-BLEU: the NLTK reference loop vs. audit.metrics.self_bleu.

Prints, in one run:
  * the NLTK loop (each text vs. all others, sentence_bleu + method1) at
    1,000 texts, ours on the same texts, the speed-up and the max difference;
  * ours at 100,000 texts.

Texts are realistic short generations: 8-20 tokens drawn with Zipf-like
frequencies from ~300 common English words, seeded, so runs are comparable.

Usage:
    python benchmarks/bench_self_bleu.py [--small 1000] [--large 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # noqa: E402

from audit.metrics import self_bleu, self_bleu_per_text  # noqa: E402

WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left
late run while press close night real life few north open seem together next white children
begin got walk example ease paper group always music those both mark often letter until mile
river car feet care second book carry took science eat room friend began idea fish mountain
stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song
""".split()


def make_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf-like
    return [" ".join(rng.choices(WORDS, weights, k=rng.randint(8, 20))) for _ in range(count)]


def nltk_self_bleu(texts: list[str], max_n: int = 4) -> tuple[float, list[float]]:
    tokens = [t.split() for t in texts]
    smooth = SmoothingFunction().method1
    weights = (1 / max_n,) * max_n
    scores = [
        sentence_bleu(tokens[:i] + tokens[i + 1 :], hyp, weights=weights, smoothing_function=smooth)
        for i, hyp in enumerate(tokens)
    ]
    return sum(scores) / len(scores), scores


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1_000, help="texts for the NLTK comparison")
    parser.add_argument("--large", type=int, default=100_000, help="texts for our large-corpus run")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for our timings")
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, max_n=4, single-threaded")

    small = make_texts(args.small, seed=0)
    start = time.perf_counter()
    nltk_value, nltk_scores = nltk_self_bleu(small)
    nltk_s = time.perf_counter() - start
    ours_s, ours_value = best_time(lambda: self_bleu(small), max(args.repeats, 5))
    max_diff = max(abs(a - b) for a, b in zip(self_bleu_per_text(small), nltk_scores))
    print(f"{args.small:>7,} texts  nltk loop: {nltk_s:9.3f} s   self_bleu = {nltk_value:.12f}")
    print(f"{args.small:>7,} texts  ours:      {ours_s:9.4f} s   self_bleu = {ours_value:.12f}")
    print(f"speed-up: {nltk_s / ours_s:,.0f}x   max per-text |diff|: {max_diff:.3g}")

    large = make_texts(args.large, seed=1)
    n_tokens = sum(len(t.split()) for t in large)
    large_s, large_value = best_time(lambda: self_bleu(large), args.repeats)
    print(
        f"{args.large:>7,} texts  ours:      {large_s:9.3f} s   self_bleu = {large_value:.12f}"
        f"   ({n_tokens:,} tokens, best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
