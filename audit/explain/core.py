"""``explain()``: attribute every generated token of one generation to the tokens before it."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Sequence

import torch

from ..config import GenerationSettings
from ..errors import AuditError
from ..models.chat import encode_plain
from ..registry import did_you_mean
from .explanation import Explanation, completeness_error
from .faithfulness import deletion_check
from .methods import METHODS
from .options import ExplainOptions
from .problem import Problem
from .tokens import readable_tokens

# Rows per forward pass when internal_batch_size is not given: about this many tokens.
_TOKENS_PER_PASS = 8192
_LOGITS_PER_PASS = 64 * 2**20   # floats of (rows, T, vocab) log-probabilities per forward pass
# Below this many parameters a CPU op is too small to gain from threads; spinning threads cost
# several times the work on a busy 2-core machine.
_SMALL_MODEL = 20_000_000


class ExplainError(AuditError):
    """An explanation cannot be computed (empty target, unknown method, ...)."""


def _options(options: ExplainOptions | None, overrides: dict[str, Any]) -> ExplainOptions:
    base = options or ExplainOptions()
    names = {f.name for f in dataclasses.fields(ExplainOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ExplainError(f"explain: unknown option {unknown[0]!r}{did_you_mean(unknown[0], names)}; "
                           f"valid: {', '.join(sorted(names))}")
    try:
        opts = dataclasses.replace(base, **overrides)
    except ValueError as e:
        raise ExplainError(f"explain: {e}") from None
    if opts.method != "auto":
        METHODS.get(opts.method)  # an unknown name fails here, before any model loads
    return opts


def resolve_method(name: str, lm) -> str:
    """``auto``: integrated gradients on small models, feature ablation from 20M parameters up.

    Per-token integrated gradients costs one forward and one backward per generated token for
    every integration point, and on a pretrained LM the straight path needs hundreds of points to
    be complete (SmolLM2-135M: 1,100% off at 20 points, still 300% at 400). Feature ablation
    costs one forward row per attributed token (the user's words and the generated tokens), is
    exact by construction (each score is a measured drop), and answers "which tokens drove this
    answer" in seconds on a CPU. Integrated gradients stays one option away.
    """
    if name != "auto":
        return name
    small = sum(p.numel() for p in lm.model.parameters()) < _SMALL_MODEL
    return "integrated_gradients" if small else "feature_ablation"


def _baseline_id(tokenizer, baseline: str) -> int:
    if str(baseline).isdigit():
        return int(baseline)
    if baseline == "auto":
        # unk first: a chat model's pad/eos is often a turn marker (the converted SmolLM2 tokenizer
        # names <|im_start|> its eos and pad), and "absent" should not read as "a new turn begins".
        for name in ("unk", "pad", "eos"):
            tid = getattr(tokenizer, f"{name}_token_id", None)
            if tid is not None:
                return int(tid)
    tid = getattr(tokenizer, f"{baseline}_token_id", None)
    if tid is None:
        raise ExplainError(f"explain: baseline {baseline!r}: the tokenizer has no {baseline} token; "
                           f"choose another (pad, eos, unk, bos) or give a token id")
    return int(tid)


def _load(model):
    from ..models.local import LanguageModel

    if isinstance(model, LanguageModel):
        return model
    if isinstance(model, str):
        return LanguageModel.load(model)
    raise ExplainError(f"explain: model must be a LanguageModel or a model spec, got {type(model).__name__}")


def explain(model, prompt: str, *, target: str | None = None, method: str | None = None,
            max_new_tokens: int | None = None, user_spans: Sequence[tuple[int, int]] | None = None,
            options: ExplainOptions | None = None, **overrides) -> Explanation:
    """Explain one generation: which earlier tokens drove each generated token.

    Without ``target`` the model generates greedily (``max_new_tokens`` tokens); with it, the given
    continuation is explained (teacher-forced). Prompt and target are tokenized separately, as
    the audit's generation pass sees them.

    Args:
        model: an :class:`~audit.models.local.LanguageModel` or a model spec (``builtin:tiny``, a directory).
        prompt: the prompt text.
        target: the continuation to explain (default: generate one).
        method: a name in :data:`audit.explain.METHODS` (default ``integrated_gradients``).
        max_new_tokens: tokens to generate when ``target`` is None.
        user_spans: character ranges ``[(start, end), ...]`` of the user's words in ``prompt`` (a
            rendered chat prompt). Only prompt tokens overlapping them (and the generated tokens)
            are attributed, moved along the path, ablated or deleted; template tokens stay fixed
            and are listed in ``Explanation.excluded``. None: every prompt token.
        options: an :class:`ExplainOptions`; keyword ``overrides`` replace its fields
            (``n_steps=``, ``baseline=``, ``faithfulness=``, ...).

    Returns:
        An :class:`Explanation` (plain data; ``.to_dict()`` / ``.from_dict()``).

    Example:
        >>> from audit.explain import explain
        >>> e = explain("builtin:micro", "The value is", max_new_tokens=3)
        >>> len(e.attributions) == len(e.target_tokens) == 3
        True
    """
    if method is not None:
        overrides["method"] = method
    if max_new_tokens is not None:
        overrides["max_new_tokens"] = max_new_tokens
    opts = _options(options, overrides)
    lm = _load(model)
    if target is None:
        if user_spans is not None and getattr(lm, "chat", None) is not None:
            raise ExplainError("explain: with user_spans the prompt is already rendered; give the target to explain "
                               "(generation would render it through the chat template again)")
        target = lm.generate([prompt], GenerationSettings(max_new_tokens=opts.max_new_tokens, do_sample=False),
                             seed=opts.seed)[0][0]
    return explain_many(lm, [(prompt, target, user_spans)], options=opts)[0]


def model_text(lm, prompt, user_spans=None) -> tuple[str, list[tuple[int, int]] | None]:
    """The text the model reads for ``prompt`` and the spans of the user's words in it.

    Given spans, ``prompt`` is taken as already rendered. Otherwise a model with a chat template
    renders the user's words (or role/content turns) as generation does, and the template's
    tokens are kept out of the explanation; a model without one reads the prompt as it is.
    """
    if user_spans is not None:
        return prompt, [tuple(sp) for sp in user_spans]
    chat = getattr(lm, "chat", None)
    if chat is not None:
        if isinstance(prompt, str):
            return lm.chat_prompt(prompt)
        return chat.render_with_spans(lm.tokenizer, prompt)
    if not isinstance(prompt, str):
        return lm.render(prompt), None
    return prompt, None


def explain_many(model, pairs: Sequence[tuple], *, options: ExplainOptions | None = None,
                 progress: bool = False, **overrides) -> list[Explanation]:
    """Explain several ``(prompt, target)`` or ``(prompt, target, user_spans)`` with the same settings."""
    opts = _options(options, overrides)
    lm = _load(model)
    opts = dataclasses.replace(opts, method=resolve_method(opts.method, lm))
    method = METHODS.get(opts.method)()
    out = []
    items = pairs
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(pairs, desc=f"explain ({opts.method})", unit="gen", leave=False)
    for item in items:
        prompt, target, spans = (tuple(item) + (None,))[:3]
        prompt, spans = model_text(lm, prompt, spans)
        out.append(_explain_one(lm, prompt, target, method, opts, spans))
    return out


def _prompt_ids(lm, prompt: str, spans) -> tuple[list[int], list[int]]:
    """Prompt token ids, and the indices of those outside ``spans`` (template tokens; [] without spans)."""
    if not prompt:
        return [], []
    if spans is None:
        return lm.encode(prompt), []
    spans = [(int(a), int(b)) for a, b in spans]
    for a, b in spans:
        if not 0 <= a <= b <= len(prompt):
            raise ExplainError(f"explain: user span ({a}, {b}) is outside the prompt of {len(prompt)} characters")
    try:
        # The user's words are plain text, as generation tokenizes them (a typed <|im_end|> is no control token).
        ids, offs = encode_plain(lm.tokenizer, prompt, spans, offsets=True)
    except NotImplementedError:
        raise ExplainError("explain: user spans need a fast tokenizer (character offsets)") from None
    inside = [any(s < b and a < e for a, b in spans) for s, e in offs]
    return ids, [j for j, ok in enumerate(inside) if not ok]


def _grad_rows(model, length: int, budget_mb: int) -> int:
    """Rows per gradient pass within ``budget_mb`` of kept activations.

    Estimate per token and layer (fp32 or the model's dtype): about 6 hidden-size vectors (norms,
    q/k/v, attention out, residual), 4 MLP-size vectors and the attention row. SmolLM2-135M:
    ~1.3 MB per token, 70 MB per 56-token row (measured: 146 rows per pass reached 11.7 GB).
    """
    cfg = model.config
    d = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 768)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 12)
    inner = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 12)
    elem = next(model.parameters()).element_size()
    per_row = length * layers * (6 * d + 4 * inner + heads * length) * elem
    return max(1, int(budget_mb * 2**20 // max(per_row, 1)))


def _attribute(lm, problem: Problem, method, opts: ExplainOptions, ids: torch.Tensor):
    """Run ``method`` on ``problem`` with the weights frozen and eval mode on (both restored after),
    at the thread count small models attribute fastest with; returns (result, target log-probs, faithfulness)."""
    threads = torch.get_num_threads()
    want = opts.threads
    if want is None and lm.device.type == "cpu" and sum(p.numel() for p in lm.model.parameters()) < _SMALL_MODEL:
        want = 1
    if want:
        torch.set_num_threads(want)
    was_training = lm.model.training
    lm.model.eval()
    # Attribution needs gradients w.r.t. embeddings only; weights stay untouched.
    req = [p.requires_grad for p in lm.model.parameters()]
    for p in lm.model.parameters():
        p.requires_grad_(False)
    try:
        res = method.attribute(problem, opts)
        target_lp = res.target_logprobs
        if target_lp is None:
            target_lp = problem.logprobs_from_ids(ids[None])[0]
        faith = None
        if opts.faithfulness:
            faith = deletion_check(problem, res.scores, k=opts.top_k, n_random=opts.n_random, seed=opts.seed,
                                   target_logprobs=target_lp)
    finally:
        for p, r in zip(lm.model.parameters(), req):
            p.requires_grad_(r)
        lm.model.train(was_training)
        torch.set_num_threads(threads)
    return res, target_lp, faith


def _explain_one(lm, prompt: str, target: str, method, opts: ExplainOptions, spans=None) -> Explanation:
    t0 = time.perf_counter()
    tok = lm.tokenizer
    p_ids, excluded = _prompt_ids(lm, prompt, spans)
    if not p_ids:  # an empty prompt: condition on the bos/eos token, as generation does
        p_ids = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
    # Through a chat template the target is the assistant's turn: plain text, as generation's output is.
    plain = [(0, len(target or ""))] if getattr(lm, "chat", None) is not None else []
    t_ids = encode_plain(tok, target, plain) if target else []
    if opts.max_target_tokens is not None:
        t_ids = t_ids[:opts.max_target_tokens]
    if not t_ids:
        raise ExplainError("explain: the target is empty; nothing to explain (give --target or raise max_new_tokens)")
    if len(t_ids) >= lm.max_length:
        raise ExplainError(f"explain: the target has {len(t_ids)} tokens, more than the model's window of {lm.max_length}")
    cut = max(0, len(p_ids) - (lm.max_length - len(t_ids)))   # keep the prompt's end if the window is short
    p_ids, excluded = p_ids[cut:], [j - cut for j in excluded if j >= cut]
    ids = torch.tensor(p_ids + t_ids, dtype=torch.long, device=lm.device)
    # Forward-only rows: ~8k tokens per pass, and at most ~256 MB of (rows, T, vocab) logits.
    n_vocab_out = getattr(lm.model.config, "vocab_size", None) or 50_000
    rows = opts.internal_batch_size or max(1, min(_TOKENS_PER_PASS // len(ids), _LOGITS_PER_PASS // (len(t_ids) * n_vocab_out)))
    grad_rows = opts.internal_batch_size or _grad_rows(lm.model, len(ids), opts.grad_memory_mb)
    sources = None
    if excluded or not opts.attribute_generated:
        sources = torch.ones(len(ids), dtype=torch.bool, device=lm.device)
        sources[excluded] = False
        if not opts.attribute_generated:
            sources[len(p_ids):] = False
    baseline_id = _baseline_id(tok, opts.baseline)
    n_vocab = lm.model.get_input_embeddings().num_embeddings
    if not 0 <= baseline_id < n_vocab:  # an out-of-range id would fail deep in the embedding lookup
        raise ExplainError(f"explain: baseline token id {baseline_id} is outside the model's vocabulary of {n_vocab}")
    problem = Problem(model=lm.model, ids=ids, n_prompt=len(p_ids), baseline_id=baseline_id, batch_rows=rows,
                      grad_rows=grad_rows, sources=sources)

    res, target_lp, faith = _attribute(lm, problem, method, opts, ids)

    mask = problem.source_mask().cpu()
    scores = res.scores.detach().float().cpu()
    matrix = [[float(scores[t, j]) if mask[t, j] else None for j in range(problem.length)] for t in range(problem.n_target)]
    fx = [float(v) for v in target_lp.detach().float().cpu()]
    fb = delta = None
    if res.baseline_logprobs is not None:
        fb = [float(v) for v in res.baseline_logprobs.detach().float().cpu()]
        delta = [math.fsum(v for v in row if v is not None) - (a - b) for row, a, b in zip(matrix, fx, fb)]
    tokens = readable_tokens(tok, p_ids + t_ids)
    settings = {"method": opts.method, "internal_batch_size": rows, **(res.info or {})}
    complete = None
    if delta is not None and opts.completeness_tolerance is not None:
        settings["completeness_tolerance"] = opts.completeness_tolerance
        settings["max_n_steps"] = opts.max_n_steps
        complete = completeness_error(delta, fx, fb) <= opts.completeness_tolerance
    if method.uses_gradients:
        settings["grad_rows"] = grad_rows
    if method.uses_baseline or opts.faithfulness:
        settings["baseline"] = opts.baseline
        settings["baseline_token"] = readable_tokens(tok, [problem.baseline_id])[0]
    if opts.faithfulness:
        settings.update(top_k=opts.top_k, n_random=opts.n_random, seed=opts.seed)
    return Explanation(
        prompt=prompt, target=target if opts.max_target_tokens is None else "".join(tokens[len(p_ids):]),
        method=opts.method, source_tokens=tokens, n_prompt=len(p_ids), token_ids=p_ids + t_ids,
        attributions=matrix, target_logprobs=fx, baseline_logprobs=fb, convergence_delta=delta, complete=complete,
        excluded=excluded, user_spans=[list(sp) for sp in spans] if spans is not None else None,
        faithfulness=faith, settings=settings,
        model={"spec": getattr(lm, "spec", None), "fingerprint": lm.fingerprint},
        seconds=time.perf_counter() - t0,
    )
