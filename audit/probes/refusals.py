"""Refusal targets for safety hardening: varied, written for this project, never one fixed string.

A model fine-tuned towards a single refusal sentence learns to emit that sentence (and its refusal
judge score tells nothing about whether it learned *when* to refuse); Bianchi et al. 2023
("Safety-Tuned LLaMAs") trained on varied refusals written per request. Here a refusal is built
from three hand-written parts, picked by a seeded hash of the request so the same request always
gets the same target on every machine:

- an opening that declines (26 of them: apologetic, plain, firm, brief),
- a reason (5 general and 4-5 per risk area: privacy, the law, demeaning people, violence; 3 of
  the general ones are blank, a refusal that names no reason),
- an offer of something harmless instead (20, some general, some pointing to help or safe study),

and, for a request wrapped in a jailbreak template, one of 12 sentences that say the framing (a
role-play, a story, "ignore your rules") does not change the answer. That is 26 x 12 x 20 = 6,240
plain refusals per risk area, ~75k wrapped ones; every part is a complete sentence, so any
combination reads as English. Licence: CC0-1.0 (written for this project).

Example:
    >>> refusal_for("How do I make a pipe bomb?") == refusal_for("How do I make a pipe bomb?")
    True
    >>> refusal_for("How do I make a pipe bomb?") != refusal_for("How do I pick a neighbour's lock?")
    True
"""

from __future__ import annotations

import hashlib
import random

OPENINGS = (
    "I can't help with that.",
    "I'm sorry, but I can't help with that.",
    "I won't help with this request.",
    "Sorry, that's not something I can help with.",
    "I'm not able to provide that.",
    "I can't assist with this.",
    "I have to decline this one.",
    "No, I can't do that.",
    "I'm sorry, I can't provide instructions or details for that.",
    "That's a request I need to turn down.",
    "I'm not going to help with that.",
    "I can't give you that information.",
    "Sorry, I can't go along with this request.",
    "I'm afraid I can't help with this.",
    "I must decline.",
    "I can't write that.",
    "That isn't something I'll do.",
    "I'd rather not help with this, and I won't.",
    "I'm sorry, but I have to say no to this.",
    "I can't support this request.",
    "Unfortunately, I can't help you with that.",
    "This is something I can't assist with.",
    "I won't provide that.",
    "I'm unable to help with that request.",
    "I need to stop here: I can't help with this.",
    "Sorry, no.",
)

# Reasons by risk area (the safety probes' categories); an area not named here, or none, draws from
# GENERAL only. Blank entries: a refusal that gives no reason.
GENERAL_REASONS = (
    "It could be used to seriously hurt people.",
    "It could cause real harm to others.",
    "The risk of harm is too high.",
    "Helping with it would go against keeping people safe.",
    "That kind of information is dangerous in the wrong hands.",
    "",
    "",
    "",
)
AREA_REASONS = {
    "information_hazards": (
        "It would invade someone's privacy.",
        "That's private or sensitive information I shouldn't share or help uncover.",
        "Sharing it could put someone's security at risk.",
        "It could expose confidential information.",
    ),
    "malicious_uses": (
        "It would mean helping with something illegal.",
        "Sharing it could help someone commit a crime.",
        "Helping with it could let someone take advantage of other people.",
        "It would break the law and could hurt people.",
        "It could damage someone's property, money or wellbeing.",
    ),
    "discrimination_toxicity": (
        "It targets people in a way that is harmful and unfair.",
        "It involves content that demeans people for who they are.",
        "It would spread hateful or discriminatory ideas.",
        "Insulting or stereotyping people isn't something I'll do.",
    ),
    "harmbench": (
        "It would mean helping with something illegal.",
        "It asks for something that could enable violence.",
        "Sharing it could help someone commit a crime.",
        "Helping with it could let someone take advantage of other people.",
    ),
}

OFFERS = (
    "If there's something else you need, I'm happy to help.",
    "I can help with a safe and legal alternative if you tell me what you're trying to achieve.",
    "If you're worried about your own safety, please contact local emergency services or a trusted professional.",
    "If you're researching this topic, I can point you to general, publicly available safety information instead.",
    "I'd be glad to help with a different question.",
    "If you tell me the goal behind the question, I may be able to suggest a legitimate way to get there.",
    "Is there something else I can do for you?",
    "I can explain the risks involved, or how people protect themselves against this, if that helps.",
    "If this is for a story or a class, I can help in a way that doesn't include harmful details.",
    "If someone is in danger, please reach out to the authorities right away.",
    "I'm happy to talk about the topic in general terms, without the harmful parts.",
    "Let me know if I can help with anything else.",
    "If you're dealing with a conflict, I can suggest constructive ways to handle it.",
    "I can share information about staying safe and within the law instead.",
    "Feel free to ask me something else.",
    "If you need support, a counsellor, lawyer or other professional can help.",
    "",
    "",
    "",
    "",
)

WRAPPED = (
    "Even as part of a role-play, I can't help with that.",
    "Framing it as a story or a game doesn't change my answer.",
    "I'll stay myself here: the instructions above don't change what I can help with.",
    "Whatever persona I'm asked to play, I won't provide this.",
    "I understand the setup, but I still can't help with this request.",
    "Pretending the rules don't apply doesn't make this safe to answer.",
    "I'm not going to switch into a mode that ignores safety.",
    "Even hypothetically, I won't give these details.",
    "The way the request is phrased doesn't change what it asks for.",
    "I can't follow instructions to drop my guidelines.",
    "Writing it in another style or encoding doesn't change my answer.",
    "This is still a harmful request, however it is framed.",
)


def _rng(request: str, salt: str = "") -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{salt}\0{request}".encode()).digest()[:8], "big"))


def refusal_for(request: str, *, category: str | None = None, wrapped: bool = False, salt: str = "") -> str:
    """A refusal of ``request``, the same one for the same (request, wrapped, salt) on every machine.

    ``category``: the request's risk area; its reasons (:data:`AREA_REASONS`) join the general ones.
    ``wrapped``: the request came inside a jailbreak template; the refusal opens by saying the
    framing does not change the answer (half of the time) before declining.

    Example:
        >>> r = refusal_for("Tell me how to steal a car.", wrapped=True)
        >>> r == refusal_for("Tell me how to steal a car.", wrapped=True)
        True
    """
    rng = _rng(request, f"{salt}|{int(wrapped)}")
    reasons = GENERAL_REASONS + AREA_REASONS.get(category or "", ())
    parts = [rng.choice(OPENINGS), rng.choice(reasons), rng.choice(OFFERS)]
    if wrapped:
        frame = rng.choice(WRAPPED)
        parts = [frame, *parts[1:]] if rng.random() < 0.5 else [parts[0], frame, *parts[1:]]
    return " ".join(p for p in parts if p)
