"""A model behind an OpenAI-compatible server, with the interface sections use from LanguageModel.

:class:`ServedModel` answers ``generate`` through ``/chat/completions`` (the server applies its own
chat template) or ``/completions`` (raw prompts), a bounded number of requests in flight, each
finished generation handed to ``on_batch`` at once so the runner's disk cache keeps it when a
later request fails. ``loglikelihood`` reads prompt log-probabilities from ``/completions`` with
``echo: true, logprobs: 1`` (vLLM, llama.cpp); in chat mode that needs the rendered chat text,
so a local tokenizer with the same template (``tokenizer: DIR``) must be given, else the section
gets a one-line error. There are no local weights: ``has_weights`` is False and sections that need
them (attribution) refuse with one line, so their gates fail.

Example:
    >>> lm = ServedModel.load(ServedSpec(base_url="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
    >>> lm.generate(["Hello"])[0][0]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ...config import GenerationSettings
from ...errors import AuditError, first_line
from ...io.untrusted import excerpt
from ..chat import as_turns, resolve_format
from ..interface import joint_split, likelihood_texts, sample_seed
from .client import Client, ServedBadValue, ServedError
from .spec import ServedSpec

log = logging.getLogger("audit")


class ServedUnsupported(AuditError):
    """This use needs something the served model cannot give (weights, prompt log-probabilities, a tokenizer).

    Not fatal: the section that asked records it as its error (its gates fail) and the run goes on.
    """


@dataclass
class ServedInfo:
    """Model identity in results.json: what the server reports, and where it is (never the key)."""

    spec: str
    path: str                   # the base URL, without credentials
    fingerprint: str            # hash of provider, base URL, server model id and API
    server_model: str           # the model id the server reports
    provider: str
    api: str                    # chat | completions
    base_url: str
    dtype: str = "served"
    device: str = "remote"
    parameters: int | None = None     # unknown behind an API
    architecture: str = "served"
    max_length: int | None = None     # the server's context length when it reports one (vLLM: max_model_len)
    chat_template: str | None = None  # "server" in chat mode
    prompt_format: str | None = None
    system_prompt: str | None = None
    fingerprint_covers: str = ("provider, base URL, the server-reported model id and the API; the weights behind "
                               "the server are not visible, so a redeploy under the same id looks the same")


class ServedModel:
    """An OpenAI-compatible endpoint as an audit model (generate, loglikelihood, info, fingerprint)."""

    has_weights = False     # attribution and fine-tuning need local weights
    model = None            # no torch module (TextAttack reads `wrapper.model.__class__`)

    def __init__(self, spec: ServedSpec, *, server_model: str, max_length: int | None = None, client: Client | None = None):
        self.spec_obj = spec
        self.spec = spec.path
        self.path = spec.base_url
        self.server_model = server_model
        self._max_length = max_length
        self.client = client or _client(spec)
        self.tokenizer = None
        self.chat = None   # a local ChatFormat, only for rendering likelihood text (generation uses the server's)
        if spec.tokenizer:
            self._load_tokenizer(spec.tokenizer)
        ident = json.dumps([spec.provider, spec.base_url, server_model, spec.api], sort_keys=True)
        self.fingerprint = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.fingerprint_covers = ServedInfo.fingerprint_covers
        self.stats = {"requests": 0, "generated": 0}
        self._alignment: dict[bool, str] = {}   # starts with the bos text? -> "aligned" | "unknown"

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: ServedSpec) -> "ServedModel":
        """Ask the server which models it serves (GET /models) and check ``spec.name`` is one of them."""
        client = _client(spec)
        listing = client.get_json("/models")
        models = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(models, list):
            raise ServedError(f"GET {spec.base_url}/models: the answer has no 'data' list of models")
        ids = [m.get("id") for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if spec.name is None:
            if len(ids) != 1:
                raise ServedError(f"{spec.base_url} serves {len(ids)} models ({', '.join(ids[:10])}); "
                                  f"name one with model.name or --model openai:URL#NAME")
            name = ids[0]
        elif spec.name in ids:
            name = spec.name
        else:
            raise ServedError(f"model.name: {spec.name!r} is not served at {spec.base_url}; it serves: {', '.join(ids[:10]) or 'nothing'}")
        entry = next(m for m in models if isinstance(m, dict) and m.get("id") == name)
        max_len = entry.get("max_model_len")   # vLLM reports its context length; others do not
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            # `true` is an int to Python (a 1-token context): refuse anything but a positive whole number.
            raise ServedError(f"GET {spec.base_url}/models: {name!r} has max_model_len {excerpt(max_len)}, "
                              f"not a positive whole number of tokens")
        return cls(spec, server_model=name, max_length=max_len, client=client)

    def _load_tokenizer(self, path: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise AuditError(f"model.tokenizer: cannot load a tokenizer from {path!r}: {first_line(e)}") from None
        if self.spec_obj.api == "chat":
            self.chat = resolve_format(self.tokenizer, "auto", self.spec_obj.system_prompt)

    # ---- identity ------------------------------------------------------------------------
    dtype = "served"
    device = "remote"

    @property
    def max_length(self) -> int | None:
        return self._max_length

    @property
    def prompt_format(self) -> str | None:
        """Chat mode: the server's template plus our system prompt shape what the model reads."""
        if self.spec_obj.api != "chat":
            return None
        return "server:" + hashlib.sha256((self.spec_obj.system_prompt or "").encode()).hexdigest()[:16]

    def info(self) -> ServedInfo:
        s = self.spec_obj
        return ServedInfo(spec=s.path, path=s.base_url, fingerprint=self.fingerprint, server_model=self.server_model,
                          provider=s.provider, api=s.api, base_url=s.base_url, max_length=self._max_length,
                          chat_template="server" if s.api == "chat" else None, prompt_format=self.prompt_format,
                          system_prompt=s.system_prompt)

    # ---- text ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ServedUnsupported(f"token ids of a served model need a local tokenizer: set model.tokenizer to a "
                                    f"directory with {self.server_model}'s tokenizer")
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def messages(self, prompt) -> list[dict[str, str]]:
        return as_turns(prompt, self.spec_obj.system_prompt)

    def render(self, prompt) -> str:
        """The text the model reads: raw prompt (completions api) or the locally rendered chat (needs ``tokenizer``)."""
        if self.spec_obj.api == "chat":
            if self.chat is None:
                raise ServedUnsupported(f"the server applies {self.server_model}'s chat template and does not show it; "
                                        f"rendering the chat text here needs model.tokenizer: a local tokenizer "
                                        f"directory with the same chat template (or api: completions for raw prompts)")
            return self.chat.render(self.tokenizer, prompt)
        if isinstance(prompt, str):
            return prompt
        if len(prompt) == 1:
            return prompt[0]["content"]
        raise ServedUnsupported(f"a prompt of {len(prompt)} role/content turns needs api: chat")

    # ---- generation ----------------------------------------------------------------------
    def generate(self, prompts: Sequence[Any], settings=None, *, seed: int = 0, progress: bool = False,
                 on_batch: Callable[[list[tuple[int, int, str]]], None] | None = None,
                 skip: Iterable[tuple[int, int]] = (), desc: str = "generate") -> list[list[str]]:
        """Same contract as :meth:`audit.models.local.LanguageModel.generate`; ``on_batch`` gets each finished request."""
        settings = settings or GenerationSettings()
        n = settings.num_samples
        out: list[list[str | None]] = [[None] * n for _ in prompts]
        done = set(skip)
        jobs: list[tuple[int, tuple[int, ...]]] = []
        for i in range(len(prompts)):
            todo = tuple(k for k in range(n) if (i, k) not in done)
            if not todo:
                continue
            if self.spec_obj.n_per_request and len(todo) == n and n > 1:
                jobs.append((i, todo))
            else:
                jobs.extend((i, (k,)) for k in todo)

        def ask(job):
            i, ks = job
            return self._complete(prompts[i], ks, settings, seed)

        def finished(job, texts):
            i, ks = job
            triples = [(i, k, t) for k, t in zip(ks, texts)]
            for _, k, t in triples:
                out[i][k] = t
            self.stats["generated"] += len(triples)
            if on_batch:
                on_batch(triples)

        self._pool(jobs, ask, finished, progress=progress, desc=desc)
        return out  # type: ignore[return-value]

    def _complete(self, prompt, ks: tuple[int, ...], s, seed: int) -> list[str]:
        body: dict[str, Any] = {"model": self.server_model, "max_tokens": s.max_new_tokens}
        if s.do_sample:
            body.update(temperature=s.temperature, top_p=s.top_p, seed=sample_seed(seed, prompt, ks[0]))
            if s.top_k:
                body["top_k"] = s.top_k   # not OpenAI's, but vLLM, llama.cpp and Ollama read it
        else:
            body.update(temperature=0.0, top_p=1.0)   # greedy
        if len(ks) > 1:
            body["n"] = len(ks)
        if s.stop:
            body["stop"] = list(s.stop)
        if self.spec_obj.api == "chat":
            body["messages"] = self.messages(prompt)
            path, parse = "/chat/completions", _chat_texts
        else:
            body["prompt"] = self.render(prompt)
            path, parse = "/completions", _completion_texts
        texts = self.client.post_json(path, body, parse=lambda obj: parse(obj, len(ks)))
        return [s.cut_at_stop(t) for t in texts]

    # ---- scoring -------------------------------------------------------------------------
    def loglikelihood(self, pairs: Sequence[tuple[Any, str]], *, batch_size: int = 16, progress: bool = False) -> list[tuple[float, int]]:
        """Sum of log p(continuation | context) and its token count, from the server's prompt log-probabilities.

        The same convention as the local model: context and continuation are sent as one text and
        every token that ends past the context (one straddling the boundary too) is scored.
        """
        rows = [self._likelihood_text(c, t) for c, t in pairs]
        for starts_with_bos in dict.fromkeys(self._starts_with_bos(text) for text, _ in rows):
            self._check_alignment(starts_with_bos)
        results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)

        def ask(j):
            text, ctx_len = rows[j]
            body = {"model": self.server_model, "prompt": text, "max_tokens": 1, "temperature": 0.0,
                    "echo": True, "logprobs": 1}
            if self.tokenizer is not None:
                n = self._continuation_tokens(text, ctx_len)
                parse = lambda obj: _last_tokens_logprob(obj, n, text)  # noqa: E731
            else:
                parse = lambda obj: _continuation_logprob(obj, text, ctx_len)  # noqa: E731
            return self.client.post_json("/completions", body, parse=parse)

        def finished(j, value):
            results[j] = value

        self._pool(list(range(len(rows))), ask, finished, progress=progress, desc="score")
        return results

    def _likelihood_text(self, ctx, cont: str) -> tuple[str, int]:
        ctx_text, cont = likelihood_texts(self.render(ctx), cont, chat=self.spec_obj.api == "chat")
        if not ctx_text:   # condition on the bos/eos token, as the local model does
            if self.tokenizer is None:
                raise ServedUnsupported("scoring text without a context needs the model's bos/eos token text: "
                                        "set model.tokenizer to a local tokenizer directory")
            ctx_text = self.tokenizer.bos_token or self.tokenizer.eos_token
        return ctx_text + cont, len(ctx_text)

    def _starts_with_bos(self, text: str) -> bool:
        bos = self.tokenizer.bos_token if self.tokenizer is not None else None
        return bool(bos) and text.startswith(bos)

    def _check_alignment(self, starts_with_bos: bool) -> None:
        """Refuse a server whose echoed prompt log-probabilities are off by one token.

        llama-cpp-python (0.3.x) reports, at prompt position i, log p(token_i) under the distribution
        that PREDICTS token i+1 unless the prompt starts with the model's BOS token (it strips that
        token and only then lines up): for a model without an added BOS (SmolLM2, Qwen) raw prompts
        get values that are each off by a position, and a perplexity from them is wrong by ~10 nats
        per token. The probe is one request per prompt shape (with/without the BOS text) on a
        counting sequence any language model predicts: a correct server's top-1 token at position i
        is mostly token i; a shifted one's is mostly token i+1.
        """
        if starts_with_bos in self._alignment:
            return
        text = (self.tokenizer.bos_token if starts_with_bos else "") + ", ".join(str(i) for i in range(1, 25))
        body = {"model": self.server_model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
        verdict = self.client.post_json("/completions", body, parse=_alignment_verdict)
        if verdict == "shifted":
            raise ServedUnsupported(
                f"{self.server_model} at {self.spec_obj.base_url}: the server's echoed prompt log-probabilities are shifted "
                f"by one token (llama-cpp-python does this for prompts not starting with the model's BOS token); "
                f"perplexity and likelihood pairs from it would be wrong, so they are not computed"
                + ("" if self.spec_obj.api == "chat" else " (api: chat with model.tokenizer may line up; vLLM is correct)"))
        if verdict == "unknown":
            log.warning("served: could not verify that %s's prompt log-probabilities line up with the prompt's tokens "
                        "(no top_logprobs in the echo); trusting them", self.server_model)
        self._alignment[starts_with_bos] = verdict

    def _continuation_tokens(self, text: str, ctx_len: int) -> int:
        """Tokens of ``text`` after its context, split as the local model splits (joint tokenization)."""
        whole = self.encode(text)
        return len(whole) - joint_split(whole, self.encode(text[:ctx_len]))

    # ---- concurrency -----------------------------------------------------------------------
    def _pool(self, jobs: list, ask: Callable, finished: Callable, *, progress: bool, desc: str) -> None:
        """Run ``ask(job)`` with at most ``concurrency`` in flight; ``finished`` runs in this thread.

        On the first request that fails for good no new request starts, the ones in flight are
        waited for (their results still reach ``finished``, so the cache keeps them), then the
        error is raised.
        """
        if not jobs:
            return
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=desc, unit="req", leave=False)
        error: BaseException | None = None
        pending = iter(jobs)
        inflight: dict = {}
        with ThreadPoolExecutor(max_workers=self.spec_obj.concurrency, thread_name_prefix="served") as ex:
            try:
                for job in pending:   # fill the window, then one new request per finished one
                    inflight[ex.submit(ask, job)] = job
                    if len(inflight) >= self.spec_obj.concurrency:
                        break
                while inflight:
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for f in done:
                        job = inflight.pop(f)
                        try:
                            value = f.result()
                        except BaseException as e:  # noqa: BLE001 - remembered, raised after the drain
                            if error is None:
                                error = e
                            continue
                        finished(job, value)
                        self.stats["requests"] += 1
                        if bar:
                            bar.update(1)
                        if error is None:   # after a failure for good, no new request starts
                            nxt = next(pending, None)
                            if nxt is not None:
                                inflight[ex.submit(ask, nxt)] = nxt
            except KeyboardInterrupt:
                for f in inflight:
                    f.cancel()
                raise
            finally:
                if bar:
                    bar.close()
        if error is not None:
            raise error


