"""Turning several experts' answers into one: answer extraction and majority vote.

Used offline by the vote benchmark (evaluation/vote.py) and, with k > 1, by the gateway.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_CHOICE = re.compile(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\(?([A-E])\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_choice(text: str | None) -> str | None:
    """The multiple-choice letter an answer commits to: 'The answer is (B)' -> 'B', "['A\\n']" -> 'A'."""
    if not text:
        return None
    if m := _ANSWER_IS.search(text):
        return m.group(1).upper()
    m = _CHOICE.search(text)
    return m.group(1) if m else None


def extract_number(text: str | None) -> str | None:
    """The last number in an answer (chain-of-thought answers end with it), normalised."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    value = found[-1].replace(",", "")
    return value.rstrip("0").rstrip(".") if "." in value else value


def majority(answers: Sequence[str | None]) -> int | None:
    """Index of the answer to return: the most common extracted answer, ties to the earliest
    (answers come best-ranked first); None when nothing could be extracted."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == top)
