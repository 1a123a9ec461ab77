"""Which similarity measures an answer's meaning: the noise calibration of chrF, ROUGE-L and MiniLM embeddings (issue 22).

On SmolLM2-135M-Instruct through its chat template (the `smollm2` suite's model and its 51 test-split support
questions), three kinds of answer pairs:

- same prompt: every pair of the sampled answers to one question, drawn with the suite's consistency settings
  (seed_samples answers at its temperature and top_p; 3 at 1.0 / 0.95 in `smollm2`). A measure of meaning should
  call them alike; what it does not is its noise floor.
- typo: the greedy answer to the clean question vs to the question with consistency's `typos` perturbation (what
  robustness's worst case and INV compare).
- different prompts: the first sampled answer to question i vs to question j (every pair i < j): the answers a
  measure must call different.

For each measure: mean and quantiles per kind, ROC AUC of "same prompt" vs "different prompts" (the chance that a
random same-prompt pair scores above a random different-prompt pair; 0.5 = no separation) with a 95% cluster-bootstrap
interval (questions resampled, their pairs kept), the paired bootstrap interval of embedding's AUC minus each other
measure's, and the standardized gap (difference of means over the pooled standard deviation). Then the timing of the suite's consistency and
robustness sections with `similarity: chrf` vs `embedding`, interleaved in one process, no cache.

Run: python benchmarks/bench_similarity_calibration.py [--tokens 16 64] [--bootstrap 500] [--no-timing]
Prints markdown tables (BENCHMARKS.md, "Similarity: which measure separates...").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np

from audit.attacks.similarity import SIMILARITIES, prefetch, similarity
from audit.config import GenerationSettings
from audit.data import load_data
from audit.evaluators.base import Context, make_context
from audit.models.load import load_model
from audit.perturb import perturb
from audit.suite import load_suite


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a random positive > a random negative), ties half (Mann-Whitney U / (n_pos * n_neg))."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def describe(v: list[float]) -> dict:
    a = np.asarray(v)
    return {"n": int(a.size), "mean": float(a.mean()), "p10": float(np.quantile(a, 0.1)),
            "p50": float(np.quantile(a, 0.5)), "p90": float(np.quantile(a, 0.9)), "sd": float(a.std(ddof=1))}


def calibrate(lm, samples, tokens: int, seed: int, consistency, resamples: int) -> dict:
    prompts = [s.prompt for s in samples]
    sampled = GenerationSettings(max_new_tokens=tokens, do_sample=True, temperature=consistency.temperature,
                                 top_p=consistency.top_p, num_samples=consistency.seed_samples, batch_size=16)
    greedy = GenerationSettings(max_new_tokens=tokens, batch_size=16)
    ctx = Context(model=lm, samples=samples, settings=greedy, seed=seed, use_cache=False)
    drawn = ctx.generate(prompts, sampled, desc=f"samples ({tokens} tokens)")
    typo_prompts = [perturb(p, "typos", seed=seed) for p in prompts]
    outs = ctx.generate(prompts + typo_prompts, greedy, desc=f"greedy ({tokens} tokens)")
    clean, typo = [o[0] for o in outs[:len(prompts)]], [o[0] for o in outs[len(prompts):]]
    n, within = len(drawn), list(itertools.combinations(range(sampled.num_samples), 2))
    across = list(itertools.combinations(range(n), 2))
    pairs = {
        "same prompt": [(g[a], g[b]) for g in drawn for a, b in within],
        "typo": [(c, t) for c, t, p, q in zip(clean, typo, prompts, typo_prompts) if p != q],
        "different prompts": [(drawn[i][0], drawn[j][0]) for i, j in across],
    }
    # Cluster bootstrap over questions (the pairs of one question are not independent): resample questions,
    # keep each drawn question's same-prompt pairs and the different-prompt pairs between drawn questions.
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    out = {}
    for kind in SIMILARITIES:
        prefetch([t for ps in pairs.values() for pair in ps for t in pair], kind)
        t0 = time.perf_counter()
        scores = {k: [similarity(a, b, kind) for a, b in ps] for k, ps in pairs.items()}
        seconds = time.perf_counter() - t0
        same, diff = scores["same prompt"], scores["different prompts"]
        pooled = np.sqrt((np.var(same, ddof=1) + np.var(diff, ddof=1)) / 2)
        by_question = np.asarray(same).reshape(n, len(within))
        between = np.full((n, n), np.nan)
        for (i, j), v in zip(across, diff):
            between[i, j] = between[j, i] = v
        upper = np.triu_indices(n, 1)
        boot = []
        for idx in draws:
            neg = between[idx[upper[0]], idx[upper[1]]]
            boot.append(auc(by_question[idx].ravel(), neg[~np.isnan(neg)]))
        out[kind] = {"groups": {k: describe(v) for k, v in scores.items()}, "auc": auc(same, diff),
                     "auc_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))], "boot": boot,
                     "std_gap": float((np.mean(same) - np.mean(diff)) / pooled), "score_seconds": seconds}
    for other in SIMILARITIES:
        if other != "embedding" and "embedding" in out:
            d = np.asarray(out["embedding"]["boot"]) - np.asarray(out[other]["boot"])
            out[f"embedding - {other}"] = {"auc_diff": out["embedding"]["auc"] - out[other]["auc"],
                                           "ci95": [float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))]}
    for kind in SIMILARITIES:
        out[kind].pop("boot")
    return out


def time_sections(suite, lm, samples, reps: int) -> dict:
    """Seconds of robustness then consistency (which reuses robustness's worst-case generations, as in a run)
    with each similarity, without the disk cache (generation included). Interleaved finely, so that load from
    other work on a shared box falls on both measures alike: per repetition, a fresh context per measure, and
    each section run with chrf then embedding back to back; the in-process similarity caches are emptied before
    every run (each embedding run pays its own encoder calls)."""
    from audit.attacks import similarity as sim_mod
    from audit.evaluators import SECTIONS
    from audit.scorers.encoder import SentenceEncoder

    t0 = time.perf_counter()
    enc = SentenceEncoder.shared()   # once per process (the first embedding section pays it in a run)
    print(f"encoder load: {time.perf_counter() - t0:.1f} s", flush=True)
    spent = {"seconds": 0.0, "calls": 0, "texts": 0}
    real = enc.embed

    def timed(texts, **kw):   # how much of a section's time is the encoder's
        t0 = time.perf_counter()
        try:
            return real(texts, **kw)
        finally:
            spent["seconds"] += time.perf_counter() - t0
            spent["calls"] += 1
            spent["texts"] += len(texts)

    enc.embed = timed
    out = {"chrf": [], "embedding": []}
    for _ in range(reps):
        ctxs = {kind: Context(model=lm, samples=samples, settings=suite.generation, seed=suite.seed,
                              base_dir=suite.base_dir, use_cache=False) for kind in out}
        recs = {kind: {} for kind in out}
        for name in ("robustness", "consistency"):
            for kind in out:
                sim_mod._embeddings.clear()
                sim_mod.similarity.cache_clear()
                opts = dataclasses.replace(suite.sections[name], similarity=kind)
                spent.update(seconds=0.0, calls=0, texts=0)
                cpu = time.process_time()
                res = SECTIONS.get(name)(opts).evaluate(ctxs[kind])
                rec = recs[kind]
                rec[name] = res.seconds
                rec[f"{name}.cpu_seconds"] = time.process_time() - cpu   # less sensitive than wall time to other load
                rec.update({f"{name}.encoder_{k}": v for k, v in spent.items()})
                rec.update({f"{name}.{k}": v for k, v in res.metrics.items()})
        for kind, rec in recs.items():
            out[kind].append(rec)
            print(kind, json.dumps({k: round(v, 3) for k, v in rec.items()}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--bootstrap", type=int, default=500, help="question resamples for the AUC intervals")
    ap.add_argument("--reps", type=int, default=3, help="timing repetitions (each runs both measures)")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="skip the calibration (the encoder then loads inside the first embedding run)")
    ap.add_argument("--json", default="/tmp/similarity_calibration.json")
    args = ap.parse_args()
    suite = load_suite("smollm2")
    lm = load_model(suite.model)
    # The suite's records as the run formats them (a 1-token main pass: only the prompts are needed here).
    samples = make_context(lm, load_data(suite.data, suite.base_dir), GenerationSettings(max_new_tokens=1)).samples
    results = {"calibration": {} if args.timing_only else {t: calibrate(lm, samples, t, suite.seed, suite.sections['consistency'], args.bootstrap)
                                                        for t in args.tokens}}
    con = suite.sections["consistency"]
    for t, cal in results["calibration"].items():
        print(f"\n{len(samples)} questions, {t}-token answers, {con.seed_samples} samples each at temperature "
              f"{con.temperature}, top_p {con.top_p}\n")
        print("| measure | same prompt: mean [p10, p90] | typo: mean [p10, p90] | different prompts: mean [p10, p90] "
              "| AUC same vs different [95% CI] | standardized gap |")
        print("|---|---|---|---|---|---|")
        for kind in SIMILARITIES:
            r, g = cal[kind], cal[kind]["groups"]
            cell = lambda k: f"{g[k]['mean']:.3f} [{g[k]['p10']:.3f}, {g[k]['p90']:.3f}]"  # noqa: E731
            lo, hi = r["auc_ci95"]
            print(f"| {kind} | {cell('same prompt')} | {cell('typo')} | {cell('different prompts')} "
                  f"| {r['auc']:.3f} [{lo:.3f}, {hi:.3f}] | {r['std_gap']:.2f} |")
        for key, d in cal.items():
            if key.startswith("embedding - "):
                print(f"AUC {key}: {d['auc_diff']:+.3f}, paired bootstrap 95% [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    if not args.no_timing:
        results["timing"] = time_sections(suite, lm, samples, args.reps)
        print("\n| similarity | run | consistency s | robustness s | both s | of which the encoder |\n|---|---|---|---|---|---|")
        for kind, runs in results["timing"].items():
            for i, r in enumerate(runs):
                enc_s = r["consistency.encoder_seconds"] + r["robustness.encoder_seconds"]
                calls = r["consistency.encoder_calls"] + r["robustness.encoder_calls"]
                print(f"| {kind} | {i + 1} | {r['consistency']:.1f} | {r['robustness']:.1f} | {r['consistency'] + r['robustness']:.1f} | "
                      f"{enc_s:.1f} s in {calls} encoder calls |")
        for key, what in (("", "wall"), (".cpu_seconds", "CPU")):
            both = {k: [r[f"consistency{key}"] + r[f"robustness{key}"] for r in v] for k, v in results["timing"].items()}
            ratios = [e / c for c, e in zip(both["chrf"], both["embedding"])]
            print(f"embedding / chrf {what} time (consistency + robustness): {np.mean(both['embedding']) / np.mean(both['chrf']):.2f} "
                  f"(ratio of means), per repetition {', '.join(f'{r:.2f}' for r in ratios)}, median {np.median(ratios):.2f}")
    json.dump(results, open(args.json, "w"), indent=1, default=str)
    print(f"\nfull results: {args.json}")


if __name__ == "__main__":
    main()
