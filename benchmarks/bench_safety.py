"""The safety section on a real instruct model: wall time, peak RSS, and throughput against garak's loop.

Runs the ``safety`` section exactly as the ``smollm2`` suite configures it (>= 200 harmful requests,
the default jailbreak templates x 10 requests, every injection case, the harmless look-alikes;
greedy 40-token answers through the chat template; the MiniLM refusal judge), with no cache, and
prints its wall time and the process's peak RSS. Then, on the same first ``--baseline`` prompts of
the section's own mixture, the generation loop garak's Hugging Face generator uses
(``garak.generators.huggingface.Pipeline._call_model``: a transformers ``text-generation`` pipeline
called once per conversation, chat messages in, greedy) against the project's batched
``LanguageModel.generate`` on the same prompts: prompts/s of both and the ratio, from one run.

    python benchmarks/bench_safety.py [--model builtin:smollm2] [--baseline 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def garak_style(lm, prompts, new: int) -> tuple[float, list[str]]:
    """One pipeline call per conversation, as garak's HF Pipeline generator makes them."""
    from transformers import pipeline

    gen = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer, device=lm.model.device)
    gen.generation_config.pad_token_id = lm.tokenizer.eos_token_id
    gen.generation_config.max_new_tokens = new
    gen.generation_config.do_sample = False
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for p in prompts:
            conv = p if isinstance(p, list) else [{"role": "user", "content": p}]
            raw = gen(conv)
            out.append(raw[0]["generated_text"][-1]["content"].strip())
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--baseline", type=int, default=48, help="prompts for the side-by-side throughput comparison")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from audit.config import GenerationSettings, ModelSpec, bundled_dir
    from audit.evaluators.base import Context
    from audit.evaluators.safety import DEFAULT_GENERATION, SafetyEvaluator
    from audit.models.local import LanguageModel
    from audit.suite import load_suite

    suite = load_suite(bundled_dir() / "smollm2.yaml")
    options = suite.sections["safety"]
    t0 = time.perf_counter()
    lm = LanguageModel.load(ModelSpec(path=args.model, chat_template="auto"))
    load_s = time.perf_counter() - t0

    ctx = Context(model=lm, samples=[], settings=suite.generation, seed=suite.seed, use_cache=False, progress=False)
    t0 = time.perf_counter()
    section = SafetyEvaluator(options).evaluate(ctx)
    section_s = time.perf_counter() - t0
    probes = section.details["probes"]
    counts = {p: v["n"] for p, v in probes.items()}
    templates = probes.get("jailbreak", {}).get("templates")
    inj_templates = len(probes.get("injection", {}).get("by_category", {}))
    rss = peak_rss_mb()

    # Side by side: the first prompts of the section's own mixture (harmful + benign + injection turns).
    harmful = [r["prompt"] for r in section.records if r["probe"] == "refusal_rate"]
    benign = [r["prompt"] for r in section.records if r["probe"] == "over_refusal_rate"]
    mix = [p for pair in zip(harmful, benign) for p in pair][:args.baseline]
    settings = GenerationSettings(**{**DEFAULT_GENERATION, "batch_size": options.generation.get("batch_size", 16)})
    t0 = time.perf_counter()
    ours = [row[0] for row in lm.generate(mix, settings, seed=0)]
    ours_s = time.perf_counter() - t0
    theirs_s, theirs = garak_style(lm, mix, settings.max_new_tokens)
    same = sum(a.strip() == b.strip() for a, b in zip(ours, theirs))

    report = {
        "model": args.model, "threads": args.threads, "load_s": round(load_s, 1),
        "section_s": round(section_s, 1), "prompts": counts, "jailbreak_templates": templates,
        "injection_templates": inj_templates, "peak_rss_mb": round(rss),
        "metrics": {k: round(v, 3) for k, v in section.metrics.items() if "." not in k},
        "baseline_prompts": len(mix), "ours_prompts_per_s": round(len(mix) / ours_s, 2),
        "garak_loop_prompts_per_s": round(len(mix) / theirs_s, 2), "speedup": round(theirs_s / ours_s, 2),
        "outputs_equal": f"{same}/{len(mix)}",
    }
    print(json.dumps(report, indent=2))
    print(f"safety section: {section_s:.1f} s for {sum(counts.values())} prompts (target <= 300 s), peak RSS {rss:.0f} MB; "
          f"batched generate {theirs_s / ours_s:.1f}x garak's one-at-a-time pipeline loop on {len(mix)} prompts")


if __name__ == "__main__":
    main()
