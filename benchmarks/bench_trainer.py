"""Trainer overhead: our CE step and PGD step vs a plain PyTorch loop step on the same batch.

    python benchmarks/bench_trainer.py

The plain loop is what anyone would write: ``model(input_ids, attention_mask, labels)``,
``loss.backward()``, clip, ``AdamW.step()``, schedule, ``zero_grad()``. Ours is
:meth:`audit.finetune.trainer.Trainer.train_step` (Accelerate, the loss registry, the clean
forward from embeddings, the NaN/inf check). Both train identical copies of a 4 x 256 GPT-2 on
the same 8 x 128 batch. The three steps are timed interleaved, round after round, and each takes
its minimum over rounds, so load from other processes on the machine does not bias one side.

Targets: CE step <= 1.10x the plain step; PGD with one ascent step <= 3x.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is often fastest on 2-core machines)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    from audit.models.builtin import corpus_text, train_tokenizer
    from audit.finetune.config import FinetuneConfig
    from audit.finetune.data import Example, collate
    from audit.finetune.trainer import Trainer

    tok = train_tokenizer(corpus_text()[:60_000].split("\n"), vocab_size=1024)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=args.seq_len, n_embd=args.width, n_layer=args.layers,
                     n_head=max(1, args.width // 64))
    torch.manual_seed(0)
    base = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(1, len(tok), (args.seq_len,), generator=g).tolist() for _ in range(args.batch_size)]
    half = args.seq_len // 2
    examples = [Example(r, [-100] * half + r[half:]) for r in rows]
    batch = collate(examples, tok.pad_token_id)

    # The plain loop: HF's built-in loss, AdamW, clipping, a LambdaLR.
    plain = copy.deepcopy(base).train()
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    def plain_step():
        out = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    def trainer_for(losses):
        c = FinetuneConfig(model="<in-memory>", data="<bench>", losses=losses, batch_size=args.batch_size, lr=1e-4,
                           max_steps=10_000, out_dir=tempfile.mkdtemp(), progress=False, tensorboard=False,
                           schedule="constant", weight_decay=0.01)
        return Trainer(c, copy.deepcopy(base), tok, examples, [])

    ce = trainer_for({"ce": 1.0})
    pgd = trainer_for({"ce": 1.0, "pgd": {"weight": 1.0, "steps": 1}})
    steps = {"plain": plain_step, "ce": lambda: ce.train_step([batch]), "pgd": lambda: pgd.train_step([batch])}
    for fn in steps.values():  # warm-up: allocator, autograd graph caches
        fn()
        fn()
    best = {k: float("inf") for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    ratios = {"ce_vs_plain": best["ce"] / best["plain"], "pgd1_vs_plain": best["pgd"] / best["plain"],
              "pgd1_vs_ce": best["pgd"] / best["ce"]}
    n_params = sum(p.numel() for p in base.parameters())
    print(f"model: GPT-2 {args.layers} x {args.width} ({n_params:,} parameters), batch {args.batch_size} x {args.seq_len}, "
          f"{args.threads} thread(s), min of {args.rounds} interleaved rounds")
    print(f"plain torch step: {best['plain'] * 1000:.1f} ms")
    print(f"trainer CE step:  {best['ce'] * 1000:.1f} ms   ratio {ratios['ce_vs_plain']:.3f}x (target <= 1.10)")
    print(f"trainer PGD(K=1): {best['pgd'] * 1000:.1f} ms   ratio {ratios['pgd1_vs_plain']:.3f}x vs plain "
          f"(target <= 3), {ratios['pgd1_vs_ce']:.3f}x vs our CE step")
    return {"ms": {k: v * 1000 for k, v in best.items()}, **ratios}


if __name__ == "__main__":
    main()
