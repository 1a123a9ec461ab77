"""A TextAttack ``ModelWrapper`` over :class:`audit.models.local.LanguageModel`: batched and cached generation.

TextAttack calls its model wrapper with lists of perturbed prompts and caches outputs only per
attacked example (its goal function clears its LRU after every example). For a generation model
each query is a whole decoding loop, so this wrapper

- generates every uncached prompt of a call in one ``LanguageModel.generate`` pass (batched by
  ``settings.batch_size``, KV-cached, sorted by length and left-padded: the adapter hands the
  model a prepared padding mask, so padded batches cost no more per row than equal-length ones,
  and full batches are ~3x faster on CPU than batching only prompts of equal token length);
- when attacks run in lockstep (:func:`audit.attacks.attack_lockstep`), answers the requests of
  all attacks of a search step in one such pass; and
- keeps a run-wide cache (prompt -> output): the clean prompt queried again by every recipe, the
  same candidate reached by two search paths or two examples, is never generated twice; an
  optional :class:`~audit.io.cache.DiskCache` (the run's generation cache, shared with the other
  sections) makes reruns free as well.

Generation is batch-independent (greedy is per-row; sampling is seeded per prompt), so the outputs
are the same whatever the batching and caching: only the time changes.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ..config import GenerationSettings
from ..generation import cached_generate
from .lockstep import request
from .offline import import_textattack

textattack = import_textattack()


class GenerationModelWrapper(textattack.models.wrappers.ModelWrapper):
    """Wrap a :class:`~audit.models.local.LanguageModel` so TextAttack can query it: prompts in, continuations out.

    Args:
        lm: the model adapter.
        settings: decoding settings. ``num_samples`` is forced to 1 (one output per query); when
            sampling, that is sample 0 of the prompt, the same one the main pass drew.
        seed: the run seed (sampling is seeded per prompt, so outputs stay reproducible).
        cache: keep a run-wide prompt -> output cache.
        batch_size: override ``settings.batch_size`` (1 = one prompt per forward pass).
        disk_cache: also read and persist outputs in this on-disk cache.

    Example:
        >>> from audit.models.local import LanguageModel
        >>> w = GenerationModelWrapper(LanguageModel.load("builtin:micro"), GenerationSettings(max_new_tokens=4))
        >>> a = w(["Hello there", "Hello there"]); w.stats["generated"]
        1
    """

    def __init__(self, lm, settings: GenerationSettings | None = None, *, seed: int = 0, cache: bool = True,
                 batch_size: int | None = None, disk_cache=None):
        settings = settings or GenerationSettings()
        changes = {"num_samples": 1}
        if batch_size is not None:
            changes["batch_size"] = batch_size
        self.lm = lm
        # TextAttack's validators read `model_wrapper.model.__class__`.
        self.model = lm.model
        self.settings = dataclasses.replace(settings, **changes)
        self.seed = seed
        self.use_cache = cache
        self.disk_cache = disk_cache
        self._cache: dict[str, str] = {}
        # queries: prompts asked for; generated: prompts actually decoded; cache_hits: the others
        # (answered by this wrapper's cache or the disk cache); calls: __call__ count;
        # batches: model passes asked for (fewer than calls when attacks run in lockstep).
        self.stats = {"calls": 0, "queries": 0, "batches": 0, "generated": 0, "cache_hits": 0}

    def __call__(self, text_input_list: Sequence[str], **kwargs) -> list[str]:
        prompts = [t if isinstance(t, str) else " ".join(t) for t in text_input_list]
        self.stats["calls"] += 1
        self.stats["queries"] += len(prompts)
        # Attacks run by `run_lockstep` park here until every attack has asked; then one call to
        # `_answer` serves them all (see audit.attacks.lockstep).
        return request(self._answer, prompts)

    def _answer(self, prompts: list[str]) -> list[str]:
        self.stats["batches"] += 1
        if not self.use_cache:
            return self._generate(prompts)
        todo = list(dict.fromkeys(p for p in prompts if p not in self._cache))  # unique, in order
        self.stats["cache_hits"] += len(prompts) - len(todo)
        if todo:
            self._cache.update(zip(todo, self._generate(todo)))
        return [self._cache[p] for p in prompts]

    def _generate(self, prompts: list[str]) -> list[str]:
        if self.disk_cache is not None:
            gens, reused = cached_generate(self.lm, prompts, self.settings, seed=self.seed, cache=self.disk_cache)
            self.stats["generated"] += len(prompts) - reused
            self.stats["cache_hits"] += reused
        else:
            gens = self.lm.generate(prompts, self.settings, seed=self.seed)
            self.stats["generated"] += len(prompts)
        return [g[0] for g in gens]

    def prime(self, prompts: Sequence[str], outputs: Sequence[str]) -> None:
        """Seed the cache with outputs already generated under the same settings and seed."""
        if self.use_cache:
            self._cache.update(zip(prompts, outputs))

    def _tokenize(self, inputs):
        tok = self.lm.tokenizer
        return [tok.convert_ids_to_tokens(tok(x, add_special_tokens=False)["input_ids"]) for x in inputs]
