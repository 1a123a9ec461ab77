"""Training data: prompt/target records (loss on target tokens only) or plain text, tokenised once,
split into train/validation, batched by length with dynamic padding.

Prompt/target records become ``prompt_ids + target_ids (+ eos)`` with label -100 on the prompt,
so only the target is learned. A record that names the clean prompt it was perturbed from
(``original_prompt``: adversarial records) also carries that pairing: one continuation (``pair_target``,
default the target) after the perturbed and after the clean prompt, which the paired losses
(``consistency``) compare. Plain text (a
``.txt`` file, or records with a ``text`` column) is cut into ``max_length`` blocks and every
token is learned. Batches are padded to their own longest row (never to ``max_length``), and
:class:`LengthGroupedBatches` puts rows of similar length together while keeping the order random,
so a batch rarely pays for padding.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data import DataError, read_rows
from ..io.input_files import read_text
from ..models.chat import ChatTemplateError, encode_plain
from .losses.base import IGNORE

log = logging.getLogger("audit")


@dataclass
class TextPair:
    """One training record before tokenisation: a prompt (not learned) and a target (learned)."""

    prompt: str
    target: str
    source: str = "data"          # data | adversarial | augment
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Example:
    """A tokenised training example."""

    input_ids: list[int]
    labels: list[int]             # IGNORE where not learned
    # Paired losses: one continuation after this example's (perturbed) prompt and after the clean
    # prompt it was perturbed from: ((ids, labels), (ids, labels)), labels IGNORE on the prompts.
    pair: tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def read_pairs(path: str | Path, *, fmt: str = "auto", prompt_field: str = "prompt", target_field: str = "reference",
               text_field: str = "text", split: str | None = None,
               pair_field: str = "original_prompt") -> tuple[list[TextPair], str]:
    """Read training records; returns ``(pairs, format)`` where plain text has an empty prompt.

    A prompt/target record with a string ``pair_field`` (the clean prompt an adversarial prompt was
    perturbed from, as ``audit harden`` writes it) keeps it in ``meta["original_prompt"]``, and a
    string ``pair_target`` (the continuation the paired losses compare on) in ``meta["pair_target"]``.

    Example:
        >>> import tempfile; p = tempfile.mktemp(suffix=".jsonl")
        >>> _ = open(p, "w").write('{"prompt": "Q:", "reference": " A"}\\n')
        >>> read_pairs(p)[0][0].target, read_pairs(p)[1]
        (' A', 'prompt_target')
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        from ..data import MAX_JSON_ARRAY_BYTES
        if fmt == "prompt_target":
            raise DataError(f"{path}: a .txt file holds plain text; use format: text or auto")
        # Regular file, bounded, UTF-8 (one-line errors naming the file).
        text = read_text(path, what="data file", error=DataError, max_bytes=MAX_JSON_ARRAY_BYTES)
        return [TextPair("", text, meta={"line": 1})], "text"
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no records")
    if fmt == "auto":
        first = rows[0][1]
        fmt = "prompt_target" if target_field in first else "text" if text_field in first else ""
        if not fmt:
            raise DataError(f"{path}:{rows[0][0]}: has neither {target_field!r} (prompt/target) nor {text_field!r} (text); "
                            f"set prompt_field/target_field or text_field")
    pairs = []
    for n, row in rows:
        if split is not None and str(row.get("split")) != split:
            continue
        if fmt == "text":
            text = row.get(text_field)
            if not isinstance(text, str):
                raise DataError(f"{path}:{n}: field {text_field!r} must be a string")
            pairs.append(TextPair("", text, meta={"line": n}))
        else:
            prompt, target = row.get(prompt_field), row.get(target_field)
            if not isinstance(prompt, str):
                raise DataError(f"{path}:{n}: field {prompt_field!r} must be a string")
            if not isinstance(target, str) or not target:
                raise DataError(f"{path}:{n}: field {target_field!r} must be a non-empty string")
            meta = {"line": n, "id": row.get("id")}
            orig = row.get(pair_field) if pair_field else None
            if isinstance(orig, str) and orig and orig != prompt:
                meta["original_prompt"] = orig
            if isinstance(row.get("pair_target"), str) and row["pair_target"].strip():
                meta["pair_target"] = row["pair_target"]
            pairs.append(TextPair(prompt, target, source=str(row.get("source") or "data"), meta=meta))
    return pairs, fmt