def _client(spec: ServedSpec) -> Client:
    return Client(spec.base_url, api_key=spec.api_key(), timeout=spec.timeout, max_attempts=spec.max_attempts,
                  backoff=spec.backoff, backoff_max=spec.backoff_max, max_response_bytes=int(spec.max_response_mb * (1 << 20)))


def _chat_texts(obj: Any, n: int) -> list[str]:
    choices = _choices(obj, n)
    texts = []
    for c in choices:
        msg = c.get("message")
        content = msg.get("content") if isinstance(msg, dict) else None
        if content is None:
            content = ""   # some servers send null content for an empty answer
        if not isinstance(content, str):
            raise ValueError("choices[].message.content is not text")
        texts.append(content)
    return texts


def _completion_texts(obj: Any, n: int) -> list[str]:
    texts = []
    for c in _choices(obj, n):
        if not isinstance(c.get("text"), str):
            raise ValueError("choices[].text is not text")
        texts.append(c["text"])
    return texts


def _choices(obj: Any, n: int) -> list[dict]:
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or len(choices) < n or not all(isinstance(c, dict) for c in choices):
        raise ValueError(f"expected {n} choice(s) in the answer")
    for j, c in enumerate(choices):
        if c.get("index") is not None:
            _count(c["index"], f"choices[{j}].index")
    # `index` orders choices when present (servers may return them out of order with n > 1).
    return sorted(choices, key=lambda c: c.get("index") or 0)[:n]


