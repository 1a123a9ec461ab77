"""Protected spans: attacks and perturbations leave prompt-template role tags ("Customer:", "Agent:") intact."""

from __future__ import annotations

import pytest

from audit.attacks import RECIPES, build_attack
from audit.config import GenerationSettings
from audit.perturb import ROLE_TAGS, names, perturb, protected_spans

PREFIX, SUFFIX = "Customer: ", "\nAgent:"
# Every recipe has something to change in the message: content words, synonyms, a number, a contraction.
MESSAGES = ["I do not have order 42 and the application crashes whenever I open settings",
            "My password reset email never arrived, it is 3 days late"]
PROMPTS = [PREFIX + m + SUFFIX for m in MESSAGES]
SETTINGS = GenerationSettings(max_new_tokens=12, batch_size=8)


@pytest.fixture(scope="module")
def wrapper(request):
    from audit.attacks import GenerationModelWrapper

    return GenerationModelWrapper(request.getfixturevalue("micro_lm"), SETTINGS)


def _attack(wrapper, name, protect):
    from audit.attacks import make_goal

    return build_attack(name, make_goal("output_change", wrapper, query_budget=30), protect=protect)


def _tag_indices(text: str) -> set[int]:
    from textattack.shared import AttackedText

    words = AttackedText(text).words
    return {0, len(words) - 1} if words[0] == "Customer" and words[-1] == "Agent" else set()


def test_role_tag_spans():
    assert protected_spans(PROMPTS[0], ROLE_TAGS) == [(0, len(PREFIX)), (len(PROMPTS[0]) - len("Agent:"), len(PROMPTS[0]))]
    # Every line's tag in a transcript; not URLs, not a colon inside a sentence.
    t = "User: hi\nAssistant: see https://x.org at 10:30\nUser: thanks\n"
    assert [t[a:b] for a, b in protected_spans(t, ROLE_TAGS)] == ["User: ", "Assistant: ", "User: "]
    assert protected_spans("https://example.org is down", ROLE_TAGS) == []
    assert protected_spans("Where is my order?", ROLE_TAGS) == []


def _recipes():
    from audit.attacks.offline import DEBIAN_WORDNET_DIR

    no_wordnet = pytest.mark.skipif(not (DEBIAN_WORDNET_DIR / "data.noun").exists(), reason="Debian WordNet not installed")
    return [pytest.param(n, marks=no_wordnet) if "wordnet" in RECIPES.get(n).needs else n for n in RECIPES.names()]


@pytest.mark.parametrize("name", _recipes())
def test_no_candidate_of_any_recipe_touches_the_role_tags(name, wrapper):
    """The constraint acts on TextAttack's own candidate generation (and the search's word ranking)."""
    from textattack.shared import AttackedText

    for prompt in PROMPTS:
        text = AttackedText(prompt)
        protected = _attack(wrapper, name, ROLE_TAGS)
        cands = protected.get_transformations(text, original_text=text)
        assert cands, f"{name} has nothing to perturb in {prompt!r}"
        for c in cands:
            assert c.text.startswith(PREFIX) and c.text.endswith(SUFFIX), c.text
        # Word-importance searches only rank (and spend queries on) modifiable words.
        _, order = protected.get_indices_to_order(text)
        assert order and not set(order) & _tag_indices(prompt)
        # Without protection the same recipe does offer tag edits (if it edits words of that kind at all).
        free = _attack(wrapper, name, ())
        free_cands = free.get_transformations(text, original_text=text)
        if name in ("pruthi", "bad_characters", "deepwordbug"):
            assert any(not (c.text.startswith(PREFIX) and c.text.endswith(SUFFIX)) for c in free_cands)


@pytest.mark.parametrize("name", _recipes())
def test_attacks_on_templated_prompts_keep_the_tags(name, wrapper):
    from audit.attacks import Target, attack_targets

    clean = wrapper(PROMPTS)
    targets = [Target(str(i), p, c) for i, (p, c) in enumerate(zip(PROMPTS, clean))]
    records = attack_targets(_attack(wrapper, name, ROLE_TAGS), targets, recipe=name, seed=0)
    for r in records:
        assert r["perturbed_prompt"].startswith(PREFIX) and r["perturbed_prompt"].endswith(SUFFIX)
        assert not set(r["perturbed_word_indices"]) & _tag_indices(r["original_prompt"])
    if name == "pruthi":
        # The ranking favours the role tags on this model: unprotected, pruthi edits "Customer".
        free = attack_targets(_attack(wrapper, name, ()), targets, recipe=name, seed=0)
        assert any(0 in r["perturbed_word_indices"] and not r["perturbed_prompt"].startswith(PREFIX) for r in free)
        assert any(r["perturbed_word_indices"] for r in records)   # protected, it edits the message instead


def test_protection_is_a_no_op_without_tags(wrapper):
    """A prompt with no protected span is attacked exactly as without the constraint."""
    from audit.attacks import Target, attack_targets

    prompt = "The application crashes whenever I open settings"
    t = [Target("x", prompt, wrapper([prompt])[0])]
    for name in ("deepwordbug", "bad_characters"):
        assert (attack_targets(_attack(wrapper, name, ROLE_TAGS), t, recipe=name, seed=0)
                == attack_targets(_attack(wrapper, name, ()), t, recipe=name, seed=0))


@pytest.mark.parametrize("name", names())
def test_perturbations_keep_the_tags(name):
    for seed in range(3):
        for prompt in PROMPTS + ["Customer: hello there\nAgent: Hi, how can I help?\nCustomer: I do not know 2 things\nAgent:"]:
            v = perturb(prompt, name, seed=seed, protect=ROLE_TAGS)
            assert v.startswith(PREFIX) and v.endswith(SUFFIX), (name, v)
            if "\nAgent: Hi" in prompt and name not in ("negation", "numbers", "contractions"):
                assert "\nAgent: " in v and "\nCustomer: " in v
            # Protection only narrows what changes: the message is perturbed as before when it applies.
            if perturb(prompt, name, seed=seed) != prompt and name in ("lowercase", "typos", "whitespace", "numbers"):
                assert v != prompt
    # Unprotected (the function's default) the old behaviour: the tags change too.
    assert perturb(PROMPTS[0], "lowercase") == PROMPTS[0].lower()
    # No protected span: identical to the unprotected perturbation, same seed.
    for seed in range(3):
        assert perturb(MESSAGES[1], name, seed=seed, protect=ROLE_TAGS) == perturb(MESSAGES[1], name, seed=seed)
