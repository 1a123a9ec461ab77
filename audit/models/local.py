"""The model adapter: the only module that touches transformers model classes.

:class:`LanguageModel` loads a causal LM + tokenizer (``builtin:*``, a local directory, or a hub id
already in the user's cache), generates in batches with a KV cache (left-padded, batches sorted by
length, the prompt start every row of a batch shares - a chat template's system prompt - prefilled
once), and scores log-likelihoods. Results never depend on the batch size: greedy decoding is
deterministic per row, and sampling draws from a generator seeded per (seed, prompt, sample index).
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..config import GenerationSettings, ModelSpec
from ..errors import first_line
from .builtin import resolve as resolve_builtin
from .chat import ChatFormat, ChatTemplateError, Prompt, control_strings, encode_plain, forged_controls, resolve_format
from .files import ModelLoadError, context_window, locate
from .fingerprint import fingerprint_path
from .gguf import resolve_gguf
from .interface import joint_split, likelihood_texts, sample_seed

log = logging.getLogger("audit")


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def _pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _load_tokenizer(path: str, *, trust_remote_code: bool, revision: str | None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except (ValueError, AttributeError, KeyError) as e:
        # A tokenizer saved by transformers 5 may name `TokenizersBackend`, unknown to 4.x:
        # the tokenizer.json itself is still readable.
        tfile = Path(path) / "tokenizer.json"
        if not tfile.exists():
            raise
        warnings.warn(f"AutoTokenizer failed ({e}); loading {tfile} as PreTrainedTokenizerFast")
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tfile))
    if tok.pad_token is None:
        # Decoder-only models often have no pad token; padding positions are masked anyway.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    tok.padding_side = "left"
    return tok


PARAMS_COVERS = "sha256 of every state_dict tensor (name and float32 bytes) of the in-memory model; first 16 hex digits"


def params_fingerprint(model: torch.nn.Module) -> str:
    """Identity of in-memory weights (for models not loaded from a directory)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def resolve_model_path(spec: ModelSpec) -> str:
    """The directory (or cached hub id) a local model spec loads from: builtins are built and GGUF
    files converted on first use, both cached; a directory is checked for config, weights and tokenizer.

    Raises:
        ModelLoadError: one line saying what is missing.
    """
    where = locate(spec.path, trust_remote_code=spec.trust_remote_code)
    if where.kind == "builtin":
        return str(resolve_builtin(where.path))
    if where.kind == "gguf":   # llama.cpp checkpoint: converted once, cached as a model directory
        return str(resolve_gguf(where.path))
    return where.path


@dataclass
class ModelInfo:
    spec: str
    path: str
    fingerprint: str
    dtype: str
    device: str
    parameters: int
    architecture: str
    max_length: int
    chat_template: str | None = None   # "tokenizer", a template file, or None (raw prompts)
    prompt_format: str | None = None   # hash of the rendered template + system prompt (None: raw prompts)
    system_prompt: str | None = None
    fingerprint_covers: str = ""   # what the fingerprint hashed (files, or in-memory parameters)


