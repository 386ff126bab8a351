"""Turning several experts' answers into one: answer extraction, majority vote, best by predicted
quality, and the prompt an aggregator expert synthesises from.

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


# -- the gateway's aggregators (k > 1) ------------------------------------------------------

_LEADING_CHOICE = re.compile(r"^\s*\(?([A-E])(?:[).:\]]|\s*$)")


def extract_answer(text: str | None) -> str | None:
    """The final answer a free-text reply commits to, for voting: an explicit 'the answer is X'
    (a letter, else a number), a reply that opens with a choice letter ('B) carbon dioxide'), or
    the last number. Stricter than `extract_choice`: a live reply's stray capital 'A' ("A plant
    ...") must not count as a vote for (A)."""
    if not text:
        return None
    if m := _ANSWER_IS.search(text):
        return m.group(1).upper()
    if m := _LEADING_CHOICE.match(text):
        return m.group(1)
    return extract_number(text)


def vote(answers: Sequence[str | None], quality: Sequence[float]) -> int | None:
    """Index of the reply to return: one of the most common extracted answers; among tied
    answers (and among the replies giving the winner), the highest predicted quality wins, then
    the earlier position. None when no answer could be extracted."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [i for i, a in enumerate(answers) if a is not None and counts[a] == top]
    return max(tied, key=lambda i: (quality[i], -i))


def best(quality: Sequence[float]) -> int:
    """Index of the highest predicted quality (ties to the earlier, i.e. better-ranked, one)."""
    return max(range(len(quality)), key=lambda i: (quality[i], -i))


SYNTHESIS_INSTRUCTION = (
    "Several models have answered the user's question below. Write one final answer to the question. "
    "Judge the candidate answers critically: some may be wrong or biased. Do not simply copy one; reason from "
    "the question and keep only what is correct. If the question asks for a choice or a number, end with "
    "'The answer is X'."
)


def synthesis_messages(messages: Sequence[dict], candidates: Sequence[str]) -> list[dict]:
    """Symbolic-MoE's aggregation step (which follows Mixture-of-Agents): the aggregator sees the
    conversation, then the question once more with the candidates' answers, numbered, and is
    asked for one answer. The conversation's last user turn is the question."""
    history = [dict(m) for m in messages]
    last_user = next((i for i in range(len(history) - 1, -1, -1) if history[i].get("role") == "user"), len(history) - 1)
    question = history[last_user].get("content")
    if isinstance(question, list):
        question = "\n".join(str(p.get("text", "")) for p in question if isinstance(p, dict) and p.get("type", "text") == "text")
    listed = "\n\n".join(f"[Answer {i + 1}]\n{text}" for i, text in enumerate(candidates))
    prompt = f"{SYNTHESIS_INSTRUCTION}\n\nQuestion:\n{question}\n\nCandidate answers:\n{listed}\n\nFinal answer:"
    return history[:last_user] + [{"role": "user", "content": prompt}] + history[last_user + 1 :]
