"""Data-level adversarial augmentation: perturbed copies of training prompts (TextAttack's
``Augmenter``, Morris et al. 2020, "TextAttack: A Framework for Adversarial Attacks, Data
Augmentation, and Adversarial Training in NLP", EMNLP demos) and adversarial prompts written by a
robustness audit (``adversarial.jsonl``, see :func:`audit.finetune.data.read_adversarial`).

Every transformation here works offline: character edits need no data, ``contractions`` uses
audit's own table, and ``wordnet`` uses the WordNet tree :mod:`audit.attacks.offline` assembles
from local files. The perturbed prompt keeps the clean target, so the model learns to answer a
noisy prompt as it answers the clean one.

Static augmentation (:func:`augment_pairs`) builds one fixed set of copies before training; online
augmentation (:class:`OnlineAugmented`, Ivgi & Berant 2021, "Achieving Model Robustness through
Discrete Adversarial Training", EMNLP 2021, arXiv:2104.05062, who found that a fresh perturbation
every time an example is drawn beats a fixed augmented set) re-perturbs every augmented slot each
epoch, seeded by (seed, epoch, slot) so reruns, resumed runs and data-parallel processes agree.

Example:
    >>> pairs = augment_pairs([TextPair("Customer: where is my order?\\nAgent:", " On its way.")],
    ...                       AugmentOptions(per_prompt=2), seed=0)  # doctest: +SKIP
    >>> [p.source for p in pairs]  # doctest: +SKIP
    ['augment', 'augment']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence as SequenceABC
from typing import Callable, Sequence

from ..errors import AuditError
from ..registry import did_you_mean
from .config import AugmentOptions
from .data import Example, TextPair

log = logging.getLogger("audit")


def _transformation(name: str):
    """Build one named TextAttack transformation (textattack imported offline first)."""
    from ..attacks.offline import import_textattack

    import_textattack()
    from textattack import transformations as T

    if name == "wordnet":
        from ..attacks.offline import ensure_wordnet, no_nltk_downloads

        ensure_wordnet(for_what="augment: wordnet")

        class SortedWordNet(T.WordSwapWordNet):
            # TextAttack returns the synonyms as list(set(...)), whose order follows the per-process string
            # hash seed: the seeded draw then picked different synonyms in every process and every rerun.
            def _get_replacement_words(self, word, random=False):
                return sorted(super()._get_replacement_words(word))

        with no_nltk_downloads():  # WordSwapWordNet asks nltk to download omw-1.4 on construction
            return SortedWordNet()
    if name == "contractions":
        from ..attacks.transformations import WordSwapContractions

        return WordSwapContractions()
    factory: Callable = TRANSFORMATIONS[name]
    return factory(T)


#: Offline transformations by name (``augment.transformations`` in the config).
TRANSFORMATIONS: dict[str, Callable] = {
    "char_swap": lambda T: T.WordSwapNeighboringCharacterSwap(),      # "order" -> "odrer"
    "char_delete": lambda T: T.WordSwapRandomCharacterDeletion(),     # "order" -> "oder"
    "char_insert": lambda T: T.WordSwapRandomCharacterInsertion(),    # "order" -> "ordxer"
    "qwerty": lambda T: T.WordSwapQWERTY(),                           # "order" -> "ordet" (keyboard neighbour)
    "homoglyph": lambda T: T.WordSwapHomoglyphSwap(),                 # visually identical Unicode letters
    "contractions": None,                                             # "do not" <-> "don't" (audit's table)
    "wordnet": None,                                                  # WordNet synonyms (local WordNet files)
}


def make_augmenter(options: AugmentOptions, *, per_example: int | None = None):
    """A TextAttack ``Augmenter`` over the named transformations (one chosen per edit).

    Stop words and already-modified words are left alone (TextAttack's pre-transformation
    constraints), so the perturbation lands on content words. ``per_example``: copies per
    ``augment()`` call (default ``options.per_prompt``; online augmentation draws one per slot).
    """
    for name in options.transformations:
        if name not in TRANSFORMATIONS:
            raise AuditError(f"augment.transformations: unknown {name!r}{did_you_mean(name, TRANSFORMATIONS)}; "
                             f"available: {', '.join(TRANSFORMATIONS)}")
    transforms = [_transformation(n) for n in options.transformations]
    from textattack.augmentation import Augmenter
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.transformations import CompositeTransformation

    transformation = transforms[0] if len(transforms) == 1 else CompositeTransformation(transforms)
    return Augmenter(transformation=transformation, constraints=[RepeatModification(), StopwordModification()],
                     pct_words_to_swap=options.pct_words_to_swap,
                     transformations_per_example=per_example or options.per_prompt)


def _augmented(pair: TextPair, prompt: str) -> TextPair:
    """The augmented record of ``pair`` with ``prompt``: its target, meta and ``pair_target``, paired
    with the clean prompt (``original_prompt``) for the paired losses (``consistency``)."""
    return TextPair(prompt, pair.target, source="augment",
                    meta={**pair.meta, "original_prompt": pair.meta.get("original_prompt") or pair.prompt})


def augment_pairs(pairs: Sequence[TextPair], options: AugmentOptions, *, seed: int = 0,
                  progress: bool = False) -> list[TextPair]:
    """Perturbed copies of each pair's prompt (targets unchanged); the originals are not included.

    TextAttack draws from Python's ``random`` and numpy's; we seed both so every process of a data-parallel
    run (and every rerun) builds the same augmented set, and restore the caller's state after.
    """
    prompt_pairs = [p for p in pairs if p.prompt]
    if not prompt_pairs:
        return []
    import numpy as np

    augmenter = make_augmenter(options)
    state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    out: list[TextPair] = []
    try:
        it = prompt_pairs
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(prompt_pairs, desc="augment", unit="prompt", leave=False)
        for p in it:
            seen = {p.prompt}
            for text in augmenter.augment(p.prompt):
                if text not in seen:  # an unchanged or duplicate copy adds nothing
                    seen.add(text)
                    out.append(_augmented(p, text))
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
    log.info("augment: %d perturbed prompts from %d training prompts", len(out), len(prompt_pairs))
    return out


class OnlineAugmented(SequenceABC):
    """Training examples whose augmented slots get a fresh perturbation every time they are drawn.

    Online augmentation (Ivgi & Berant 2021, arXiv:2104.05062): ``options.per_prompt`` slots per
    training prompt, each re-perturbed once an epoch (the trainer draws every index once an epoch)
    from an RNG seeded by ``f"{seed}|{epoch}|{slot}"``, with Python's ``random`` and numpy's (what
    TextAttack draws from) seeded from it and the caller's state restored after. The stream is a
    function of (seed, epoch, slot) alone: a rerun, a run resumed from a checkpoint and every
    data-parallel process see the same perturbations, and each process perturbs only the slots of its
    own batches. A perturbed slot is rendered as a static augmented copy (``tokenize``: the run's
    chat template, max_length, add_eos), keeps the clean target, ``pair_target`` and meta, and is
    paired with the clean prompt (``original_prompt``); a slot whose draw left the prompt unchanged
    trains on the clean prompt (no pair).

    Indices ``0..len(examples)-1`` are the fixed ``examples`` (clean data, adversarial records); the
    slots follow. Length grouping uses each slot's clean length (a perturbation moves it by a few
    tokens). ``self[i]`` is the example as drawn in epoch 0.

    Args:
        examples: the tokenised fixed training examples.
        pairs: the clean training pairs to perturb (pairs without a prompt, plain text, are skipped).
        options: the transformations and their mixture, ``per_prompt`` slots, ``pct_words_to_swap``.
        seed: the run's seed.
        tokenize: ``pairs -> examples``, exactly as the fixed examples were tokenised.

    Example:
        >>> online = OnlineAugmented(train, pairs, AugmentOptions(online=True), seed=0,
        ...                          tokenize=lambda ps: tokenize_pairs(ps, tok, max_length=256))  # doctest: +SKIP
        >>> online.perturbed(0, epoch=0).prompt != online.perturbed(0, epoch=1).prompt  # doctest: +SKIP
        True
    """

    def __init__(self, examples: Sequence[Example], pairs: Sequence[TextPair], options: AugmentOptions, *, seed: int,
                 tokenize: Callable[[Sequence[TextPair]], list[Example]]):
        self.fixed = list(examples)
        prompts = [p for p in pairs if p.prompt]
        self.slots = [p for p in prompts for _ in range(options.per_prompt)]   # slot j * per_prompt + k: copy k of prompt j
        self.seed = seed
        self.tokenize = tokenize
        # Built once (TextAttack's import and construction take seconds), reused for every draw.
        self.augmenter = make_augmenter(options, per_example=1)
        clean = tokenize(self.slots)
        if len(clean) != len(self.slots):
            raise AuditError("augment.online: a prompt/target pair did not tokenise to exactly one example")
        self._lengths = [len(e) for e in self.fixed] + [len(e) for e in clean]
        log.info("augment: online, %d slots (%d per prompt x %d training prompts) re-perturbed every epoch",
                 len(self.slots), options.per_prompt, len(prompts))

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, index: int) -> Example:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.draw([index % len(self)], epoch=0)[0]

    def lengths(self) -> list[int]:
        """Token length of every index (slots: their clean prompt's), for length-grouped batching."""
        return list(self._lengths)

    def perturbed(self, slot: int, epoch: int) -> TextPair:
        """Slot ``slot``'s record in ``epoch``: a fresh perturbation of its clean prompt, seeded by (seed, epoch, slot)."""
        import numpy as np

        pair = self.slots[slot]
        rng = random.Random(f"{self.seed}|{epoch}|{slot}")
        state, np_state = random.getstate(), np.random.get_state()
        random.seed(rng.getrandbits(64))
        np.random.seed(rng.getrandbits(32))
        try:
            texts = self.augmenter.augment(pair.prompt)
        finally:
            random.setstate(state)
            np.random.set_state(np_state)
        return _augmented(pair, texts[0] if texts else pair.prompt)

    def draw(self, indices: Sequence[int], epoch: int) -> list[Example]:
        """The examples at ``indices`` as drawn in ``epoch``: fixed ones as they are, slots freshly perturbed."""
        n = len(self.fixed)
        fresh = iter(self.tokenize([self.perturbed(i - n, epoch) for i in indices if i >= n]))
        return [self.fixed[i] if i < n else next(fresh) for i in indices]
