"""Greedy generation throughput: the adapter's batched KV-cached generate vs transformers' own generate.

Four ways decode the same prompts greedily with the same max_new_tokens, model and threads, in one
run: the project's ``LanguageModel.generate`` (batched, chat template rendered inside, the batch's
shared prompt start prefilled once, last-position logits only), the same with every prompt prefilled
whole (what it did before: the shared-prefix cache's baseline, alternated with it, best of ``--rounds``),
transformers' batched ``model.generate`` on left-padded ``apply_chat_template`` inputs, and
transformers' ``model.generate`` one prompt at a time (unpadded: the reference). The script prints
tokens/s of each, the speed ratios, and how many outputs equal the one-at-a-time reference exactly.

For a chat model (default ``builtin:smollm2``) the prompts are the bundled support questions as user
turns; for a base model (``--model builtin:tiny``) the raw "Customer: ...\\nAgent:" prompts.

    python benchmarks/bench_generation.py [--model builtin:smollm2] [--prompts 32] [--new 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def _stops(lm) -> set[int]:
    return set(lm.stop_token_ids)


def _cut(row: list[int], stops: set[int]) -> list[int]:
    return row[:next((i for i, t in enumerate(row) if t in stops), len(row))]


def _inputs(lm, prompts):
    """Token ids of each prompt exactly as transformers users build them (apply_chat_template or tok())."""
    tok = lm.tokenizer
    if lm.chat is not None:
        return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    return [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]


@torch.no_grad()
def hf_one_at_a_time(lm, ids_list, new: int) -> list[list[int]]:
    out = []
    for ids in ids_list:
        x = torch.tensor([ids])
        gen = lm.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id)
        out.append(_cut(gen[0, x.shape[1]:].tolist(), _stops(lm)))
    return out


@torch.no_grad()
def hf_batched(lm, ids_list, new: int, batch_size: int) -> list[list[int]]:
    pad = lm.tokenizer.pad_token_id
    out = []
    for start in range(0, len(ids_list), batch_size):
        rows = ids_list[start:start + batch_size]
        width = max(len(r) for r in rows)
        x = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        gen = lm.model.generate(x, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=pad)
        out.extend(_cut(g[width:].tolist(), _stops(lm)) for g in gen)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new", type=int, default=32, help="max_new_tokens")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="alternated rounds of the shared vs whole prefill (best of)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from audit.config import GenerationSettings, bundled_dir
    from audit.data import load_records
    from audit.models.local import LanguageModel

    lm = LanguageModel.load(args.model)
    data = "support_chat.jsonl" if lm.chat is not None else "support.jsonl"
    prompts = [r.prompt for r in load_records(bundled_dir() / "data" / data, split="test")][: args.prompts]
    decode = lambda ids: lm.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)  # noqa: E731

    settings = GenerationSettings(max_new_tokens=args.new, batch_size=args.batch_size)
    ids_list = _inputs(lm, prompts)
    lm.generate(prompts[:2], settings)  # warm-up (one-time allocations) for all three
    hf_one_at_a_time(lm, ids_list[:1], 2)

    def timed(whole: bool):
        if whole:  # the prefill as it was: every prompt whole, logits at every position
            lm._shared_prefix, lm._prefill_kwargs = (lambda rows: (0, None)), (lambda: {})
        t = time.perf_counter()
        try:
            return [g[0] for g in lm.generate(prompts, settings)], time.perf_counter() - t
        finally:
            lm.__dict__.pop("_shared_prefix", None)
            lm.__dict__.pop("_prefill_kwargs", None)

    t_ours = t_whole = float("inf")
    for _ in range(args.rounds):
        ours, dt = timed(False)
        t_ours = min(t_ours, dt)
        whole, dt = timed(True)
        t_whole = min(t_whole, dt)
    t = time.perf_counter()
    batched = hf_batched(lm, ids_list, args.new, args.batch_size)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = hf_one_at_a_time(lm, ids_list, args.new)
    t_single = time.perf_counter() - t

    tokens = sum(len(r) for r in single)  # the reference's tokens; equal outputs generate the same tokens
    ref = [decode(r) for r in single]
    out = {
        "model": args.model, "chat_template": lm.chat.source if lm.chat else None, "prompts": len(prompts),
        "max_new_tokens": args.new, "batch_size": args.batch_size, "threads": args.threads, "generated_tokens": tokens,
        "audit_batched_s": round(t_ours, 2), "audit_whole_prefill_s": round(t_whole, 2),
        "speedup_shared_prefix": round(t_whole / t_ours, 2), "shared_prefix_answers_equal": f"{sum(a == b for a, b in zip(ours, whole))}/{len(prompts)}",
        "hf_batched_generate_s": round(t_batched, 2),
        "hf_one_at_a_time_s": round(t_single, 2),
        "tokens_per_s": {"audit_batched": round(tokens / t_ours, 1), "hf_batched_generate": round(tokens / t_batched, 1),
                         "hf_one_at_a_time": round(tokens / t_single, 1)},
        "speedup_vs_hf_batched": round(t_batched / t_ours, 2), "speedup_vs_one_at_a_time": round(t_single / t_ours, 2),
        "audit_equal_to_one_at_a_time": f"{sum(o == r for o, r in zip(ours, ref))}/{len(prompts)}",
        "hf_batched_equal_to_one_at_a_time": f"{sum(decode(b) == r for b, r in zip(batched, ref))}/{len(prompts)}",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