class LanguageModel:
    """A causal LM with its tokenizer, and batched generate / log-likelihood methods (a :class:`~audit.models.interface.Model`).

    Example:
        >>> lm = LanguageModel.load("builtin:micro")
        >>> len(lm.generate(["Hello"], GenerationSettings(max_new_tokens=4))[0])
        1
    """

    has_weights = True   # gradients, embeddings and fine-tuning work on it

    def __init__(self, model, tokenizer, *, spec: str = "<in-memory>", path: str | None = None, fingerprint: str | None = None,
                 chat: ChatFormat | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.spec = spec
        self.path = path
        self._fingerprint = fingerprint
        # The chat template every prompt is rendered through (None: prompts go in raw, as for base models).
        self.chat = chat
        self._prompt_format: str | None = None
        self.stop_token_ids = _stop_token_ids(model, tokenizer)
        self._keep_logits: bool | None = None  # whether the forward takes logits_to_keep (see _prefill_kwargs)
        # What the fingerprint hashed; load() sets the files it covered.
        self.fingerprint_covers = PARAMS_COVERS
        self.model.eval()

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: str | ModelSpec, **overrides) -> "LanguageModel":
        """Load from ``builtin:NAME``, a local directory, a ``.gguf`` file, or a hub id present in the local cache.

        A served model's spec is refused in one line: the commands that load weights directly
        (finetune, harden, explain) need local weights. Use :func:`audit.models.load.load_model`
        to accept either.
        """
        if isinstance(spec, str):
            spec = ModelSpec(path=spec, **overrides)
        elif not isinstance(spec, ModelSpec):   # a served model's spec: its path is the served string
            locate(spec.path)
        from transformers import AutoModelForCausalLM

        path = resolve_model_path(spec)
        device = _pick_device(spec.device)
        dtype = _pick_dtype(spec.dtype, device)
        try:
            tok = _load_tokenizer(path, trust_remote_code=spec.trust_remote_code, revision=spec.revision)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=spec.trust_remote_code,
                                                         revision=spec.revision)
        except OSError as e:
            first = first_line(e)
            raise ModelLoadError(
                f"cannot load model {spec.path!r}: {first} (give a local directory with config.json, weights and "
                f"tokenizer files, or a hub id already in your Hugging Face cache)"
            ) from None
        except (ValueError, KeyError, AttributeError, ImportError, TypeError) as e:
            first = first_line(e)
            raise ModelLoadError(f"cannot load model {spec.path!r}: {first}") from None
        except Exception as e:
            # A corrupt weights file: safetensors raises its own SafetensorError (no common base to name).
            if type(e).__name__ != "SafetensorError":
                raise
            raise ModelLoadError(f"cannot load model {spec.path!r}: corrupt weights file in {path}: {first_line(e)}") from None
        model.to(device)
        fp = fingerprint_path(Path(path)) if Path(path).is_dir() else None
        chat = resolve_format(tok, spec.chat_template, spec.system_prompt)
        lm = cls(model, tok, spec=spec.path, path=str(path), fingerprint=fp.digest if fp else None, chat=chat)
        if fp is not None:
            lm.fingerprint_covers = fp.covers
        return lm

    # ---- identity ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = params_fingerprint(self.model)
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        """Call after changing the weights in place (e.g. after fine-tuning)."""
        self._fingerprint = None
        self.fingerprint_covers = PARAMS_COVERS

    @property
    def max_length(self) -> int:
        return context_window(self.model.config) or 2048

    @property
    def prompt_format(self) -> str | None:
        """Identity of the chat template + system prompt prompts are rendered with (None: raw prompts).

        Part of generation cache keys and of a baseline's identity: another template means
        other model inputs, so its generations are never reused.
        """
        if self.chat is None:
            return None
        if self._prompt_format is None:
            self._prompt_format = self.chat.identity(self.tokenizer)
        return self._prompt_format

    def info(self) -> ModelInfo:
        return ModelInfo(spec=self.spec, path=str(self.path), fingerprint=self.fingerprint, dtype=str(self.dtype).replace("torch.", ""),
                         device=str(self.device), parameters=sum(p.numel() for p in self.model.parameters()),
                         architecture=type(self.model).__name__, max_length=self.max_length,
                         chat_template=self.chat.source if self.chat else None, prompt_format=self.prompt_format,
                         system_prompt=self.chat.system_prompt if self.chat else None,
                         fingerprint_covers=self.fingerprint_covers)

    def input_embeddings(self) -> torch.nn.Module:
        """The token embedding layer (for attribution and embedding-space adversarial training)."""
        return self.model.get_input_embeddings()

    # ---- tokenisation --------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def render(self, prompt: Prompt) -> str:
        """The exact text the model reads for ``prompt`` (the user's words, or role/content turns).

        With a chat template: the rendered conversation ending with the assistant's generation
        prompt (as ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``); without
        one: the prompt itself (a lone user turn's words).
        """
        if self.chat is not None:
            return self.chat.render(self.tokenizer, prompt)
        if isinstance(prompt, str):
            return prompt
        if len(prompt) == 1:
            return prompt[0]["content"]
        raise ChatTemplateError(f"a prompt of {len(prompt)} role/content turns needs a chat template, and model "
                                f"{self.spec} has none (set model.chat_template to a template file)")

    def chat_prompt(self, user_text: str, *, system: str | None = None) -> tuple[str, list[tuple[int, int]]]:
        """The model text for ``user_text`` and the (start, end) character spans of the user's words in it.

        For attribution and any tool that must tell the user's words from template tokens. With
        no chat template the text is ``user_text`` itself and the span covers all of it.
        ``system`` overrides the model's system prompt for this call.

        Example:
            >>> lm = LanguageModel.load("builtin:micro")
            >>> lm.chat_prompt("Hello there")
            ('Hello there', [(0, 11)])
        """
        if self.chat is None:
            return user_text, [(0, len(user_text))] if user_text else []
        return self.chat.render_with_spans(self.tokenizer, user_text, system=system)

    def render_content(self, prompt: Prompt) -> tuple[str, list[tuple[int, int]]]:
        """:meth:`render` and the character spans of every turn's content in it (users' and data's words:
        plain text, see :meth:`encode_prompt`); without a chat template, no spans (the prompt is raw)."""
        if self.chat is not None:
            return self.chat.render_content(self.tokenizer, prompt)
        return self.render(prompt), []

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of :meth:`render` ``(prompt)`` in which only the chat template's own markers are control
        tokens: a ``<|im_end|>`` typed in a turn's content is tokenized as its characters (see
        :func:`audit.models.chat.encode_plain`). Ids equal ``encode(render(prompt))`` for any prompt
        whose content holds no special-token text."""
        text, spans = self.render_content(prompt)
        return encode_plain(self.tokenizer, text, spans)

    def encoding_tag(self, prompt: Prompt) -> str | None:
        """``"plain-controls"`` when ``prompt``'s content holds special-token text that :meth:`encode_prompt`
        reads as plain characters (a generation cache key names it); None for every other prompt."""
        if self.chat is None:
            return None
        text, spans = self.render_content(prompt)
        return "plain-controls" if forged_controls(text, spans, control_strings(self.tokenizer)) else None

    def _prompt_ids(self, prompt: Prompt, budget: int, cut: list[int] | None = None) -> list[int]:
        """The prompt's ids, cut to its last ``budget`` tokens; the full length of a cut prompt is appended to
        ``cut`` (the caller warns once for all of them) or, without ``cut``, warned about here."""
        ids = self.encode_prompt(prompt)
        if not ids:  # an empty prompt: condition on the bos/eos token
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id]
        if len(ids) > budget:
            if cut is None:
                warnings.warn(f"prompt of {len(ids)} tokens exceeds the context budget of {budget}; keeping its last {budget} tokens")
            else:
                cut.append(len(ids))
            ids = ids[-budget:]
        return ids

    def _left_pad(self, rows: Sequence[Sequence[int]]):
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], settings: GenerationSettings | None = None, *, seed: int = 0,
                 progress: bool = False, on_batch: Callable[[list[tuple[int, int, str]]], None] | None = None,
                 skip: Iterable[tuple[int, int]] = (), desc: str = "generate") -> list[list[str]]:
        """Generate ``settings.num_samples`` continuations for each prompt.

        Args:
            prompts: the user's words (rendered through the chat template, if any), or lists of
                role/content turns ending with a user turn.
            settings: decoding settings (greedy by default).
            seed: run seed; sampling is seeded per (seed, prompt, sample index).
            progress: show a tqdm bar.
            on_batch: called after each batch with ``(prompt_index, sample_index, text)`` triples,
                so callers can persist finished work as it completes.
            skip: ``(prompt_index, sample_index)`` pairs already done (their slots stay ``None``).
            desc: label of the progress bar.

        Returns:
            ``out[i][k]``: the k-th continuation of prompt i (without the prompt).
        """
        settings = settings or GenerationSettings()
        n_samples = settings.num_samples
        out: list[list[str | None]] = [[None] * n_samples for _ in prompts]
        done = set(skip)
        budget = max(1, self.max_length - settings.max_new_tokens)
        jobs = [(i, k) for i in range(len(prompts)) for k in range(n_samples) if (i, k) not in done]
        if not jobs:
            return out  # type: ignore[return-value]
        cut: list[int] = []
        encoded = {i: self._prompt_ids(prompts[i], budget, cut) for i in {i for i, _ in jobs}}
        if cut:   # one line per call, not one per prompt (a jailbreak set on a short-context model printed dozens)
            warnings.warn(f"{len(cut)} of {len(encoded)} prompts exceed the context budget of {budget} tokens "
                          f"(longest {max(cut)}); each keeps its last {budget} tokens")
        # Sort by length so each batch pads little; ties keep input order (stable sort).
        jobs.sort(key=lambda j: len(encoded[j[0]]))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=desc, unit="gen", leave=False)
        try:
            for start in range(0, len(jobs), settings.batch_size):
                batch = jobs[start:start + settings.batch_size]
                texts = self._generate_batch([encoded[i] for i, _ in batch],
                                             [sample_seed(seed, prompts[i], k) for i, k in batch], settings)
                triples = []
                for (i, k), text in zip(batch, texts):
                    out[i][k] = text
                    triples.append((i, k, text))
                if on_batch:
                    on_batch(triples)
                if bar:
                    bar.update(len(batch))
        finally:
            if bar:
                bar.close()
        return out  # type: ignore[return-value]

    def _prefill_kwargs(self) -> dict:
        """``logits_to_keep=1`` where the model's forward takes it: the prompt pass then projects only
        the last position onto the vocabulary (49k columns for SmolLM2: a quarter of a chat prompt's
        prefill time went into logits nobody reads)."""
        if self._keep_logits is None:
            import inspect

            try:
                self._keep_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
            except (TypeError, ValueError):
                self._keep_logits = False
        return {"logits_to_keep": 1} if self._keep_logits else {}

    def _shared_prefix(self, rows: list[list[int]]):
        """The KV cache of the tokens every row starts with, computed once and repeated per row.

        A chat template puts the same system prompt and turn header before every question (24 of
        SmolLM2's ~44 prompt tokens); the batch then prefills only what differs. Returns
        ``(n_tokens, cache)``, or ``(0, None)`` where there is nothing worth sharing or the model's
        cache cannot be repeated along the batch (then the batch is prefilled whole, as before).
        Every row keeps at least one token of its own, whose logits pick the first new token.
        """
        if len(rows) < 2 or not type(self.model).__module__.startswith("transformers."):
            return 0, None
        n = min(len(r) for r in rows) - 1
        first = rows[0]
        for r in rows[1:]:
            n = min(n, next((j for j in range(n) if r[j] != first[j]), n))
        if n < 4:
            return 0, None
        ids = torch.tensor([first[:n]], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, position_ids=torch.arange(n, device=self.device)[None], use_cache=True,
                         **self._prefill_kwargs())
        past = out.past_key_values
        if not hasattr(past, "batch_repeat_interleave"):
            return 0, None
        past.batch_repeat_interleave(len(rows))
        return n, past

    def _generate_batch(self, rows: list[list[int]], seeds: list[int], s: GenerationSettings) -> list[str]:
        # Layout: [shared prefix][left padding][each row's own tokens]; positions come from the mask,
        # so the padding in the middle shifts nothing and the 4D mask hides it.
        shared, past = self._shared_prefix(rows)
        ids, mask = self._left_pad([r[shared:] for r in rows])
        B = ids.shape[0]
        if shared:
            mask = torch.cat([torch.ones((B, shared), dtype=mask.dtype, device=mask.device), mask], dim=1)
        # Stop on any end token, as transformers does: the tokenizer's eos and the generation config's.
        stops = torch.tensor(sorted(self.stop_token_ids), dtype=torch.long, device=self.device)
        eos = stops if len(stops) else None
        gens = [torch.Generator(device="cpu").manual_seed(sd) for sd in seeds] if s.do_sample else None
        finished = torch.zeros(B, dtype=torch.bool, device=self.device)
        new_tokens: list[torch.Tensor] = []
        cur_ids, cur_mask = ids, mask
        fast_mask = self._can_pass_4d_mask(mask.shape[1] + s.max_new_tokens) and bool((mask == 0).any())
        for step in range(s.max_new_tokens):
            # Position ids from the mask, so left padding does not shift positions.
            q = cur_ids.shape[1]
            step_pos = (cur_mask.cumsum(-1) - 1).clamp(min=0)[:, -q:]
            attn = self._mask_4d(cur_mask, q) if fast_mask else cur_mask
            out = self.model(input_ids=cur_ids, attention_mask=attn, position_ids=step_pos,
                             past_key_values=past, use_cache=True, **(self._prefill_kwargs() if step == 0 else {}))
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()  # (B, V)
            nxt = self._pick(logits, s, gens)
            if eos is not None:
                nxt = torch.where(finished, torch.full_like(nxt, self.tokenizer.pad_token_id), nxt)
                finished |= torch.isin(nxt, eos)
            new_tokens.append(nxt)
            if eos is not None and bool(finished.all()):
                break
            cur_ids = nxt[:, None]
            # Finished rows keep running (their tokens are discarded), so every new position is real.
            cur_mask = torch.cat([cur_mask, torch.ones_like(cur_mask[:, :1])], dim=1)
        gen = torch.stack(new_tokens, dim=1).tolist()  # (B, T)
        texts = []
        for row in gen:
            end = next((j for j, t in enumerate(row) if t in self.stop_token_ids), None)
            if end is not None:
                row = row[:end]
                text = self.tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            else:   # cut at max_new_tokens: never in the middle of a multi-byte character
                text = clean_cut(self.tokenizer, row)
            texts.append(s.cut_at_stop(text))
        return texts

    def _can_pass_4d_mask(self, total_len: int) -> bool:
        """Whether a ready 4D additive mask may replace the 2D padding mask.

        transformers rebuilds the 4D mask from the 2D one at every decoding step (through vmap:
        most of the step time of a small model on CPU); a prepared 4D mask is used as-is. Only for
        transformers' own sdpa/eager attention, and never where a sliding window could apply.
        """
        cfg = self.model.config
        window = getattr(cfg, "sliding_window", None)
        return (type(self.model).__module__.startswith("transformers.")
                and getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")
                and not getattr(cfg, "is_encoder_decoder", False)
                and (window is None or window >= total_len))

    def _mask_4d(self, mask2d: torch.Tensor, q_len: int) -> torch.Tensor:
        """(B, 1, q_len, kv) additive mask: causal, padding keys hidden, pad queries see themselves."""
        kv = mask2d.shape[1]
        keys = mask2d.bool()[:, None, None, :]  # (B, 1, 1, kv)
        q_idx = torch.arange(kv - q_len, kv, device=mask2d.device)[:, None]  # absolute query positions
        k_idx = torch.arange(kv, device=mask2d.device)[None, :]
        causal = k_idx <= q_idx  # (q, kv)
        # A left-pad query row would see no key at all (softmax of all -inf = NaN); let it see itself.
        allowed = (causal & keys) | (k_idx == q_idx)
        return torch.zeros(allowed.shape, dtype=self.dtype, device=mask2d.device).masked_fill(~allowed, torch.finfo(self.dtype).min)

    @staticmethod
    def _pick(logits: torch.Tensor, s: GenerationSettings, gens) -> torch.Tensor:
        if not s.do_sample:
            return logits.argmax(-1)
        logits = logits / s.temperature
        if s.top_k:
            kth = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if s.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            # Drop tokens once the mass BEFORE them already exceeds top_p (keeps at least one).
            drop_sorted = (cum - sorted_logits.softmax(-1)) > s.top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, -math.inf)
        probs = logits.softmax(-1).cpu()
        # One generator per row: a row's draw never depends on which rows share its batch.
        picks = [torch.multinomial(probs[b], 1, generator=gens[b]) for b in range(probs.shape[0])]
        return torch.cat(picks).to(logits.device)

    # ---- scoring -------------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]], *, batch_size: int = 16, progress: bool = False) -> list[tuple[float, int]]:
        """Sum of log p(continuation | context) and its token count, for each (context, continuation).

        Context and continuation are tokenized together and the tokens after the context's are
        scored (the lm-eval-harness convention): a token that straddles the boundary, such as
        " It" after "Agent: ", belongs to the continuation, as it would when the model wrote it.
        Without a chat template an empty context scores the continuation from the bos/eos token.
        With one, the context is a user turn (an empty context an empty user turn, as lm-eval does
        for likelihood tasks) and the continuation, whitespace-stripped, is the assistant's turn:
        it follows the rendered generation prompt. Contexts are truncated from the left to fit the
        model's window (continuations are kept whole when possible).

        Example:
            >>> lm = LanguageModel.load("builtin:micro")
            >>> lp, n = lm.loglikelihood([("Hello", " world")])[0]
            >>> n > 0 and lp < 0
            True
        """
        rows = []
        for ctx, cont in pairs:
            c_ids, t_ids = self._pair_ids(ctx, cont)
            if len(t_ids) >= self.max_length:
                warnings.warn(f"continuation of {len(t_ids)} tokens exceeds the context window; scoring its first {self.max_length - 1}")
                t_ids = t_ids[:self.max_length - 1]
            c_ids = c_ids[-(self.max_length - len(t_ids)):]
            rows.append((c_ids, t_ids))
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="score", unit="seq", leave=False)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            seqs = [rows[i][0] + rows[i][1] for i in idx]
            ids, mask = self._left_pad(seqs)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()  # (B, T, V)
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1)
            width = ids.shape[1]
            for b, i in enumerate(idx):
                n = len(rows[i][1])
                if n == 0:
                    results[i] = (0.0, 0)
                    continue
                # The continuation occupies the last n positions; its tokens are predicted by the n before.
                results[i] = (float(logp[b, width - 1 - n:].sum()), n)
            if bar:
                bar.update(len(idx))
        if bar:
            bar.close()
        return results

    def _pair_ids(self, ctx: Prompt, cont: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation), split where the context's own tokens end."""
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        rendered, spans = self.render_content(ctx)
        ctx_text, cont = likelihood_texts(rendered, cont, chat=self.chat is not None)
        if not ctx_text:
            return [bos], self.encode(cont)
        spans = [(a, min(b, len(ctx_text))) for a, b in spans if a < len(ctx_text)]
        if self.chat is not None and cont:   # the continuation is the assistant's turn: content too
            spans.append((len(ctx_text), len(ctx_text) + len(cont)))
        whole = encode_plain(self.tokenizer, ctx_text + cont, spans)
        k = joint_split(whole, encode_plain(self.tokenizer, ctx_text, [sp for sp in spans if sp[0] < len(ctx_text)]))
        return (whole[:k] or [bos]), whole[k:]



def _stop_token_ids(model, tokenizer) -> set[int]:
    """End-of-generation ids: the tokenizer's eos plus the generation config's (an int or a list).

    Chat models often end a turn with a token other than the tokenizer's eos (``<|im_end|>``,
    ``<|eot_id|>``); transformers stops on the generation config's, so we do too.
    """
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_cfg = getattr(model, "generation_config", None)
    extra = getattr(gen_cfg, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(i for i in extra if isinstance(i, int))
    return ids


def clean_cut(tokenizer, row: Sequence[int], *, max_drop: int = 3) -> str:
    """Decode the tokens of an answer cut at max_new_tokens, dropping up to ``max_drop`` trailing
    tokens that hold only part of a multi-byte character (byte-level BPE splits "é" or an emoji
    over tokens; the cut half decodes to U+FFFD). A U+FFFD earlier in the answer stays; one the
    model itself wrote as the very last character cannot be told from a split and goes too.

    Example:
        >>> from audit.models.local import LanguageModel
        >>> tok = LanguageModel.load("builtin:micro").tokenizer
        >>> ids = tok("caf\u00e9 \u00e9t\u00e9", add_special_tokens=False)["input_ids"]
        >>> all("\ufffd" not in clean_cut(tok, ids[:n]) for n in range(1, len(ids) + 1))
        True
    """
    row = list(row)
    text = tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    for k in range(1, min(max_drop, len(row) - 1) + 1):
        if not text.endswith("\ufffd"):
            break
        shorter = tokenizer.decode(row[:-k], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if shorter.count("\ufffd") < text.count("\ufffd"):
            text = shorter
    return text