# A log-probability is <= 0; servers computing in low precision may round one a hair above 0.
LOGPROB_TOLERANCE = 1e-3


def _logprob(value: Any, where: str) -> float:
    """``value`` as a log-probability: finite and <= 0 (up to ``LOGPROB_TOLERANCE``, then 0), else ServedBadValue."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ServedBadValue(f"{where} is {excerpt(value)}, not a number")
    try:
        v = float(value)
    except OverflowError:   # an integer literal of hundreds of digits
        v = math.inf
    if not math.isfinite(v) or v > LOGPROB_TOLERANCE:
        raise ServedBadValue(f"{where} is {excerpt(value)}, not a log-probability (must be finite and <= 0)")
    return min(v, 0.0)


def _count(value: Any, where: str, *, most: int | None = None) -> int:
    """``value`` as a count or position: a whole number >= 0 (and <= ``most``), else ServedBadValue."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (most is not None and value > most):
        bound = f" between 0 and {most}" if most is not None else " >= 0"
        raise ServedBadValue(f"{where} is {excerpt(value)}, not a whole number{bound}")
    return value


def _logprobs(values: list, where: str) -> list[float | None]:
    """Every entry of an echoed ``token_logprobs`` list checked (None stays None: the first token has none)."""
    return [None if v is None else _logprob(v, f"{where}[{i}]") for i, v in enumerate(values)]


