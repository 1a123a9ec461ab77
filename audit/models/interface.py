"""The one model interface the runner, the evaluators, the attacks and the scorers see.

lm-eval's ``LM`` is the anchor: a few batched methods (``generate``, ``loglikelihood``) taking
request lists, a little identity (``info``, ``fingerprint``, ``prompt_format``, ``max_length``) and
the rules every backend must share, written once here so two backends cannot drift apart:
:func:`sample_seed` (sampling depends on seed, prompt and index, never on batching),
:func:`likelihood_texts` and :func:`joint_split` (where a log-likelihood's context ends).

Two backends implement it and never import each other: :class:`audit.models.local.LanguageModel`
(local weights: the only code that touches transformers model classes) and
:class:`audit.models.served.ServedModel` (an OpenAI-compatible server). :func:`audit.models.load.load_model`
picks one for a model spec. A backend without local weights says so with ``has_weights = False``;
sections that need gradients or embeddings (``Evaluator.needs_weights``) then refuse in one line.

Example:
    >>> from audit.models.local import LanguageModel
    >>> isinstance(LanguageModel.load("builtin:micro"), Model)
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

from .chat import Prompt

# What ``generate`` hands ``on_batch`` as generations finish: (prompt index, sample index, text).
OnBatch = Callable[[list[tuple[int, int, str]]], None]


@runtime_checkable
class Model(Protocol):
    """What a model backend offers the rest of the package (see the module docstring)."""

    spec: str                 # the spec string it was loaded from (``builtin:tiny``, a path, ``openai:URL``)
    path: str | None          # where its files (or its server) are
    has_weights: bool         # local weights: gradients, embeddings, fine-tuning
    tokenizer: Any            # a transformers tokenizer, or None (a served model without ``tokenizer:``)
    chat: Any                 # the ChatFormat prompts are rendered through, or None (raw prompts)
    fingerprint_covers: str   # what the fingerprint hashed, in words

    @property
    def fingerprint(self) -> str:
        """Identity of what answers: weights by content, or the server's model id."""

    @property
    def max_length(self) -> int | None:
        """The context window in tokens (None: unknown, e.g. a server that does not say)."""

    @property
    def prompt_format(self) -> str | None:
        """Identity of the chat template + system prompt (None: raw prompts); part of cache keys."""

    def info(self) -> Any:
        """Model identity for results.json (a dataclass: spec, path, fingerprint, dtype, device, ...)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""

    def render(self, prompt: Prompt) -> str:
        """The exact text the model reads for ``prompt`` (through its chat template, if any)."""

    def generate(self, prompts: Sequence[Prompt], settings: Any = None, *, seed: int = 0, progress: bool = False,
                 on_batch: OnBatch | None = None, skip: Iterable[tuple[int, int]] = (),
                 desc: str = "generate") -> list[list[str]]:
        """``out[i][k]``: the k-th continuation of prompt i; ``skip`` jobs stay None, ``on_batch`` sees each batch."""

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]], *, batch_size: int = 16,
                      progress: bool = False) -> list[tuple[float, int]]:
        """Sum of log p(continuation | context) and its token count, per (context, continuation)."""


def sample_seed(seed: int, prompt: Prompt, index: int) -> int:
    """Per-sample RNG seed: sampling depends on (seed, prompt, index), never on batch layout.

    Example:
        >>> sample_seed(0, "hi", 1) == sample_seed(0, "hi", 1) != sample_seed(0, "hi", 2)
        True
    """
    if not isinstance(prompt, str):  # role/content turns
        prompt = json.dumps(list(prompt), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def likelihood_texts(ctx_text: str, cont: str, *, chat: bool) -> tuple[str, str]:
    """The (context, continuation) texts whose log-likelihood split is scored, local or served.

    Through a chat template the continuation is the assistant's turn: its own surrounding whitespace
    goes (the template ends the context where the answer starts). For raw prompts, lm-eval's rule:
    the context's trailing whitespace moves to the continuation, whose first word carries it in BPE
    vocabularies (" It", not " " + "It").

    Example:
        >>> likelihood_texts("Customer: hi\\nAgent: ", "Hello.", chat=False)
        ('Customer: hi\\nAgent:', ' Hello.')
        >>> likelihood_texts("<|im_start|>assistant\\n", " Hello. ", chat=True)
        ('<|im_start|>assistant\\n', 'Hello.')
    """
    if chat:
        return ctx_text, cont.strip()
    stripped = ctx_text.rstrip()
    return stripped, ctx_text[len(stripped):] + cont


def joint_split(whole: Sequence[int], ctx: Sequence[int]) -> int:
    """Where the tokens of context + continuation, tokenized together, stop agreeing with the context's own.

    The continuation is ``whole[k:]``: a token that straddles the boundary belongs to it (lm-eval's split).

    Example:
        >>> joint_split([5, 6, 9], [5, 7])
        1
    """
    k = 0
    while k < min(len(whole), len(ctx)) and whole[k] == ctx[k]:
        k += 1
    return k
