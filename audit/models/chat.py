"""Chat templates: how a prompt (the user's words, or a list of role/content turns) becomes model text.

Instruct models are used through their chat template, so they are audited through it too. The
model adapter owns a :class:`ChatFormat` and renders every prompt itself; evaluators keep passing
the user's words, and perturbations (robustness, consistency) change only those words, never
template tokens or the system prompt. Without a template (base models) a prompt is used as-is.

Example:
    >>> fmt = ChatFormat(template="{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    ...                  "{% if add_generation_prompt %}<assistant>{% endif %}", source="inline")
    >>> fmt.render_text(None, "Hi")  # doctest: +SKIP
    '<user>Hi<assistant>'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from ..errors import AuditError, first_line
from .template_sandbox import TemplateBudgetError, render_template

ROLES = ("system", "user", "assistant")
Messages = Sequence[Mapping[str, str]]
Prompt = Union[str, Messages]
"""What the model adapter accepts per prompt: the user's text, or role/content turns ending with a user turn."""

# Stand-ins for the user's words while locating them in a rendered template (no template
# transforms these; control characters keep them out of any real prompt).
_SENTINEL = "\x02user-turn-{}\x03"


class ChatTemplateError(AuditError):
    """A chat template is missing, unreadable, or fails to render; or a prompt cannot be rendered."""


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Validate role/content turns (``where`` names the file and line in errors); returns plain dicts.

    Example:
        >>> check_messages([{"role": "user", "content": "Hi"}], "x.jsonl:1")
        [{'role': 'user', 'content': 'Hi'}]
    """
    if not isinstance(messages, list) or not messages:
        raise ChatTemplateError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} turns")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ChatTemplateError(f"{where}: messages[{i}] must be an object with string 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ChatTemplateError(f"{where}: messages[{i}]: unknown role {m['role']!r}; valid: {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user":
        raise ChatTemplateError(f"{where}: messages must end with a user turn (the model answers it), got {out[-1]['role']!r}")
    return out


def as_turns(prompt: Prompt, system: str | None = None) -> list[dict[str, str]]:
    """The prompt as role/content turns (a string is one user turn), after ``system`` unless it has its own.

    Example:
        >>> as_turns("Hi", "Be brief.")
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    """
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system and not any(m["role"] == "system" for m in turns):
        turns.insert(0, {"role": "system", "content": system})
    return turns


@dataclass(frozen=True)
class ChatFormat:
    """A resolved chat template and system prompt; renders prompts through the tokenizer's Jinja engine."""

    template: str            # Jinja source
    source: str              # "tokenizer" or the template file's path (recorded in results)
    system_prompt: str | None = None
    origin: str | None = None   # where the template came from, for messages (default: ``source``)

    @property
    def where(self) -> str:
        return self.origin or self.source

    def messages(self, prompt: Prompt, system: str | None = None) -> list[dict[str, str]]:
        """The turns to render: the prompt as a user turn (or its turns), after the system prompt."""
        return as_turns(prompt, self.system_prompt if system is None else system)

    def render_messages(self, tokenizer, turns: Messages, *, add_generation_prompt: bool = True) -> str:
        """The template rendered as ``tokenizer.apply_chat_template(turns, tokenize=False)`` renders it,
        within the time and size budget of :mod:`audit.models.template_sandbox`."""
        variables = {**getattr(tokenizer, "special_tokens_map", {}), "messages": [dict(m) for m in turns],
                     "tools": None, "documents": None, "add_generation_prompt": add_generation_prompt}
        try:
            text = render_template(self.template, **variables)
        except TemplateBudgetError as e:
            raise ChatTemplateError(f"chat template {self.where} stopped: {first_line(e)}") from None
        except Exception as e:  # jinja2 TemplateError, or the template's own raise_exception(...)
            raise ChatTemplateError(f"chat template {self.where} failed to render: {type(e).__name__}: {first_line(e)}") from None
        return text

    def render(self, tokenizer, prompt: Prompt, *, system: str | None = None) -> str:
        """The model text for ``prompt``, ending with the assistant's generation prompt."""
        return self.render_messages(tokenizer, self.messages(prompt, system))

    def render_with_spans(self, tokenizer, prompt: Prompt, *, system: str | None = None) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and the (start, end) character spans of every user turn's words in it.

        The template is rendered once with sentinels in place of the user's words, which tells
        where each turn's words go; the spans are exact when inserting the words there gives
        the real rendering. A template that rewrites the words (e.g. strips them) falls back to
        searching each turn's stripped words in order.
        """
        return self.render_turns_with_spans(tokenizer, self.messages(prompt, system), roles=("user",))

    def render_turns_with_spans(self, tokenizer, turns: Messages, *, add_generation_prompt: bool = True,
                                roles: Sequence[str] = ROLES) -> tuple[str, list[tuple[int, int]]]:
        """``turns`` rendered, and the (start, end) character spans of the content of every turn whose role
        is in ``roles`` (default: every turn's content, the text that came from users and data rather
        than from the template). Spans are found as :meth:`render_with_spans` finds the user's words."""
        turns = [dict(m) for m in turns]
        text = self.render_messages(tokenizer, turns, add_generation_prompt=add_generation_prompt)
        chosen = [i for i, m in enumerate(turns) if m["role"] in roles]
        marked = [dict(m, content=_SENTINEL.format(i)) if i in chosen else m for i, m in enumerate(turns)]
        skeleton = self.render_messages(tokenizer, marked, add_generation_prompt=add_generation_prompt)
        spans: list[tuple[int, int]] = []
        rebuilt, pos = [], 0
        for i in chosen:
            mark = _SENTINEL.format(i)
            at = skeleton.find(mark, pos)
            if at < 0:
                break
            rebuilt.append(skeleton[pos:at])
            start = sum(len(s) for s in rebuilt)
            rebuilt.append(turns[i]["content"])
            spans.append((start, start + len(turns[i]["content"])))
            pos = at + len(mark)
        rebuilt.append(skeleton[pos:])
        if len(spans) == len(chosen) and "".join(rebuilt) == text:
            return text, spans
        spans, pos = [], 0
        for i in chosen:
            words = turns[i]["content"].strip()
            at = text.find(words, pos) if words else -1
            if at >= 0:
                spans.append((at, at + len(words)))
                pos = at + len(words)
        return text, spans

    def render_content(self, tokenizer, prompt: Prompt, *, system: str | None = None) -> tuple[str, list[tuple[int, int]]]:
        """:meth:`render` and the character spans of every turn's content in it (for :func:`encode_plain`)."""
        return self.render_turns_with_spans(tokenizer, self.messages(prompt, system))

    def identity(self, tokenizer) -> str:
        """Short hash of what the model sees around a prompt: template, system prompt, a rendered probe."""
        probe = self.render(tokenizer, "probe")
        h = hashlib.sha256("\x00".join([self.template, self.system_prompt or "", probe]).encode())
        return h.hexdigest()[:16]


