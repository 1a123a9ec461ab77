"""One-command GPU check of the fine-tuning stack: every loss on a GPT-2-small-sized model, in bf16.

On a CUDA machine::

    python benchmarks/gpu_check.py                 # GPT-2 small shape (12 x 768, vocab 50257), random init
    python benchmarks/gpu_check.py --json gpu.json # also write the figures as JSON

For each loss (ce, unlikelihood, simctg, pgd with 1 ascent step, smart, unlikelihood_seq) it runs
``--steps`` optimizer steps of the real :class:`audit.finetune.trainer.Trainer` (Accelerate, bf16
autocast on capable CUDA, fused AdamW) on random token batches, and reports tokens/s, the step time
as a ratio of the CE step, and peak GPU memory. Then it times batched greedy generation through
:class:`audit.models.local.LanguageModel` (bf16) against one prompt at a time.

``--tiny`` runs the same code on a 2 x 64 model in seconds on a CPU (what the test suite does).
The tokenizer is audit's BPE trained on the bundled corpus (about 6.7k tokens); the model keeps
GPT-2's 50257-row embedding so its size and cost are GPT-2 small's (ids the tokenizer does not
have decode to nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

LOSSES = {
    "ce": {"ce": 1.0},
    "unlikelihood": {"ce": 1.0, "unlikelihood": 1.0},
    "simctg": {"ce": 1.0, "simctg": 1.0},
    "pgd": {"ce": 1.0, "pgd": {"weight": 1.0, "steps": 1}},
    "smart": {"ce": 1.0, "smart": {"weight": 1.0, "steps": 1}},
    "unlikelihood_seq": {"ce": 1.0, "unlikelihood_seq": {"weight": 0.5, "prefix_length": 16, "continuation_length": 16}},
}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(tiny: bool):
    from transformers import GPT2Config, GPT2LMHeadModel

    from audit.models.builtin import corpus_text, train_tokenizer

    text = corpus_text()
    tok = train_tokenizer((text[:60_000] if tiny else text).split("\n"), vocab_size=512 if tiny else 8192)
    if tiny:
        cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=64, n_layer=2, n_head=2)
    else:
        cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    eos = tok.eos_token_id
    cfg.bos_token_id = cfg.eos_token_id = cfg.pad_token_id = eos
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg), tok


def run(args) -> dict:
    from audit.config import GenerationSettings
    from audit.finetune.config import FinetuneConfig
    from audit.finetune.data import Example
    from audit.finetune.trainer import Trainer
    from audit.models.local import LanguageModel

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    base, tok = build(args.tiny)
    n_params = sum(p.numel() for p in base.parameters())
    seq, bs = args.seq_len, args.batch_size
    g = torch.Generator().manual_seed(0)
    # Random ids over the tokenizer's range; the second half of each row is the learned target.
    examples = [Example(ids := torch.randint(1, len(tok), (seq,), generator=g).tolist(),
                        [-100] * (seq // 2) + ids[seq // 2:]) for _ in range(bs * (args.steps + args.warmup))]
    report = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
              "parameters": n_params, "batch_size": bs, "seq_len": seq, "steps": args.steps, "losses": {}}
    out_tmp = tempfile.mkdtemp(prefix="gpu-check-")
    for name, losses in LOSSES.items():
        if args.only and name not in args.only:
            continue
        model = copy.deepcopy(base)
        cfg = FinetuneConfig(model="<in-memory>", data="<random>", losses=losses, batch_size=bs, lr=1e-4,
                             max_steps=args.steps + args.warmup, out_dir=out_tmp, progress=False, tensorboard=False,
                             precision=args.precision, gradient_checkpointing=args.gradient_checkpointing)
        trainer = Trainer(cfg, model, tok, examples, [])
        batches = [trainer._micro_batch(i) for i in range(args.steps + args.warmup)]
        for b in batches[:args.warmup]:
            trainer.train_step([b])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times, tokens = [], 0
        for b in batches[args.warmup:]:
            _sync()
            t = time.perf_counter()
            rec = trainer.train_step([b])
            _sync()
            times.append(time.perf_counter() - t)
            tokens += rec["tokens"]
        report["losses"][name] = {
            "step_s": statistics.median(times), "tokens_per_s": tokens / sum(times), "final_loss": rec["loss"],
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
            "precision": trainer.accelerator.mixed_precision,
        }
        del trainer, model
        if cuda:
            torch.cuda.empty_cache()
    ce = report["losses"].get("ce", {}).get("step_s")
    for r in report["losses"].values():
        r["ratio_vs_ce"] = r["step_s"] / ce if ce else None

    # Batched generation through the audit model adapter vs one prompt at a time.
    gen_model = copy.deepcopy(base).to(device)
    if cuda and torch.cuda.is_bf16_supported():
        gen_model = gen_model.to(torch.bfloat16)
    lm = LanguageModel(gen_model, tok, spec="gpu-check")
    prompts = [tok.decode(torch.randint(1, len(tok), (8 + i % 24,), generator=g).tolist()) for i in range(args.gen_prompts)]
    settings = GenerationSettings(max_new_tokens=args.gen_tokens, batch_size=args.gen_batch)
    lm.generate(prompts[:2], settings)  # warm-up (kernels, allocator)
    _sync()
    t = time.perf_counter()
    lm.generate(prompts, settings)
    _sync()
    batched = time.perf_counter() - t
    one = GenerationSettings(max_new_tokens=args.gen_tokens, batch_size=1)
    n_single = min(len(prompts), args.gen_single)
    t = time.perf_counter()
    lm.generate(prompts[:n_single], one)
    _sync()
    single = (time.perf_counter() - t) * len(prompts) / n_single  # extrapolated to all prompts
    report["generation"] = {"prompts": len(prompts), "max_new_tokens": args.gen_tokens, "batch_size": args.gen_batch,
                            "batched_s": batched, "one_at_a_time_s_est": single, "speedup": single / batched,
                            "new_tokens_per_s_upper": len(prompts) * args.gen_tokens / batched}
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a 2 x 64 model: runs in seconds on a CPU")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps per loss (default 20; tiny 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 8; tiny 4)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 512; tiny 32)")
    p.add_argument("--precision", default="auto", help="auto (bf16 on capable CUDA) | no | bf16")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--only", nargs="*", help="losses to run (default: all)")
    p.add_argument("--gen-prompts", type=int, default=None, help="prompts for the generation timing (default 64; tiny 8)")
    p.add_argument("--gen-tokens", type=int, default=None, help="new tokens per prompt (default 64; tiny 8)")
    p.add_argument("--gen-batch", type=int, default=32)
    p.add_argument("--gen-single", type=int, default=8, help="prompts timed one at a time (extrapolated)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = p.parse_args(argv)
    d = dict(steps=3, warmup=1, batch_size=4, seq_len=32, gen_prompts=8, gen_tokens=8) if args.tiny else \
        dict(steps=20, warmup=3, batch_size=8, seq_len=512, gen_prompts=64, gen_tokens=64)
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not torch.cuda.is_available() and not args.tiny:
        print("note: no CUDA device; running the GPT-2-small shape on the CPU (slow). Use --tiny for a quick check.",
              file=sys.stderr)
    report = run(args)
    print(f"device: {report['device']}  parameters: {report['parameters']:,}  batch {report['batch_size']} x {report['seq_len']} tokens")
    print(f"{'loss':18} {'step ms':>9} {'tokens/s':>10} {'x CE':>6} {'peak GB':>8}")
    for name, r in report["losses"].items():
        mem = f"{r['peak_mem_gb']:.2f}" if r["peak_mem_gb"] is not None else "-"
        print(f"{name:18} {r['step_s'] * 1000:9.1f} {r['tokens_per_s']:10.0f} {r['ratio_vs_ce']:6.2f} {mem:>8}")
    gen = report["generation"]
    print(f"generation: {gen['prompts']} prompts x {gen['max_new_tokens']} tokens, batch {gen['batch_size']}: "
          f"{gen['batched_s']:.2f} s batched vs ~{gen['one_at_a_time_s_est']:.2f} s one at a time ({gen['speedup']:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
