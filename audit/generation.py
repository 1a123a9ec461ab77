"""The generation pass and its cache: how prompts become generations that are never decoded twice.

One home for what the runner, every section (through :class:`~audit.evaluators.base.Context`) and
the attack wrapper share: the cache of a model's generations (one JSONL file per weights
fingerprint, :func:`generation_cache`), the cache key of a generation (:func:`cached_generate`)
and the samples built from data records and their generations (:func:`generate_samples`).
A prompt generated once with the same settings, seed, dtype, device and prompt format is read
back, by whichever of them asks.

Example:
    >>> from audit.config import GenerationSettings
    >>> from audit.data import Record
    >>> from audit.models.local import LanguageModel
    >>> lm = LanguageModel.load("builtin:micro")
    >>> cache = generation_cache(lm, None, enabled=False)
    >>> samples, reused = generate_samples(lm, [Record("r1", "Hello")], GenerationSettings(max_new_tokens=4),
    ...                                    seed=0, cache=cache)
    >>> samples[0].id, len(samples[0].generations), reused
    ('r1', 1, 0)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from .io.cache import DiskCache, make_key
from .config import GenerationSettings
from .results import SampleRecord

log = logging.getLogger("audit")


def generation_cache(model, root: str | os.PathLike | None, *, enabled: bool = True) -> DiskCache:
    """The on-disk cache of ``model``'s generations (under ``root``; None: the user cache dir).

    Named by the weights fingerprint, so another model (other weights) never reads these outputs;
    what else changes an output is in each key (see :func:`cached_generate`).
    """
    return DiskCache(root, f"gen-{model.fingerprint}", enabled=enabled)


def cached_generate(model, prompts: Sequence[Any], settings: GenerationSettings, *, seed: int, cache: DiskCache,
                    progress: bool = False, desc: str = "generate") -> tuple[list[list[str]], int]:
    """Generate through ``cache``; returns (generations, number reused from the cache).

    ``generations[i][k]`` is sample k of prompt i. Finished batches are written as they come, so
    an interrupted run resumes where it stopped.
    """
    skey = settings.key()
    # The weights fingerprint names the cache; dtype and device change generations too (bf16 vs fp32).
    where = [str(getattr(model, "dtype", "")), str(getattr(getattr(model, "device", None), "type", ""))]
    if getattr(model, "prompt_format", None):  # the chat template + system prompt change what the model reads
        where.append(model.prompt_format)
    # A prompt whose content holds control-token text (a typed <|im_end|>) is read as plain text since
    # issue 23: its key says so, so a generation cached from the old, forged tokenization is not reused.
    tag = getattr(model, "encoding_tag", None)
    keys = [[make_key(p, skey, seed, k, *where, *_tagged(tag, p)) for k in range(settings.num_samples)] for p in prompts]
    skip = {(i, k) for i, row in enumerate(keys) for k, key in enumerate(row) if isinstance(cache.get(key), str)}
    # A cache line whose value is not text (a number, null, a list: a hand edit, another tool's file)
    # is no generation: regenerate it, never hand it to the evaluators (they failed with a TypeError).
    bad = sum(1 for row in keys for key in row if key in cache and not isinstance(cache.get(key), str))
    if bad:
        log.warning("generation cache %s: %d cached value%s not text (number, null or list); regenerating %s",
                    cache.path, bad, "s are" if bad > 1 else " is", "them" if bad > 1 else "it")

    def persist(triples):
        cache.put_many((keys[i][k], text) for i, k, text in triples)

    out = model.generate(prompts, settings, seed=seed, progress=progress, on_batch=persist, skip=skip, desc=desc)
    for i, k in skip:
        out[i][k] = cache.get(keys[i][k])
    return out, len(skip)


def _tagged(tag, prompt) -> tuple[str, ...]:
    t = tag(prompt) if callable(tag) else None
    return (t,) if t else ()


def generate_samples(model, records: Sequence[Any], settings: GenerationSettings, *, seed: int, cache: DiskCache,
                     progress: bool = False) -> tuple[list[SampleRecord], int]:
    """The main prompt set as samples: each data record with its generations (through ``cache``).

    Returns (samples, number of generations reused from the cache).
    """
    gens, reused = cached_generate(model, [r.model_input for r in records], settings, seed=seed, cache=cache,
                                   progress=progress)
    samples = [SampleRecord(id=r.id, prompt=r.prompt, reference=r.reference, generations=g, metadata=dict(r.metadata),
                            messages=r.messages) for r, g in zip(records, gens)]
    return samples, reused