def control_strings(tokenizer) -> list[str]:
    """The texts a tokenizer turns into control tokens on sight: its special tokens (ChatML's
    ``<|im_start|>``, ``<|im_end|>``, eos, ...), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(t, "special", False):
            found.add(str(t))
    return sorted((s for s in found if s), key=len, reverse=True)


def forged_spans(text: str, spans: Sequence[tuple[int, int]], controls: Sequence[str]) -> list[tuple[int, int]]:
    """The content spans that an occurrence of a control string in ``text`` overlaps (the content
    holds one, or ends or starts part of one that the template's text completes)."""
    hit: set[tuple[int, int]] = set()
    for c in controls if spans else ():
        at = text.find(c)
        while at >= 0:
            hit.update((a, b) for a, b in spans if a < at + len(c) and at < b)
            at = text.find(c, at + 1)
    return sorted(hit)


def forged_controls(text: str, spans: Sequence[tuple[int, int]], controls: Sequence[str]) -> bool:
    """Whether any content span of ``text`` holds (part of) a control string: see :func:`forged_spans`."""
    return bool(forged_spans(text, spans, controls))


def encode_plain(tokenizer, text: str, spans: Sequence[tuple[int, int]], *, offsets: bool = False):
    """Token ids of rendered ``text`` in which the content ``spans`` (users' and data's words) are plain text.

    Only the template's own markers become control tokens: a user who types ``<|im_end|>`` gets the
    characters ``<``, ``|``, ``im``, ... (``split_special_tokens``), never a forged end of turn.
    When no span holds a control string the ids are exactly ``tokenizer(text)``'s; otherwise the text
    is encoded in pieces (each span that holds one with ``split_special_tokens=True``, the text around
    them as usual) and the ids concatenated. With ``offsets`` returns (ids, character offsets into ``text``) (fast
    tokenizers only, as ``return_offsets_mapping``).

    Example:
        >>> encode_plain(tok, "<u>a<|im_end|></u>", [(3, 14)])  # doctest: +SKIP
        [60, 85, 62, 64, 60, 124, ...]   # no <|im_end|> id
    """
    spans = forged_spans(text, sorted((int(a), int(b)) for a, b in spans if b > a), control_strings(tokenizer))
    if not spans:
        if not offsets:
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
    pieces, pos = [], 0
    for a, b in spans:
        a = max(a, pos)
        if a > pos:
            pieces.append((pos, a, False))
        if b > a:
            pieces.append((a, b, True))
        pos = max(pos, b)
    if pos < len(text):
        pieces.append((pos, len(text), False))
    ids: list[int] = []
    offs: list[tuple[int, int]] = []
    for a, b, plain in pieces:
        kw = {"split_special_tokens": True} if plain else {}
        if offsets:
            enc = tokenizer(text[a:b], add_special_tokens=False, return_offsets_mapping=True, **kw)
            offs += [(a + s, a + e) for s, e in enc["offset_mapping"]]
        else:
            enc = tokenizer(text[a:b], add_special_tokens=False, **kw)
        ids += enc["input_ids"]
    return (ids, offs) if offsets else ids


def resolve_format(tokenizer, option: str, system_prompt: str | None) -> ChatFormat | None:
    """The chat format a model spec asks for: ``auto``, ``none`` or a template file path.

    ``auto`` uses the tokenizer's own template when it has one. The template is test-rendered
    here (with the system prompt), so a broken template fails at load time with one line.
    """
    if option == "none":
        if system_prompt:
            raise ChatTemplateError("model.system_prompt needs a chat template, but chat_template is none")
        return None
    if option == "auto":
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates: the default one is what users chat with
            template = template.get("default")
        if not template:
            if system_prompt:
                raise ChatTemplateError("model.system_prompt needs a chat template, but the tokenizer has none "
                                        "(set model.chat_template to a template file)")
            return None
        fmt = ChatFormat(template=template, source="tokenizer", system_prompt=system_prompt, origin=_tokenizer_origin(tokenizer))
    else:
        path = Path(option).expanduser()
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ChatTemplateError(f"{path}: cannot read chat template ({first_line(e)})") from None
        if not template.strip():
            raise ChatTemplateError(f"{path}: chat template file is empty")
        fmt = ChatFormat(template=template, source=str(path), system_prompt=system_prompt)
    probe = fmt.render(tokenizer, "probe")
    if "probe" not in probe:
        raise ChatTemplateError(f"chat template {fmt.where} drops the user's words (a probe message did not appear in its output)")
    return fmt


def _tokenizer_origin(tokenizer) -> str:
    """Where a tokenizer's own template was read from: a GGUF file's ``tokenizer.chat_template`` (for a
    converted GGUF, whose cache directory records its source) or the model's tokenizer config."""
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    d = Path(name) if name else None
    if d is not None and (d / "gguf_source.json").is_file():
        try:
            import json

            gguf = json.loads((d / "gguf_source.json").read_text(encoding="utf-8")).get("file")
        except (OSError, ValueError, AttributeError):
            gguf = None
        if gguf:
            return f"tokenizer.chat_template of GGUF file {gguf} (converted into {d})"
    if d is not None and d.is_dir():
        for f in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
            if (d / f).is_file():
                return str(d / f)
    return f"the tokenizer config of {name or 'the model'}"
