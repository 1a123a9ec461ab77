"""Attack recipes for generation models, registered by name in :data:`RECIPES`.

Each recipe is a composition ``Attack(goal, constraints, transformation, search)`` with one comment
per component (as TextAttack's ``attack_recipes/``), built around a generation goal from
:mod:`audit.attacks.goals`. Every recipe here builds and runs offline. TextFooler's sentence-encoder
constraint runs on the local all-MiniLM-L6-v2 (:class:`~audit.attacks.constraints.MiniLMSentenceEncoder`)
with WordNet synonyms in place of its counter-fitted word vectors (``textfooler``); recipes needing
masked language models, flair or downloaded word vectors (BAE, BERT-Attack, CLARE, ...) are not
offered, nor ``WordSwapHomoglyphSwap`` (its data file is missing from the 0.3.11 wheel).

Importing this module is cheap: TextAttack is imported when a recipe is built.

Example:
    >>> sorted(RECIPES.names())[:2]
    ['bad_characters', 'deepwordbug']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..registry import Registry
from .offline import MissingAttackDataError, ensure_stopwords, ensure_wordnet


@dataclass(frozen=True)
class Recipe:
    """A named attack: ``build(goal, *, max_words, extra) -> textattack.Attack`` and the data it needs.

    ``extra`` are constraints every recipe appends to its own (e.g. :class:`~audit.attacks.constraints.ProtectedSpans`).
    """

    name: str
    build: Callable
    description: str
    needs: tuple[str, ...] = ("stopwords",)   # "stopwords", "wordnet", "encoder" (all-MiniLM-L6-v2)
    default_max_words: int = 3                 # words an attack may perturb unless the suite says otherwise


RECIPES: Registry = Registry("attack recipe")


def recipe(name: str, *, description: str, needs: tuple[str, ...] = ("stopwords",), max_words: int = 3):
    """Register a recipe builder under ``name``."""

    def deco(fn):
        RECIPES.register(name)(Recipe(name, fn, description, needs, max_words))
        return fn

    return deco


def check_data(name: str) -> None:
    """Raise :class:`MissingAttackDataError` (one line) if data recipe ``name`` needs is missing."""
    r = RECIPES.get(name)
    for need in r.needs:
        if need == "stopwords":
            ensure_stopwords()
        elif need == "wordnet":
            ensure_wordnet(for_what=f"attack recipe {name!r} (WordNet synonym swaps)")
        elif need == "encoder":
            from .similarity import check_similarity

            try:
                check_similarity("embedding")
            except ValueError as e:
                raise MissingAttackDataError(f"attack recipe {name!r}: {e}") from None
        else:  # pragma: no cover - a registration mistake
            raise MissingAttackDataError(f"attack recipe {name!r} needs unknown data {need!r}")


def build_attack(name: str, goal, *, max_words: int | None = None, protect: Sequence[str] = ()):
    """Build recipe ``name`` around ``goal`` (a goal function from :func:`audit.attacks.goals.make_goal`).

    ``protect``: regular expressions whose matches the attack must not modify (e.g.
    :data:`audit.perturb.ROLE_TAGS`, the robustness section's default); every word overlapping a
    match is excluded by a :class:`~audit.attacks.constraints.ProtectedSpans` pre-transformation
    constraint added to the recipe's constraints. Empty (the default here): the whole prompt.

    Raises:
        MissingAttackDataError: the recipe's data (WordNet, stop words) is missing; one line.

    Example:
        >>> attack = build_attack("deepwordbug", goal, max_words=2, protect=ROLE_TAGS)  # doctest: +SKIP
        >>> result = attack.attack(prompt, clean_output)  # doctest: +SKIP
    """
    r = RECIPES.get(name)
    check_data(name)
    from .offline import no_nltk_downloads

    extra = []
    if protect:
        from .constraints import ProtectedSpans

        extra.append(ProtectedSpans(protect))
    with no_nltk_downloads():   # WordSwapWordNet() calls nltk.download on construction
        return r.build(goal, max_words=max_words if max_words is not None else r.default_max_words, extra=extra)


# ---- recipes -------------------------------------------------------------------------------------

@recipe("deepwordbug", description="DeepWordBug-like: one random character edit (swap/substitute/delete/insert) "
                                   "per word, most important words first")
def deepwordbug(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import LevenshteinEditDistance, MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import (CompositeTransformation, WordSwapNeighboringCharacterSwap,
                                            WordSwapRandomCharacterDeletion, WordSwapRandomCharacterInsertion,
                                            WordSwapRandomCharacterSubstitution)

    # Transformation: Gao et al.'s four character operators, one random edit of each kind per word.
    transformation = CompositeTransformation([WordSwapNeighboringCharacterSwap(), WordSwapRandomCharacterSubstitution(),
                                              WordSwapRandomCharacterDeletion(), WordSwapRandomCharacterInsertion()])
    # Constraints: never edit a word twice or a stop word; at most `max_words` words; total edit
    # distance to the original prompt at most 30 characters (DeepWordBug's epsilon).
    constraints = [RepeatModification(), StopwordModification(), MaxWordsPerturbed(max_num_words=max_words),
                   LevenshteinEditDistance(30)] + list(extra)
    # Search: rank words by how much deleting each one changes the output, then edit them greedily
    # in that order, keeping an edit only when it moves the output further from the clean one.
    search = GreedyWordSwapWIR(wir_method="delete")
    # Goal: the given generation goal (by default: the output stops resembling the clean output).
    return Attack(goal, constraints, transformation, search)


@recipe("pruthi", description="Pruthi-like: every single inner-character typo (swap, delete, insert, QWERTY "
                              "neighbour) of one word of 4+ letters, exhaustive greedy search", max_words=1)
def pruthi(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import MinWordLength, RepeatModification, StopwordModification
    from textattack.search_methods import GreedySearch
    from textattack.transformations import (CompositeTransformation, WordSwapNeighboringCharacterSwap, WordSwapQWERTY,
                                            WordSwapRandomCharacterDeletion, WordSwapRandomCharacterInsertion)

    # Transformation: all typos of the four kinds Pruthi et al. study, never touching a word's first
    # or last letter (the paper's setting: those stay readable to people).
    edge = dict(random_one=False, skip_first_char=True, skip_last_char=True)
    transformation = CompositeTransformation([WordSwapNeighboringCharacterSwap(**edge), WordSwapRandomCharacterDeletion(**edge),
                                              WordSwapRandomCharacterInsertion(**edge), WordSwapQWERTY(**edge)])
    # Constraints: only words of 4+ letters, no stop words, at most `max_words` words (the paper
    # attacks with 1 or 2 typos), no word edited twice.
    constraints = [MinWordLength(min_length=4), StopwordModification(), MaxWordsPerturbed(max_num_words=max_words),
                   RepeatModification()] + list(extra)
    # Search: greedy (beam width 1) over every candidate at each step; needs a larger query budget.
    search = GreedySearch()
    # Goal: the given generation goal.
    return Attack(goal, constraints, transformation, search)


@recipe("pwws", description="PWWS-like: WordNet synonym swaps ordered by probability-weighted word saliency "
                            "(needs WordNet)", needs=("stopwords", "wordnet"))
def pwws(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapWordNet

    # Transformation: replace a word with one of its WordNet synonyms (single words only).
    transformation = WordSwapWordNet()
    # Constraints: no word swapped twice, no stop words, at most `max_words` words.
    constraints = [RepeatModification(), StopwordModification(), MaxWordsPerturbed(max_num_words=max_words)] + list(extra)
    # Search: Ren et al.'s weighted saliency (leave-one-out saliency, softmaxed, times the best
    # score change a synonym achieves at that word), then greedy swaps in that order.
    search = GreedyWordSwapWIR(wir_method="weighted-saliency")
    # Goal: the given generation goal.
    return Attack(goal, constraints, transformation, search)


@recipe("textfooler", description="TextFooler-like: WordNet synonym swaps of the most important words, each kept only "
                                  "while a MiniLM sentence encoder finds the text around it similar (needs WordNet)",
        needs=("stopwords", "wordnet", "encoder"))
def textfooler(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapWordNet

    from .constraints import MiniLMSentenceEncoder

    # Transformation: WordNet synonyms (TextFooler swaps among the 50 nearest counter-fitted word
    # vectors; those vectors are a download, WordNet ships with audit's offline data).
    transformation = WordSwapWordNet()
    # Constraints: no word swapped twice, no stop words, at most `max_words` words, and TextFooler's
    # sentence-encoder check: the 15-word window around each swap keeps angular similarity >= 0.84 to
    # the text before it (all-MiniLM-L6-v2 in place of the Universal Sentence Encoder). TextFooler's
    # part-of-speech check is left out: NLTK's tagger is not in the offline data.
    constraints = [RepeatModification(), StopwordModification(), MaxWordsPerturbed(max_num_words=max_words),
                   MiniLMSentenceEncoder()] + list(extra)
    # Search: TextFooler's word importance by deletion, then greedy swaps in that order.
    search = GreedyWordSwapWIR(wir_method="delete")
    # Goal: the given generation goal.
    return Attack(goal, constraints, transformation, search)


@recipe("numbers_contractions", description="change numbers (WordSwapChangeNumber) and contract/expand "
                                            "(do not <-> don't); stop words may change")
def numbers_contractions(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification
    from textattack.search_methods import GreedySearch
    from textattack.transformations import CompositeTransformation, WordSwapChangeNumber

    from .transformations import WordSwapContractions

    # Transformation: numbers replaced by others within +-100% (3 candidates each), and
    # contraction/expansion (audit's per-index swap; TextAttack's WordSwapContract misses pairs).
    transformation = CompositeTransformation([WordSwapChangeNumber(max_change=1, n=3), WordSwapContractions()])
    # Constraints: no word changed twice and at most `max_words` words; no stop-word constraint,
    # since contractions are made of stop words.
    constraints = [RepeatModification(), MaxWordsPerturbed(max_num_words=max_words)] + list(extra)
    # Search: greedy over all candidates (there are few: one per number or contraction site).
    search = GreedySearch()
    # Goal: the given generation goal.
    return Attack(goal, constraints, transformation, search)


@recipe("bad_characters", description="BadCharacters-like: invisible characters, bidi reorderings and "
                                      "backspace-deletions inside words (imperceptible when rendered)")
def bad_characters(goal, *, max_words: int, extra: Sequence = ()):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import (CompositeTransformation, WordSwapDeletions, WordSwapInvisibleCharacters,
                                            WordSwapReorderings)

    # Transformation: Boucher et al.'s imperceptible perturbations, as word swaps: every zero-width
    # insertion and every bidi-override swap of neighbouring characters, plus one random
    # "character + backspace" insertion per word (all of those would be ~94 per position).
    # Homoglyphs are left out: their table is missing from the textattack 0.3.11 wheel.
    transformation = CompositeTransformation([WordSwapInvisibleCharacters(random_one=False),
                                              WordSwapReorderings(random_one=False), WordSwapDeletions(random_one=True)])
    # Constraints: no word perturbed twice, at most `max_words` words (any word, stop words too:
    # the perturbation is invisible anyway).
    constraints = [RepeatModification(), MaxWordsPerturbed(max_num_words=max_words)] + list(extra)
    # Search: word importance by deletion, then greedy; the paper's differential evolution needs
    # popsize x maxiter (~320) queries per example, far beyond a generation model's budget.
    search = GreedyWordSwapWIR(wir_method="delete")
    # Goal: the given generation goal.
    return Attack(goal, constraints, transformation, search)
