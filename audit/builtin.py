"""Embedded models that need no download: ``builtin:micro`` (tests) and ``builtin:tiny`` (demo).

Both are GPT-2 architectures with a byte-level BPE tokenizer trained with ``tokenizers`` on text
every CPython ships (``pydoc_data.topics``), so they can be built on any machine with no network.
``builtin:micro`` is random-init (~40k parameters) and builds in well under a second;
``builtin:tiny`` is pretrained (see :func:`build_tiny`) and cached in the user's cache dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

EOS = "<|endoftext|>"
BUILTIN_PREFIX = "builtin:"


def cache_dir() -> Path:
    """Root of audit's cache: ``$AUDIT_CACHE`` or ``$XDG_CACHE_HOME/audit`` or ``~/.cache/audit``."""
    if os.environ.get("AUDIT_CACHE"):
        return Path(os.environ["AUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "audit"


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
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
                                  padding_side="left")  # decoder-only generation pads on the left
    return tok


def _gpt2_config(tok, *, n_layer: int, n_embd: int, n_head: int, n_positions: int):
    from transformers import GPT2Config

    eos = tok.convert_tokens_to_ids(EOS)
    # GPT2Config defaults bos/eos to 50256, outside a small vocab: set them to the tokenizer's.
    return GPT2Config(
        vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )


def _atomic_save(model, tok, target: Path) -> Path:
    """Save into a temp dir beside ``target`` and rename it in, so a crash leaves no half model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first: keep theirs
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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
    return _atomic_save(model, tok, Path(path))


def resolve(spec: str) -> Path:
    """Map a ``builtin:NAME`` spec to a local model directory, building it on first use."""
    name = spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else spec
    if name == "micro":
        target = cache_dir() / "builtin-micro-v1"
        if not (target / "config.json").exists():
            build_micro(target)
        return target
    if name == "tiny":
        target = cache_dir() / f"builtin-tiny-{TINY_VERSION}"
        if not (target / "config.json").exists():
            build_tiny(target)
        return target
    raise ValueError(f"unknown builtin model {spec!r}; available: builtin:tiny, builtin:micro")


TINY_VERSION = "v1"


def build_tiny(path: str | os.PathLike, *, steps: int = 500, progress: bool = True) -> Path:
    """Pretrain the embedded default GPT-2 (2 layers x 128, ~2k BPE vocab) on the bundled corpus."""
    raise NotImplementedError("builtin:tiny is being built in audit/builtin.py")
