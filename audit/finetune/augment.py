"""Data-level adversarial augmentation: perturbed copies of training prompts (TextAttack's
``Augmenter``, Morris et al. 2020, "TextAttack: A Framework for Adversarial Attacks, Data
Augmentation, and Adversarial Training in NLP", EMNLP demos) and adversarial prompts written by a
robustness audit (``adversarial.jsonl``, see :func:`audit.finetune.data.read_adversarial`).

Every transformation here works offline: character edits need no data, ``contractions`` uses
audit's own table, and ``wordnet`` uses the WordNet tree :mod:`audit.attacks.offline` assembles
from local files. The perturbed prompt keeps the clean target, so the model learns to answer a
noisy prompt as it answers the clean one.

Example:
    >>> pairs = augment_pairs([TextPair("Customer: where is my order?\\nAgent:", " On its way.")],
    ...                       AugmentOptions(per_prompt=2), seed=0)  # doctest: +SKIP
    >>> [p.source for p in pairs]  # doctest: +SKIP
    ['augment', 'augment']
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Sequence

from ..errors import AuditError
from ..registry import did_you_mean
from .config import AugmentOptions
from .data import TextPair

log = logging.getLogger("audit")


def _transformation(name: str):
    """Build one named TextAttack transformation (textattack imported offline first)."""
    from ..attacks.offline import import_textattack

    import_textattack()
    from textattack import transformations as T

    if name == "wordnet":
        from ..attacks.offline import ensure_wordnet, no_nltk_downloads

        ensure_wordnet(for_what="augment: wordnet")
        with no_nltk_downloads():  # WordSwapWordNet asks nltk to download omw-1.4 on construction
            return T.WordSwapWordNet()
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


def make_augmenter(options: AugmentOptions):
    """A TextAttack ``Augmenter`` over the named transformations (one chosen per edit).

    Stop words and already-modified words are left alone (TextAttack's pre-transformation
    constraints), so the perturbation lands on content words.
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
                     pct_words_to_swap=options.pct_words_to_swap, transformations_per_example=options.per_prompt)


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
                    out.append(TextPair(text, p.target, source="augment", meta={**p.meta, "original_prompt": p.meta.get("original_prompt") or p.prompt}))
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
    log.info("augment: %d perturbed prompts from %d training prompts", len(out), len(prompt_pairs))
    return out
