"""Masking group terms before a classifier scores a counterfactual continuation.

Toxicity and sentiment classifiers react to identity words themselves: the offline profanity
scorer gives the bare word "gay" 0.98 and "white people" 0.55. A continuation that repeats the
prompt's term ("The gay person walked in and the gay person ...") is then scored for the word, not
for what the model said about the person, and the per-group gap measures the classifier.

So before scoring, every group term of an axis is replaced by a neutral one, whole words and
case-insensitively, in every continuation of that axis (the same mask for every group, so no group
keeps a word another loses):

- each group's full terms ("gay person", "man in a wheelchair") -> ``person``;
- each group's name ("gay people", "wheelchair users") -> ``people``;
- each group's *identity words*: a word of its terms or name that no other group of the axis uses
  ("gay", "Muslim", "elderly", "wheelchair"; not "person", "man" or "neighbor", which every
  group shares, nor function words such as "in" or "without") -> ``person``, and its plural (``+s``/``+es``, ``man`` -> ``men``) -> ``people``.

Longer phrases are replaced first ("gay couple" before "gay"). What the mask cannot catch: words
the term list does not hold ("homosexual", "Islam"); the section's scorer-validity check (the
scorer's gap on the masked neutral template sentences) shows what is left.

Example:
    >>> m = axis_mask({"gay people": ["gay person", "gay couple"], "straight people": ["straight person", "straight couple"]})
    >>> mask_text("The gay couple and their gay friends; Gay people, straight ones.", m)
    'The person and their person friends; people, person ones.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEUTRAL = "person"
NEUTRAL_PLURAL = "people"
_IRREGULAR = {"man": "men", "woman": "women", "child": "children"}
# Never identity words, even when one group alone uses them ("person in a wheelchair").
_FUNCTION = {"a", "an", "the", "in", "on", "at", "of", "with", "without", "and", "or", "to", "for", "from", "who",
             NEUTRAL, NEUTRAL_PLURAL}
# A "word" includes hyphens and apostrophes: "middle-aged", "eighty-year-old" are one word, and
# "old" must not match inside "eighty-year-old".
_WORD = r"[\w'-]"


@dataclass(frozen=True)
class Mask:
    """One axis's mask: a compiled alternation of phrases and each phrase's replacement."""

    pattern: re.Pattern
    replacements: dict[str, str]   # lowercased phrase -> neutral term

    @property
    def phrases(self) -> list[str]:
        return list(self.replacements)


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(rf"{_WORD}+", text)]


def _plurals(word: str) -> list[str]:
    if word in _IRREGULAR:
        return [_IRREGULAR[word]]
    if word.endswith("s"):   # already a plural ("Christians", "users")
        return []
    if word.endswith(("x", "ch", "sh")):
        return [word + "es"]
    return [word + "s"]


def axis_mask(groups: dict[str, list[str]]) -> Mask:
    """The mask of one axis (``group -> terms``), as the module docstring describes."""
    repl: dict[str, str] = {}
    for group, terms in groups.items():
        for t in terms:
            repl.setdefault(t.lower().strip(), NEUTRAL)
        repl.setdefault(group.lower().strip(), NEUTRAL_PLURAL)
    # Identity words: used by exactly one group of the axis (its terms or its name).
    used: dict[str, set[str]] = {}
    for group, terms in groups.items():
        for w in {w for t in [*terms, group] for w in _words(t)}:
            used.setdefault(w, set()).add(group)
    for w, owners in used.items():
        if len(owners) == 1 and w not in _FUNCTION:
            repl.setdefault(w, NEUTRAL)
            for p in _plurals(w):
                repl.setdefault(p, NEUTRAL_PLURAL)
    phrases = sorted(repl, key=lambda p: (-len(p), p))   # longest first: the regex tries them in order
    body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
    pattern = re.compile(rf"(?<!{_WORD})(?:{body})(?!{_WORD})", re.IGNORECASE)
    return Mask(pattern=pattern, replacements=repl)


def mask_text(text: str, mask: Mask) -> str:
    """``text`` with every phrase of ``mask`` replaced by its neutral term."""
    return mask.pattern.sub(lambda m: mask.replacements.get(re.sub(r"\s+", " ", m.group(0).lower()), NEUTRAL), text)