def read_adversarial(path: str | Path, *, target: str = "target") -> list[TextPair]:
    """Successful attacks from a robustness audit's ``adversarial.jsonl`` as (perturbed prompt, target).

    ``target: target`` trains the model to answer the perturbed prompt as it answered the clean
    one (its own clean output); ``target: reference`` uses the dataset reference when present.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: adversarial file not found (written by `audit run` when a suite has a robustness section)")
    pairs = []
    for n, row in read_rows(path):
        prompt = row.get("prompt")
        tgt = row.get(target) or row.get("target") or row.get("reference")
        if not isinstance(prompt, str) or not isinstance(tgt, str):
            raise DataError(f"{path}:{n}: an adversarial record needs string 'prompt' and 'target'")
        if not tgt.strip():
            continue  # an empty clean output teaches nothing but "stop"
        pairs.append(TextPair(prompt, tgt, source="adversarial",
                              meta={"id": row.get("id"), "original_prompt": row.get("original_prompt"), "recipe": row.get("recipe"),
                                    # The model's clean output: what the paired losses compare both prompts on.
                                    "pair_target": row.get("target") or row.get("clean_output")}))
    return pairs


def chat_turns(chat, tokenizer, prompt: str, target: str) -> tuple[str, str]:
    """(prompt text, assistant text) of a user turn and its answer rendered through a chat template.

    The prompt text is exactly what the model adapter renders for generation (ending with the
    assistant's generation prompt); the assistant text is what the template renders after it for
    the answer: the answer and the template's end-of-turn markup (ChatML: ``<|im_end|>\n``), so the
    model learns to end its turn as its users' tooling expects. A template whose full conversation
    does not start with its own generation prompt cannot be split so; it raises.

    Example:
        >>> from audit.models.chat import ChatFormat
        >>> fmt = ChatFormat("{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}"
        ...                  "{% if add_generation_prompt %}<assistant>{% endif %}", "inline")
        >>> chat_turns(fmt, tok, "Hi", " Hello")  # doctest: +SKIP
        ('<user>Hi</s><assistant>', 'Hello</s>')
    """
    prompt_text, _, answer, _ = _chat_parts(chat, tokenizer, prompt, target)
    return prompt_text, answer


def _chat_parts(chat, tokenizer, prompt: str, target: str):
    """:func:`chat_turns`'s texts, each with the character spans of the turns' content in it."""
    prompt_text, p_spans = chat.render_content(tokenizer, prompt)
    turns = chat.messages(prompt) + [{"role": "assistant", "content": target.strip()}]
    full, spans = chat.render_turns_with_spans(tokenizer, turns, add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ChatTemplateError(f"chat template {chat.source}: the conversation with the answer does not start with the "
                                f"generation prompt, so the answer's tokens cannot be told apart; set use_chat_template: false")
    n = len(prompt_text)
    a_spans = [(max(a, n) - n, b - n) for a, b in spans if b > n]
    return prompt_text, p_spans, full[n:], a_spans


def chat_example_ids(chat, tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of :func:`chat_turns`'s (prompt, answer) texts, the turns' content as plain text.

    The prompt's ids are exactly generation's (:meth:`audit.models.local.LanguageModel.encode_prompt`):
    a ``<|im_end|>`` typed by a user, or in an answer of the training data, is its characters, not a
    control token; only the template's own markers are.
    """
    prompt_text, p_spans, answer, a_spans = _chat_parts(chat, tokenizer, prompt, target)
    return encode_plain(tokenizer, prompt_text, p_spans), encode_plain(tokenizer, answer, a_spans)


def tokenize_pairs(pairs: Sequence[TextPair], tokenizer, *, max_length: int, add_eos: bool = True,
                   chat=None) -> list[Example]:
    """Tokenise pairs; plain-text pairs (empty prompt) are cut into ``max_length`` blocks.

    A prompt/target pair longer than ``max_length`` loses prompt tokens from the left first (the
    end of the prompt conditions the target most), then target tokens from the right.

    With ``chat`` (a :class:`audit.models.chat.ChatFormat`) a prompt/target pair is a user turn and the
    assistant's answer (:func:`chat_turns`): the prompt is tokenised exactly as generation does,
    the label covers the answer and the end-of-turn markup, and no eos is added (the template ends
    the turn). Plain text is never templated.

    Example:
        >>> from audit.models.builtin import train_tokenizer
        >>> tok = train_tokenizer(["hello world"] * 5, vocab_size=280)
        >>> ex = tokenize_pairs([TextPair("hello", " world")], tok, max_length=16)[0]
        >>> ex.labels[0]
        -100
    """
    eos = tokenizer.eos_token_id
    out: list[Example] = []

    def prompt_ids(ids: list[int], n_target: int) -> list[int]:
        ids = ids[-(max_length - n_target):] if ids else []
        if not ids:  # nothing to condition on: the bos/eos token starts the sequence
            ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos]
        return ids

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def continuation(prompt: str, target: str) -> tuple[list[int], list[int]]:
        """(prompt ids, learned ids) of one prompt/target pair, templated or not."""
        if chat is not None:
            p_ids, a_ids = chat_example_ids(chat, tokenizer, prompt, target)
            return p_ids, a_ids[:max_length - 1]
        ids = encode(target) + ([eos] if add_eos and eos is not None else [])
        return encode(prompt), ids[:max_length - 1]

    for p in pairs:
        if not p.prompt:
            t_ids = encode(p.target)
            ids = t_ids + ([eos] if add_eos and eos is not None else [])
            for start in range(0, len(ids), max_length):
                block = ids[start:start + max_length]
                if len(block) >= 2:
                    out.append(Example(block, list(block)))
            continue
        full_p_ids, t_ids = continuation(p.prompt, p.target)
        p_ids = prompt_ids(full_p_ids, len(t_ids))
        pair = None
        orig = p.meta.get("original_prompt")
        if isinstance(orig, str) and orig and orig != p.prompt:
            # One continuation after both prompts: position k of both is the same token.
            c_full, c_ids = full_p_ids, t_ids
            if p.meta.get("pair_target") and p.meta["pair_target"] != p.target:
                c_full, c_ids = continuation(p.prompt, p.meta["pair_target"])
            o_full = continuation(orig, p.meta.get("pair_target") or p.target)[0]
            pp_ids, o_ids = prompt_ids(c_full, len(c_ids)), prompt_ids(o_full, len(c_ids))
            pair = ((pp_ids + c_ids, [IGNORE] * len(pp_ids) + c_ids), (o_ids + c_ids, [IGNORE] * len(o_ids) + c_ids))
        out.append(Example(p_ids + t_ids, [IGNORE] * len(p_ids) + t_ids, pair=pair))
    return out