def _continuation_logprob(obj: Any, text: str, ctx_len: int) -> tuple[float, int]:
    """Sum the echoed prompt's token log-probabilities over the tokens that end after ``ctx_len``."""
    choice = _choices(obj, 1)[0]
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not all(isinstance(lp.get(k), list) for k in ("tokens", "token_logprobs", "text_offset")):
        raise _NoPromptLogprobs()
    tokens, offsets = lp["tokens"], lp["text_offset"]
    logprobs = _logprobs(lp["token_logprobs"], "choices[0].logprobs.token_logprobs")
    for i, off in enumerate(offsets):
        _count(off, f"choices[0].logprobs.text_offset[{i}]")
    total, count = 0.0, 0
    for i, (tok, off) in enumerate(zip(tokens, offsets)):
        if off >= len(text):
            break   # the generated token after the echoed prompt
        end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tok)
        if end <= ctx_len:
            continue
        value = logprobs[i]
        if value is None:
            raise _NoPromptLogprobs()
        total += value
        count += 1
    return total, count


def _last_tokens_logprob(obj: Any, n: int, text: str) -> tuple[float, int]:
    """Sum the log-probabilities of the ``n`` echoed prompt tokens before the generated ones.

    Counting from the end, not by text offsets: llama-cpp-python echoes special tokens (a chat
    template's ``<|im_start|>``) as empty or not at all, which shifts its offsets; the continuation
    (the assistant's words) is plain text at the end of the prompt.
    """
    choice = _choices(obj, 1)[0]
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list) or not isinstance(lp.get("tokens"), list):
        raise _NoPromptLogprobs()
    usage = obj.get("usage") if isinstance(obj, dict) else None
    generated = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if generated is None:
        raise ValueError("the answer has no usage.completion_tokens")
    logprobs = _logprobs(lp["token_logprobs"], "choices[0].logprobs.token_logprobs")
    end = len(logprobs) - _count(generated, "usage.completion_tokens", most=len(logprobs))
    values, toks = logprobs[end - n:end] if end >= n else [], lp["tokens"][end - n:end] if end >= n else []
    if n == 0:
        return 0.0, 0
    if len(values) != n or any(v is None for v in values):
        raise _NoPromptLogprobs()
    # Compared without whitespace: vLLM echoes each token decoded alone, which drops its leading space.
    joined, squeezed = "".join("".join(toks).split()), "".join(text.split())
    if not squeezed.endswith(joined):
        raise ServedUnsupported("the server tokenizes the text differently from model.tokenizer (is it the served model's?)")
    return float(sum(values)), n


