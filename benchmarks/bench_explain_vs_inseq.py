"""Integrated gradients for generations: inseq 0.7.1 (and Captum's LLMGradientAttribution) vs audit.explain.

Same model, same prompts and targets, same method (integrated gradients on the input embeddings),
same quadrature (Gauss-Legendre, --steps points, --batch points per forward pass), same baseline
(the unk token at every position; inseq's default, which keeps eos tokens as eos: there are none
in these sequences), same attribution target (the log-probability of each target token), same
normalisation (none: raw attributions summed over the embedding dimension, inseq's granular
output before its ``aggregate()``). inseq attributes each step to the whole prefix (prompt and
earlier generated tokens), like us. Captum's LLMGradientAttribution keeps earlier generated tokens
fixed (only the prompt moves along the path), so from the second generated token on it answers a
different question; it is compared on the first generated token, where the definitions coincide.

Prints, in one run: seconds per explained token for each tool, the ratio, and the max absolute
difference of the attribution matrices (also relative to the largest |score|).

A chat model (``--chat``, e.g. SmolLM2-135M-Instruct converted to a transformers directory): the
prompts are user questions rendered through the model's chat template, and the continuations are
teacher-forced answers. inseq tokenizes with ``add_special_tokens=True`` (prepending BOS, and
dropping a doubled BOS, so the rendered ``<|im_start|>...`` keeps one) and keeps every token equal
to the tokenizer's eos in its baseline (the converted SmolLM2 tokenizer names ``<|im_start|>`` its
eos, bos and pad). We give ``explain`` the same sequence and keep the same tokens fixed through
``user_spans`` (every character except the ``<|im_start|>`` markers), so both compute the same
integral. ``--pairs`` limits the number of generations (a 135M model is slow on 2 CPU cores).

Usage:
    python benchmarks/bench_explain_vs_inseq.py [--model builtin:tiny|builtin:micro|random:tiny-shape|DIR]
                                                [--tokens 16] [--steps 50] [--batch 50] [--pairs 4] [--chat]
    python benchmarks/bench_explain_vs_inseq.py --model /work/models/smollm2-hf --chat --steps 20 --batch 20 \
                                                --tokens 8 --pairs 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from importlib import metadata  # noqa: E402

# (prompt, continuation) from the pydoc text both bundled models were built on. Continuations start
# with a space so that tokenizing prompt + continuation jointly (inseq) and apart (us) agree.
PAIRS = [
    ("The return statement leaves the current function call with",
     " the expression list (or None) as return value. When return passes control out of a try statement"),
    ("A class definition defines a class object.",
     " The class name is bound to this class object in the original local namespace, and the inheritance list"),
    ("Names refer to objects.",
     " Names are introduced by name binding operations. Each occurrence of a name in the program text refers"),
    ("The for statement is used to iterate over",
     " the elements of a sequence (such as a string, tuple or list) or other iterable object, and the"),
]


# (user question, teacher-forced answer) for chat models.
CHAT_PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris. It is known for the Eiffel Tower and its museums."),
    ("Why is the sky blue? Answer in one sentence.", "The sky is blue because air molecules scatter blue sunlight more than red light."),
    ("My order is late. What should I do?", "I'm sorry to hear that. Please share your order number so I can check its status."),
    ("Give me a tip for writing clear emails.", "Keep it short: state your request in the first sentence and use one topic per email."),
]


def inseq_view(lm, text: str):
    """``text`` as inseq tokenizes it, and the character spans that move along its path.

    inseq tokenizes with add_special_tokens=True: where the tokenizer adds a BOS, it lands first (for
    a rendered chat prompt before the rendered <|im_start|>: its doubled-BOS fix does not reach the
    target side, measured: ids [1, 1, 9690, ...]). Its baseline keeps every token equal to the eos
    fixed (the converted SmolLM2 tokenizer names <|im_start|> its eos, bos and pad). Give explain the
    same sequence and keep the same markers fixed through user_spans, so both compute one integral.
    """
    import re

    tok = lm.tokenizer
    if tok.bos_token and getattr(tok, "add_bos_token", False):
        text = tok.bos_token + text
    marker = tok.convert_ids_to_tokens(tok.eos_token_id)
    spans, pos = [], 0
    for m in re.finditer(re.escape(marker), text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return text, spans


def chat_pairs(lm, n_tokens: int):
    """Rendered prompts as inseq sees them, answers cut to ``n_tokens``, and the spans that move."""
    out = []
    for user, answer in CHAT_PAIRS:
        rendered, spans = inseq_view(lm, lm.chat_prompt(user)[0])
        out.append((rendered, lm.tokenizer.decode(lm.encode(answer)[:n_tokens]), spans))
    return out


def load(spec: str, chat: bool = False):
    from audit.models.local import LanguageModel

    if spec == "random:tiny-shape":
        # builtin:tiny's shape (2 layers x 128, 4 heads) with random weights and the micro tokenizer:
        # the compute of the demo model when builtin:tiny cannot be built.
        from transformers import GPT2Config, GPT2LMHeadModel

        micro = LanguageModel.load("builtin:micro", device="cpu", dtype="float32")
        eos = micro.tokenizer.eos_token_id
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=2048, n_positions=256, n_embd=128, n_layer=2, n_head=4,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
        return LanguageModel(GPT2LMHeadModel(cfg), micro.tokenizer, spec=spec), spec
    try:
        return LanguageModel.load(spec, device="cpu", dtype="float32", chat_template="auto" if chat else "none"), spec
    except Exception as e:  # builtin:tiny may not be buildable in this checkout yet
        if spec != "builtin:tiny":
            raise
        print(f"# builtin:tiny unavailable ({type(e).__name__}: {str(e).splitlines()[0]}); using builtin:micro")
        return LanguageModel.load("builtin:micro", device="cpu", dtype="float32"), "builtin:micro"


def run_ours(lm, pairs, steps, batch):
    from audit.explain import explain_many

    t = time.perf_counter()
    exps = explain_many(lm, pairs, method="integrated_gradients", n_steps=steps, integration="gausslegendre",
                        baseline="unk", internal_batch_size=batch, faithfulness=False,
                        completeness_tolerance=None)  # fixed steps, as inseq
    # Positions kept fixed (None) are the ones inseq keeps in its baseline: their score there is 0.
    return time.perf_counter() - t, [torch.tensor([[v if v is not None else float("nan") for v in row]
                                                   for row in e.attributions]) for e in exps], exps


def run_inseq(lm, pairs, steps, batch):
    import inseq

    im = inseq.load_model(lm.model, "integrated_gradients", tokenizer=lm.tokenizer)
    mats, ids = [], []
    t = time.perf_counter()
    for prompt, target, *_ in pairs:
        out = im.attribute(prompt, prompt + target, n_steps=steps, internal_batch_size=batch,
                           attributed_fn="probability", logprob=True, show_progress=False)
        sa = out.sequence_attributions[0]
        # target_attributions: (sequence, generated, hidden) with NaN for non-sources -> (generated, sequence)
        mats.append(sa.target_attributions.sum(-1).T.float())
        ids.append([tok.id for tok in sa.target])
    return time.perf_counter() - t, mats, ids


def run_captum(lm, pairs, steps, batch):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    tok = lm.tokenizer
    lig = LayerIntegratedGradients(lm.model, lm.model.get_input_embeddings())
    llm = LLMGradientAttribution(lig, tok)
    mats = []
    t = time.perf_counter()
    for prompt, target, *_ in pairs:
        inp = TextTokenInput(prompt, tok, baselines=tok.unk_token_id)
        res = llm.attribute(inp, target=target, n_steps=steps, internal_batch_size=batch, method="gausslegendre")
        mats.append(res.token_attr.float())  # (generated, prompt)
    return time.perf_counter() - t, mats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--tokens", type=int, default=16, help="generated tokens explained per prompt")
    ap.add_argument("--steps", type=int, default=50, help="integration points")
    ap.add_argument("--batch", type=int, default=50, help="integration points per forward pass (internal_batch_size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=4, help="generations explained (at most 4)")
    ap.add_argument("--chat", action="store_true", help="a chat model: render user questions through its template")
    ap.add_argument("--no-captum", action="store_true", help="skip Captum's LLMGradientAttribution")
    ap.add_argument("--no-defaults", action="store_true", help="skip the run at our default settings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import captum
    import inseq
    import transformers

    lm, spec = load(args.model, args.chat)
    info = lm.info()
    print(f"# model {spec}: {info.architecture}, {info.parameters:,} parameters; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, captum {captum.__version__}, inseq {metadata.version('inseq')}, "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}")
    # The first --tokens tokens of each continuation (teacher-forced: both tools explain the same text).
    if args.chat:
        pairs = chat_pairs(lm, args.tokens)[:args.pairs]
    else:
        pairs = []
        for p, t in PAIRS[:args.pairs]:
            # A tokenizer that adds BOS (SmolLM2): inseq's sequence. On a raw prompt inseq's baseline
            # moves that BOS too (measured: a nonzero score on it), so no span keeps it fixed here.
            text, _ = inseq_view(lm, p)
            pairs.append((text, lm.tokenizer.decode(lm.encode(t)[:args.tokens])))
    n_tokens = sum(len(lm.encode(t)) for _, t, *_ in pairs)
    print(f"# {len(pairs)} generations, {n_tokens} explained tokens, IG gausslegendre n_steps={args.steps}, "
          f"internal_batch_size={args.batch}")

    # Warm up every tool once (imports, first-call allocations) on the first pair.
    warm = [(p, lm.tokenizer.decode(lm.encode(t)[:1]), *rest) for p, t, *rest in pairs[:1]]  # short: a warm-up
    run_ours(lm, warm, args.steps, args.batch)
    run_inseq(lm, warm, args.steps, args.batch)
    # Captum's LLM wrapper would move the template tokens that inseq and we keep fixed.
    use_captum = not args.no_captum and not args.chat
    if use_captum:
        run_captum(lm, warm, args.steps, args.batch)

    import resource

    t_ours, ours, exps = run_ours(lm, pairs, args.steps, args.batch)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_inseq, theirs, inseq_ids = run_inseq(lm, pairs, args.steps, args.batch)
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_captum, cap = run_captum(lm, pairs, args.steps, args.batch) if use_captum else (float("nan"), [None] * len(pairs))
    from audit.explain import explain_many

    defaults, t_default = [], float("nan")
    if not args.no_defaults:
        t = time.perf_counter()
        defaults = explain_many(lm, pairs, faithfulness=False)   # our defaults: 20 points, refined until complete
        t_default = time.perf_counter() - t

    diff_inseq, diff_captum, scale = 0.0, 0.0, 0.0
    for e, a, b, c, ids in zip(exps, ours, theirs, cap, inseq_ids):
        if ids != e.token_ids:   # say where, so the alignment can be fixed for this tokenizer
            at = next((i for i, (u, v) in enumerate(zip(ids, e.token_ids)) if u != v), min(len(ids), len(e.token_ids)))
            raise SystemExit(f"inseq tokenized the pair differently: {len(ids)} vs {len(e.token_ids)} ids, first "
                             f"difference at {at}: inseq {ids[max(0, at - 3):at + 3]} vs ours "
                             f"{e.token_ids[max(0, at - 3):at + 3]}")
        assert a.shape == b.shape, (a.shape, b.shape)
        both = ~torch.isnan(a)
        fixed = ~torch.isnan(b) & torch.isnan(a)    # kept fixed by both: we say None, inseq scores 0
        assert torch.equal(both | fixed, ~torch.isnan(b)), "different source masks"
        assert not fixed.any() or float(b[fixed].abs().max()) == 0.0
        diff_inseq = max(diff_inseq, float((a[both] - b[both]).abs().max()))
        if c is not None:
            diff_captum = max(diff_captum, float((a[0, :e.n_prompt] - c[0]).abs().max()))
        scale = max(scale, float(a[both].abs().max()))
    worst_delta = max(max(abs(d) for d in e.convergence_delta) for e in exps)

    per = lambda s: s / n_tokens * 1000  # noqa: E731
    print(f"inseq 0.7.1 integrated_gradients : {per(t_inseq):8.1f} ms per explained token ({t_inseq:.2f} s)")
    print(f"captum LLMGradientAttribution    : {per(t_captum):8.1f} ms per explained token ({t_captum:.2f} s)")
    print(f"audit.explain integrated_gradients: {per(t_ours):8.1f} ms per explained token ({t_ours:.2f} s)")
    if defaults:
        print(f"audit.explain defaults ({sorted({e.settings['n_steps'] for e in defaults})} points; complete within 1%: "
              f"{sum(bool(e.complete) for e in defaults)}/{len(defaults)}, worst gap "
              f"{max(e.completeness_error() for e in defaults):.3g}): "
              f"{per(t_default):.1f} ms per explained token ({t_default:.2f} s; {t_inseq / t_default:.2f}x vs inseq at {args.steps})")
    print(f"peak RSS after ours: {rss_ours:.0f} MB; after inseq too: {rss_all:.0f} MB")
    print(f"speed-up vs inseq : {t_inseq / t_ours:.2f}x")
    print(f"speed-up vs captum: {t_captum / t_ours:.2f}x")
    print(f"max |ours - inseq|  = {diff_inseq:.3g} (largest |score| {scale:.3g}; relative {diff_inseq / scale:.2g})")
    print(f"max |ours - captum| = {diff_captum:.3g} on the first generated token (relative {diff_captum / scale:.2g})")
    print(f"max |completeness delta| (ours) = {worst_delta:.3g}; worst relative gap "
          f"{max(e.completeness_error() for e in exps):.3g} at {args.steps} points")


if __name__ == "__main__":
    main()
