"""Confounder gadgets (Shafran et al., "Rerouting LLM Routers", arXiv 2501.01818).

A gadget is a query-independent sequence of n tokens that, put in front of any query, makes
the router send it to a more expensive expert. It is found by greedy coordinate search
against one router (white-box: the search reads the router's predicted quality and cost):

    gadget <- n random vocabulary words (seeded)
    repeat T times:
        pick one position i at random
        B candidates: the gadget with word i replaced by a random vocabulary word
        embed every candidate + " " + query for the search queries (one batch)
        keep the candidate with the highest objective if it beats the current gadget

The objective, averaged over the search queries, at the router's operating cost weight w:

    rel_cost(chosen) + gap(strong)

- rel_cost: the mean cost of the expert the router picks for "gadget query", divided by the
  most expensive expert's (the expert costs come from the caller: the training data's mean
  cost per model, or the router's mean predicted cost); this is what the attacker is paid in;
- gap(strong) = u(strong) - max_j u(j) <= 0, the utility (1-w) q - w c / c_ref the router
  gives the most expensive expert minus the best utility; 0 when it is chosen. It is smooth
  where the pick is not, so the search has a gradient to climb before any pick moves.

The paper's vocabulary is the target router's tokenizer; here it is the embedding model's
WordPiece vocabulary (what all the routers read) cut to whole alphabetic words of 3+ letters
(about 21k words), so a gadget is a readable, if odd, string. The paper's per-iteration
batch B and iteration count T are parameters; the defaults keep one search at about a
minute or two on a 2-core CPU (T * B * len(queries) embeddings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routers.base import utility
from routers.defence import fill_cost, pick

Embed = Callable[[Sequence[str]], np.ndarray]


def gadget_vocab(tokenizer: Any, min_len: int = 3, max_id: int | None = None) -> list[str]:
    """Whole alphabetic ASCII words of the tokenizer's vocabulary (no '##' pieces), sorted.

    `max_id` keeps only ids below it: BERT's WordPiece vocabulary is ordered by frequency, so
    this is a common-words vocabulary, for a low-rarity ("low-perplexity") gadget that a
    token-rarity filter does not see."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else dict(tokenizer)
    return sorted(w for w, i in vocab.items()
                  if len(w) >= min_len and w.isascii() and w.isalpha() and (max_id is None or i < max_id))


def apply_gadget(gadget: str, texts: Sequence[str], position: str = "prefix") -> list[str]:
    if not gadget:
        return list(texts)
    if position == "prefix":
        return [f"{gadget} {t}" for t in texts]
    if position == "suffix":
        return [f"{t} {gadget}" for t in texts]
    raise ValueError(f"position must be 'prefix' or 'suffix', got {position!r}")


@dataclass
class Objective:
    """Scores gadget candidates against one router at one cost weight (see module doc)."""

    router: Any
    cost_weight: float
    expert_costs: np.ndarray  # [M] mean cost per column of router.predict (ranks the experts)

    def __post_init__(self) -> None:
        self.expert_costs = np.asarray(self.expert_costs, dtype=np.float64)
        self.strong = int(np.argmax(self.expert_costs))
        self.rel = self.expert_costs / self.expert_costs[self.strong]

    def per_query(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(objective [N], chosen [N]) for embeddings of gadget-prefixed queries."""
        est = self.router.predict(np.asarray(embeddings, dtype=np.float32))
        cost = fill_cost(est.cost)
        u = utility(est.quality, cost, self.cost_weight, self.router.cost_ref)
        chosen = pick(est.quality, cost, self.cost_weight, self.router.cost_ref)
        gap = u[:, self.strong] - u.max(axis=1)
        return self.rel[chosen] + gap, chosen

    def __call__(self, embeddings: np.ndarray) -> float:
        return float(self.per_query(embeddings)[0].mean())


@dataclass
class GadgetResult:
    gadget: str
    words: list[str]
    objective: float  # final, on the search queries
    objective_start: float  # the random initial gadget
    objective_empty: float  # no gadget at all
    history: list[float] = field(default_factory=list)  # objective after each iteration
    iterations: int = 0
    accepted: int = 0
    seconds: float = 0.0
    search_queries: int = 0

    def summary(self) -> dict[str, Any]:
        return {"gadget": self.gadget, "objective": round(self.objective, 4), "objective_start": round(self.objective_start, 4),
                "objective_empty": round(self.objective_empty, 4), "iterations": self.iterations, "accepted": self.accepted,
                "search_queries": self.search_queries, "seconds": round(self.seconds, 1)}


def search_gadget(
    objective: Objective,
    embed: Embed,
    queries: Sequence[str],
    vocab: Sequence[str],
    *,
    n_tokens: int = 10,
    iterations: int = 30,
    batch: int = 16,
    seed: int = 0,
    time_budget_s: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> GadgetResult:
    """Greedy coordinate search for a prefix gadget that maximises `objective` over `queries`.

    Deterministic for a given seed, vocabulary, router and embedder, unless `time_budget_s`
    stops it early (then `iterations` in the result says how many ran). It also stops when
    every search query goes to the most expensive expert (the objective's maximum, 1).
    `progress(i, best)` is called after each iteration (for a tqdm bar)."""
    if n_tokens < 1 or iterations < 0 or batch < 1:
        raise ValueError("n_tokens and batch must be >= 1, iterations >= 0")
    rng = np.random.default_rng(seed)
    vocab = list(vocab)
    queries = list(queries)
    started = time.perf_counter()

    def score(gadgets: list[list[str]]) -> np.ndarray:
        texts = [t for g in gadgets for t in apply_gadget(" ".join(g), queries)]
        emb = embed(texts)
        per, _ = objective.per_query(emb)
        return per.reshape(len(gadgets), len(queries)).mean(axis=1)

    empty = float(objective.per_query(embed(queries))[0].mean())
    words = [vocab[i] for i in rng.integers(len(vocab), size=n_tokens)]
    best = float(score([words])[0])
    start = best
    history, accepted, done = [], 0, 0
    for it in range(iterations):
        if best >= 1.0 - 1e-9 or (time_budget_s is not None and time.perf_counter() - started > time_budget_s):
            break
        pos = int(rng.integers(n_tokens))
        picks = rng.choice(len(vocab), size=batch, replace=False)
        candidates = [words[:pos] + [vocab[j]] + words[pos + 1:] for j in picks]
        scores = score(candidates)
        top = int(np.argmax(scores))
        if scores[top] > best:
            best, words = float(scores[top]), candidates[top]
            accepted += 1
        history.append(best)
        done = it + 1
        if progress is not None:
            progress(it, best)
    return GadgetResult(gadget=" ".join(words), words=words, objective=best, objective_start=start, objective_empty=empty,
                        history=history, iterations=done, accepted=accepted,
                        seconds=time.perf_counter() - started, search_queries=len(queries))


def random_gadget(vocab: Sequence[str], n_tokens: int = 10, seed: int = 0) -> str:
    """A control: n random vocabulary words (no search), for 'any odd prefix' vs 'the gadget'."""
    rng = np.random.default_rng([seed, 7919])
    return " ".join(vocab[i] for i in rng.integers(len(vocab), size=n_tokens))