def _alignment_verdict(obj: Any) -> str:
    """``aligned``, ``shifted`` or ``unknown``: whose position's top-1 token matches the echoed token.

    Example:
        >>> lp = {"tokens": ["1", ",", " 2", ",", " 3"], "token_logprobs": [None, -0.1, -0.2, -0.1, -0.3],
        ...       "top_logprobs": [None, {",": -0.1}, {" 2": -0.2}, {",": -0.1}, {" 3": -0.3}]}
        >>> _alignment_verdict({"choices": [{"logprobs": lp}]})
        'aligned'
    """
    lp = _choices(obj, 1)[0].get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise _NoPromptLogprobs()
    tokens, tops = lp["tokens"], lp.get("top_logprobs")
    if isinstance(lp.get("token_logprobs"), list):
        _logprobs(lp["token_logprobs"], "choices[0].logprobs.token_logprobs")
    if not isinstance(tops, list) or len(tops) != len(tokens):
        return "unknown"
    for i, top in enumerate(tops):
        if isinstance(top, dict):
            for tok, v in top.items():
                _logprob(v, f"choices[0].logprobs.top_logprobs[{i}][{excerpt(tok, limit=20)}]")
    top1 = [max(t, key=t.get) if isinstance(t, dict) and t else None for t in tops]
    aligned = sum(1 for i in range(len(tokens)) if top1[i] is not None and top1[i] == tokens[i])
    shifted = sum(1 for i in range(len(tokens) - 1) if top1[i] is not None and top1[i] == tokens[i + 1])
    if max(aligned, shifted) < len(tokens) // 4:   # the model cannot count, or tokens are not comparable
        return "unknown"
    return "shifted" if shifted > aligned else "aligned"


class _NoPromptLogprobs(ServedUnsupported):
    def __init__(self):
        super().__init__("the server returned no prompt log-probabilities (POST /completions with echo: true, "
                         "logprobs: 1); perplexity and likelihood pairs need a server that does (vLLM, llama.cpp)")