def split_train_val(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded random hold-out (at least one validation item when ``val_fraction > 0``)."""
    if val_fraction <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(items) * val_fraction)))
    val_idx = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in val_idx], [items[i] for i in sorted(val_idx)]


def _pad(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r_ids, r_labels) in enumerate(rows):
        n = len(r_ids)
        ids[i, :n] = torch.tensor(r_ids)
        labels[i, :n] = torch.tensor(r_labels)
        mask[i, :n] = 1
    return ids, mask, labels


def collate(examples: Sequence[Example], pad_id: int, *, pairs: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch (dynamic padding); padding gets label -100.

    With ``pairs``, the paired sequences of the B' examples that have one are padded too: the
    continuation after the perturbed prompt (``pair_input_ids`` / ``pair_attention_mask`` /
    ``pair_labels``) and after the clean prompt (``orig_input_ids`` / ``orig_attention_mask`` /
    ``orig_labels``); B' = 0 when no example of the batch is paired.

    Example:
        >>> b = collate([Example([1, 2, 3], [-100, 2, 3]), Example([4, 5], [-100, 5])], pad_id=0)
        >>> b["input_ids"].tolist(), b["labels"][1].tolist()
        ([[1, 2, 3], [4, 5, 0]], [-100, 5, -100])
        >>> pair = (([4, 5], [-100, 5]), ([6, 7, 5], [-100, -100, 5]))
        >>> b = collate([Example([1, 2], [-100, 2]), Example([4, 5], [-100, 5], pair=pair)], 0, pairs=True)
        >>> b["pair_input_ids"].tolist(), b["orig_input_ids"].tolist()
        ([[4, 5]], [[6, 7, 5]])
    """
    ids, mask, labels = _pad([(e.input_ids, e.labels) for e in examples], pad_id)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if pairs:
        paired = [e.pair for e in examples if e.pair is not None]
        for side, prefix in ((0, "pair"), (1, "orig")):
            if paired:
                ids, mask, labels = _pad([p[side] for p in paired], pad_id)
            else:
                ids = mask = labels = torch.zeros((0, 1), dtype=torch.long)
            batch.update({f"{prefix}_input_ids": ids, f"{prefix}_attention_mask": mask, f"{prefix}_labels": labels})
    return batch


class LengthGroupedBatches:
    """Deterministic per-epoch batches of similar-length examples, sharded across processes.

    Each epoch: shuffle (seeded by ``seed + epoch``), cut into mega-batches of ``group`` batches,
    sort each mega-batch by length, cut into batches, shuffle the batches. Process ``rank`` takes
    every ``world``-th batch; trailing batches that not every process would get are dropped so all
    processes take the same number of steps (a DDP all-reduce needs every rank).

    Example:
        >>> lb = LengthGroupedBatches([3, 1, 2, 9, 8, 7], batch_size=2, seed=0)
        >>> sorted(len(b) for b in lb.batches(0))
        [2, 2, 2]
    """

    def __init__(self, lengths: Sequence[int], *, batch_size: int, seed: int, grouped: bool = True, group: int = 50,
                 rank: int = 0, world: int = 1):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.grouped = grouped
        self.group = group
        self.rank = rank
        self.world = world

    def all_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.grouped:
            mega = self.batch_size * self.group
            order = [i for s in range(0, len(order), mega)
                     for i in sorted(order[s:s + mega], key=lambda j: -self.lengths[j])]
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.grouped:
            rng.shuffle(batches)
        return batches

    def batches(self, epoch: int) -> list[list[int]]:
        every = self.all_batches(epoch)
        usable = len(every) - len(every) % self.world
        return every[self.rank:usable:self.world]

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        return n // self.world


def write_pairs_jsonl(pairs: Sequence[TextPair], path: str | Path) -> Path:
    """Write pairs as prompt/target JSONL (what harden trains on, kept for inspection)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({"prompt": p.prompt, "target": p.target, "source": p.source,
                                **{k: v for k, v in p.meta.items() if v is not None and k != "line"}},
                               ensure_ascii=False) + "\n")
    return path
