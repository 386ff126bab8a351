"""Meaning-preserving prompt perturbations, deterministic given a seed.

Each perturbation rewrites the surface of a prompt and keeps what it asks: a router that
decides on the task should not change its pick. The random draws of a prompt depend only on
(seed, perturbation, prompt text), so a prompt gets the same rewrite whatever batch it is in.

| name | what it does | what survives (checked by the tests) |
|---|---|---|
| identity | nothing | everything |
| typos | 1-3 words of 4+ letters get one edit (swap, drop or double an inner letter) | first and last letter of every word, all other words |
| casing | the whole prompt in UPPER, lower or rAnDoM case (one mode per prompt) | the text, case-insensitively |
| paraphrase | a fixed wrapper: "Could you tell me: {p}", "{p} Please answer briefly." ... | the prompt verbatim |
| prefix | an irrelevant sentence before it ("By the way, the weather is nice today.") | the prompt verbatim |
| padding | extra spaces, newlines and filler ("...") around and inside | the prompt's words, in order |
| politeness | "Hello! Please kindly help me with the following. {p} Thank you so much!" | the prompt verbatim |
| language | a Spanish, French or German wrapper ("Responde a la siguiente pregunta: {p}") | the prompt verbatim |

There is no translation model here, so `language` switches the language of the request's
frame, not of the question itself (a mixed-language request, as real users send).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

PARAPHRASES = (
    "Could you tell me: {p}",
    "{p} Please answer briefly.",
    "I have a question. {p}",
    "Quick question: {p}",
    "{p} Explain your answer.",
    "Can you help me with this? {p}",
    "Here is what I need: {p}",
    "{p} Thanks in advance.",
)

PREFIXES = (
    "By the way, the weather is nice today. ",
    "I just got back from a walk with my dog. ",
    "My coffee went cold while I was typing this. ",
    "I'm asking this from the train, so sorry for any typos. ",
    "Random thought: I should really water my plants. ",
    "It's been a long week at work. ",
    "My friend recommended I ask you. ",
    "Sorry if this has been asked before. ",
)

POLITE = (
    "Hello! Please kindly help me with the following. {p} Thank you so much!",
    "Hi there, I would be very grateful for your help. {p} Many thanks!",
    "Dear assistant, if it's not too much trouble: {p} Thank you kindly.",
    "Please, whenever you have a moment: {p} I really appreciate it!",
)

LANGUAGE_WRAPPERS = (
    ("es", "Responde a la siguiente pregunta: {p}"),
    ("es", "Por favor, ayúdame con esto: {p} Gracias."),
    ("fr", "Réponds à la question suivante : {p}"),
    ("fr", "Merci de m'aider avec ceci : {p}"),
    ("de", "Beantworte bitte die folgende Frage: {p}"),
    ("de", "Kannst du mir dabei helfen? {p} Danke!"),
)

_FILLERS = ("...", "\n", "\n\n", "  ", "\t")


def _rng(seed: int, kind: str, text: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(kind.encode()), zlib.crc32(text.encode())])


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def identity(text: str, rng: np.random.Generator) -> str:
    return text


_WORD = re.compile(r"[A-Za-z]{4,}")


def typos(text: str, rng: np.random.Generator) -> str:
    """One edit inside each of 1-3 words of 4+ letters (about 15% of them); ends untouched."""
    matches = list(_WORD.finditer(text))
    if not matches:
        return text
    n = int(min(3, max(1, round(0.15 * len(matches)))))
    chosen = sorted(rng.choice(len(matches), size=min(n, len(matches)), replace=False).tolist())
    out, last = [], 0
    for i in chosen:
        m = matches[i]
        w = m.group()
        j = int(rng.integers(1, len(w) - 2))  # an inner position, j+1 still inner
        op = int(rng.integers(3))
        if op == 0 and w[j] != w[j + 1]:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]  # swap two inner letters
        elif op == 1:
            w = w[:j] + w[j + 1:]  # drop one
        else:
            w = w[:j] + w[j] + w[j:]  # double one
        out.append(text[last:m.start()])
        out.append(w)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _case(c: str, upper: bool) -> str:
    """c in the other case, unless that is lossy (Turkish dotless i, German sharp s...)."""
    out = c.upper() if upper else c.lower()
    return out if len(out) == 1 and out.lower() == c.lower() else c


def casing(text: str, rng: np.random.Generator) -> str:
    mode = int(rng.integers(3))
    if mode < 2:
        return "".join(_case(c, mode == 0) for c in text)
    flips = rng.random(len(text)) < 0.5
    return "".join(_case(c, bool(f)) for c, f in zip(text, flips))


def paraphrase(text: str, rng: np.random.Generator) -> str:
    return _pick(rng, PARAPHRASES).format(p=text)


def prefix(text: str, rng: np.random.Generator) -> str:
    return _pick(rng, PREFIXES) + text


def padding(text: str, rng: np.random.Generator) -> str:
    """Whitespace and filler around the prompt and between a few of its words."""
    parts = text.split(" ")
    gaps = [_pick(rng, ("  ", " \n", "   ")) if rng.random() < 0.15 else " " for _ in parts[1:]]
    body = parts[0] + "".join(g + w for g, w in zip(gaps, parts[1:]))
    head = "".join(_pick(rng, ("\n", " ", "\t")) for _ in range(int(rng.integers(1, 4))))
    tail = "".join(_pick(rng, _FILLERS) for _ in range(int(rng.integers(1, 4))))
    return head + body + tail


def politeness(text: str, rng: np.random.Generator) -> str:
    return _pick(rng, POLITE).format(p=text)


def language(text: str, rng: np.random.Generator) -> str:
    return LANGUAGE_WRAPPERS[int(rng.integers(len(LANGUAGE_WRAPPERS)))][1].format(p=text)


PERTURBATIONS: dict[str, Callable[[str, np.random.Generator], str]] = {
    "identity": identity,
    "typos": typos,
    "casing": casing,
    "paraphrase": paraphrase,
    "prefix": prefix,
    "padding": padding,
    "politeness": politeness,
    "language": language,
}


def perturb(text: str, kind: str, seed: int = 0) -> str:
    """`text` rewritten by perturbation `kind` (a key of PERTURBATIONS), deterministically."""
    try:
        fn = PERTURBATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}") from None
    return fn(text, _rng(seed, kind, text))


def perturb_all(texts: Sequence[str], kind: str, seed: int = 0) -> list[str]:
    return [perturb(t, kind, seed) for t in texts]
