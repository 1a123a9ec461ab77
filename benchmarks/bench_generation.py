"""Generation throughput: the adapter's batched KV-cached generate vs one-prompt-at-a-time `pipeline`.

Both decode greedily the same 64 prompts with the same max_new_tokens on the same model and
threads; the script checks the texts agree and prints the speed ratio measured in this run.

    python benchmarks/bench_generation.py [--model builtin:tiny] [--prompts 64] [--new 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new", type=int, default=32, help="max_new_tokens")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import pipeline

    from audit.config import GenerationSettings, bundled_dir
    from audit.data import load_records
    from audit.model import LanguageModel

    lm = LanguageModel.load(args.model)
    records = load_records(bundled_dir() / "data" / "support.jsonl")
    prompts = [r.prompt for r in records][: args.prompts]

    settings = GenerationSettings(max_new_tokens=args.new, batch_size=args.batch_size)
    lm.generate(prompts[:2], settings)  # warm-up
    t = time.perf_counter()
    ours = lm.generate(prompts, settings)
    t_ours = time.perf_counter() - t

    pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer, device=lm.device)
    kw = dict(max_new_tokens=args.new, do_sample=False, return_full_text=False, pad_token_id=lm.tokenizer.pad_token_id,
              clean_up_tokenization_spaces=False)
    pipe(prompts[0], **kw)  # warm-up
    t = time.perf_counter()
    base = [pipe(p, **kw)[0]["generated_text"] for p in prompts]
    t_base = time.perf_counter() - t

    agree = sum(o[0] == b[: len(o[0])] for o, b in zip(ours, base)) / len(prompts)
    out = {"model": args.model, "prompts": len(prompts), "max_new_tokens": args.new, "threads": args.threads,
           "pipeline_one_at_a_time_s": round(t_base, 3), "audit_batched_s": round(t_ours, 3),
           "speedup": round(t_base / t_ours, 2), "greedy_text_agreement": agree}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
