"""A cheap request-path defence against rerouting prefixes (confounder gadgets).

A confounder gadget (Shafran et al., arXiv 2501.01818) is a query-independent string put in
front of a query so that the router sends it to a more expensive expert. The query still asks
what it asked; only its embedding moved. `PrefixDefence` checks that the decision rests on
the query and not on its opening:

1. Split the text into an opening and a core. Word rarity = the mean log(1 + token id) of a
   word's tokens: the embedding model's WordPiece vocabulary (BERT's, as all-MiniLM-L6-v2
   uses) is ordered by frequency, so a token's id is its frequency rank and this is a
   unigram surprisal (a perplexity-like score without a language model; needs `tokenizer`).
   - If the text opens with a run of rare words (the prefix maximising the sum of
     rarity - `max_rarity`, positive, at least `min_rare_words` long), that run is the
     opening. Natural openings stay below: the project's prompts have no such run; ten
     words drawn from the whole vocabulary average about 9.6 against `max_rarity` 8.9.
   - Otherwise the opening is the first `drop_fraction` of the words (at most `max_drop`),
     cut back to the last sentence or line boundary inside that span when there is one.
   - Without punctuation before the question, the cut moves forward to a capitalised word
     within the next two (a sentence start: a gadget's last word is often a common one).
   Texts of fewer than `min_words` words are not checked (a prefix long enough to reroute
   would be most of them).
2. Embed the core (one extra embedding: the only added cost besides a tokenizer call) and
   let the router pick on both. The request is an *upgrade* when the full text's pick has a
   higher predicted cost (the router's estimate for the full text, more than `margin`
   relative) than the core's pick.
3. Flag an upgrade when either signal says the opening is what moved it:
   - rarity: the opening is a rare-word run (above);
   - consistency: cosine(full, core) < `max_similarity`: the opening pulled the embedding
     away from what the rest of the text says (a clean text's tail mostly stays close).
4. Route a flagged request on its core (`route_text`, `route_embedding`): the cheaper of the
   two decisions, so a clean request wrongly flagged loses only the upgrade its opening
   earned.

Pure functions over numpy: the caller passes the router, `embed(texts) -> [n, D]` (the
router's embedding model) and the cost weight, and may pass the full text's embedding when it
already has it (the gateway does), so a check costs one embedding and two `router.predict`.

    defence = PrefixDefence(tokenizer=embedder._model.tokenizer)      # once
    result = defence.check(router, text, embedder.encode, cost_weight, embedding=vec)
    if result.flagged:
        vec = result.route_embedding        # route on the core; log result.reason

or, embedding the core through one's own (async) batcher:

    core = defence.core(text)               # None: too short, not checked
    core_vec = None if core is None else await query_embedder.embed(core)
    result = defence.check_vectors(router, text, vec, core_vec, cost_weight)

Limits: it looks at the opening only. A gadget at the end or spread through the query is
not caught (the embedder keeps the tail of long texts, so a prefix on a text longer than the
model's window is cut off anyway; a suffix is not). The rarity signal is evaded by a gadget
made of common words (the paper's low-perplexity gadgets); the consistency signal then has
to catch it alone. An attacker who knows the thresholds can optimise against both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routers.base import Router, decide_many

Embed = Callable[[Sequence[str]], np.ndarray]

_BOUNDARY = re.compile(r"[.!?;:]$")


@dataclass(frozen=True)
class DefenceResult:
    flagged: bool
    route_text: str  # the text to route on: the core when flagged, else the text itself
    reason: str
    core_text: str | None = None  # None: not checked (too short)
    route_embedding: np.ndarray | None = None  # embedding of route_text (when known)
    chosen_full: int | None = None  # columns of router.all_models
    chosen_core: int | None = None
    similarity: float | None = None  # cosine(full, core)
    rarity: float | None = None  # mean word rarity (log(1 + token id)) of the opening (None without tokenizer)
    rare_run: int = 0  # words in the rare run opening the text (0: none, or no tokenizer)


@dataclass(frozen=True)
class BatchCheck:
    """`check` over N texts at once (for benchmarks): arrays of length N."""

    flagged: np.ndarray  # bool
    checked: np.ndarray  # bool: long enough to have a core
    upgrade: np.ndarray  # bool: full pick costs more than the core's
    chosen_full: np.ndarray
    chosen_core: np.ndarray  # = chosen_full where not checked
    chosen_routed: np.ndarray  # the pick used: the core's where flagged
    similarity: np.ndarray  # NaN where not checked
    rarity: np.ndarray  # mean word rarity of the opening; NaN where not checked or no tokenizer
    rare_run: np.ndarray  # length of the rare-word run opening the text (0: none)
    cores: list[str | None]


class PrefixDefence:
    """Consistency check of a routing decision against the text without its opening.

    Defaults were set on the project's robustness prompt set (evaluation/robustness) against
    one development gadget, then measured on fresh gadgets, other routers and RouterBench
    test prompts: see the robustness report for detection and false-positive rates."""

    def __init__(self, min_words: int = 10, drop_fraction: float = 0.5, max_drop: int = 24,
                 max_similarity: float = 0.65, max_rarity: float = 8.9, min_rare_words: int = 3,
                 margin: float = 0.0, tokenizer: Any = None) -> None:
        if not 0.0 < drop_fraction < 1.0:
            raise ValueError("drop_fraction must be in (0, 1)")
        if min_words < 2 or max_drop < 1:
            raise ValueError("min_words must be >= 2 and max_drop >= 1")
        self.min_words = int(min_words)
        self.drop_fraction = float(drop_fraction)
        self.max_drop = int(max_drop)
        self.max_similarity = float(max_similarity)
        self.max_rarity = float(max_rarity)
        self.min_rare_words = int(min_rare_words)
        self.margin = float(margin)
        self.tokenizer = tokenizer

    @classmethod
    def for_embedder(cls, embedder: Any, **params: Any) -> PrefixDefence:
        """A defence reading word rarity with `embedder`'s own tokenizer (routers.embedder.Embedder;
        none found: the consistency signal alone)."""
        return cls(tokenizer=getattr(getattr(embedder, "_model", None), "tokenizer", None), **params)

    def params(self) -> dict[str, Any]:
        return {"min_words": self.min_words, "drop_fraction": self.drop_fraction, "max_drop": self.max_drop,
                "max_similarity": self.max_similarity, "max_rarity": self.max_rarity if self.tokenizer is not None else None,
                "margin": self.margin}

    # -- text --------------------------------------------------------------------------

    def split(self, text: str) -> tuple[str, str] | None:
        """(opening, core), or None when the text is too short to check."""
        parts = self._split(text)
        return None if parts is None else parts[:2]

    def _split(self, text: str) -> tuple[str, str, int] | None:
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        n = len(spans)
        if n < self.min_words:
            return None
        # a run of rare words at the start (a gadget) is the opening, whatever its length
        run = self.rare_run([text[a:b] for a, b in spans[: min(self.max_drop, n - 2)]])
        drop, snapped = run, False
        if not run:
            drop = max(1, min(self.max_drop, int(n * self.drop_fraction)))
            # cut back to the last sentence/line boundary inside the dropped span, if that keeps
            # at least half of it, so a clean multi-sentence text loses whole sentences
            for i in range(drop, max(1, drop // 2) - 1, -1):
                start, end = spans[i - 1]
                if _BOUNDARY.search(text[start:end]) or "\n" in text[end:spans[i][0]]:
                    drop, snapped = i, True
                    break
        if not snapped:
            # no punctuation between an opening and the question (a gadget's end is fuzzy: a
            # common word can close it): if a sentence visibly starts within the next two
            # words (a capital letter), cut there
            for j in range(drop, min(drop + 3, n - 1)):
                if text[spans[j][0]].isupper():
                    drop = j
                    break
        cut = spans[drop][0]
        return text[:cut].strip(), text[cut:].strip(), run

    def core(self, text: str) -> str | None:
        parts = self.split(text)
        return None if parts is None else parts[1]

    def word_rarity(self, words: Sequence[str]) -> np.ndarray:
        """Per word, the mean log(1 + token id) of its tokens (NaN without a tokenizer)."""
        if self.tokenizer is None or not words:
            return np.full(len(words), np.nan)
        ids = self.tokenizer(list(words), add_special_tokens=False)["input_ids"]
        return np.array([np.mean(np.log1p(t)) if len(t) else 0.0 for t in ids])

    def rare_run(self, words: Sequence[str]) -> int:
        """Length of the rare opening of `words`: the prefix that maximises the sum of (word
        rarity - `max_rarity`), so it ends where common words take over; 0 when that sum is
        not positive, the prefix is shorter than `min_rare_words`, or there is no tokenizer."""
        r = self.word_rarity(words)
        if not len(r) or np.isnan(r).any():
            return 0
        sums = np.cumsum(r - self.max_rarity)
        run = int(np.argmax(sums)) + 1
        return run if sums[run - 1] > 0 and run >= self.min_rare_words else 0

    def rarity(self, opening: str) -> float:
        """Mean word rarity of `opening` (NaN without a tokenizer or words)."""
        r = self.word_rarity(opening.split())
        return float(np.mean(r)) if len(r) else float("nan")

    # -- one request ---------------------------------------------------------------------

    def check(self, router: Router, text: str, embed: Embed, cost_weight: float,
              embedding: np.ndarray | None = None) -> DefenceResult:
        """Check one request; `embedding` is the full text's (computed with `embed` when None).
        Costs one `embed` call (the core) for texts of at least `min_words` words, none else."""
        core = self.core(text)
        if core is None:
            return DefenceResult(False, text, "not checked: shorter than min_words", None, embedding)
        full = embed([text])[0] if embedding is None else embedding
        return self.check_vectors(router, text, full, embed([core])[0], cost_weight)

    def check_vectors(self, router: Router, text: str, embedding: np.ndarray, core_embedding: np.ndarray | None,
                      cost_weight: float) -> DefenceResult:
        """`check` with both embeddings given (no embedding here): for callers that embed
        through their own batcher, e.g. `core = defence.core(text)`, embed it, then this.
        `core_embedding` None means the text was too short to have a core."""
        parts = self._split(text)
        if parts is None or core_embedding is None:
            return DefenceResult(False, text, "not checked: shorter than min_words", None, embedding)
        opening, core, run = parts
        full = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        core_vec = np.asarray(core_embedding, dtype=np.float32).reshape(1, -1)
        flagged, upgrade, cf, cc, sim = (a[0] for a in self._decide(router, full, core_vec, np.array([run]), cost_weight))
        cf, cc, sim, rare = int(cf), int(cc), float(sim), self.rarity(opening)
        rare_out = None if np.isnan(rare) else rare
        if not flagged:
            why = "consistent" if not upgrade else "upgrade by the opening, but the opening looks natural"
            return DefenceResult(False, text, why, core, full[0], cf, cc, sim, rare_out, run)
        signals = []
        if sim < self.max_similarity:
            signals.append(f"cosine(full, core) {sim:.2f} < {self.max_similarity}")
        if run:
            signals.append(f"it opens with {run} rare words (mean log token rank > {self.max_rarity})")
        reason = (f"prefix upgrade: the full text picks {router.all_models[cf]}, its core {router.all_models[cc]}; "
                  + "; ".join(signals))
        return DefenceResult(True, core, reason, core, core_vec[0], cf, cc, sim, rare_out, run)

    def screen(self, router: Router, text: str, embedding: np.ndarray, core_embedding: np.ndarray | None,
               cost_weight: float) -> tuple[np.ndarray, dict[str, Any]]:
        """What the gateway does with one request (gateway/pipeline.py calls this, and the
        robustness suite measures it): (the embedding to route on, `routing.defence` metadata).
        A flagged request is routed on its core; the expert still gets the request unchanged."""
        r = self.check_vectors(router, text, embedding, core_embedding, cost_weight)
        meta: dict[str, Any] = {"checked": r.core_text is not None, "flagged": r.flagged}
        if not r.flagged:
            return embedding, meta
        dropped = len(text) - len(r.core_text or "")
        return r.route_embedding, meta | {"action": "routed on the query without its opening", "dropped_chars": dropped,
                                          "reason": r.reason}

    # -- many requests (benchmarks) ------------------------------------------------------

    def check_batch(self, router: Router, texts: Sequence[str], embed: Embed | None, cost_weight: float,
                    embeddings: np.ndarray | None = None, core_embeddings: np.ndarray | None = None) -> BatchCheck:
        """`check` over many texts. `embeddings` (full texts) and `core_embeddings` (the
        non-None entries of `[self.core(t) for t in texts]`, in order) may be given; what is
        missing is computed with `embed` in one call each."""
        splits = [self._split(t) for t in texts]
        n = len(texts)
        if embeddings is None:
            embeddings = _need(embed)(list(texts))
        full = np.asarray(embeddings, dtype=np.float32)
        idx = np.array([i for i, s in enumerate(splits) if s is not None], dtype=np.int64)
        est = router.predict(full)
        chosen_full = pick(est.quality, est.cost, cost_weight, router.cost_ref)
        flagged, upgrade = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        chosen_core = chosen_full.copy()
        sim, rare = np.full(n, np.nan), np.full(n, np.nan)
        runs = np.zeros(n, dtype=np.int64)
        if len(idx):
            if core_embeddings is None:
                core_embeddings = _need(embed)([splits[i][1] for i in idx])
            cv = np.asarray(core_embeddings, dtype=np.float32)
            rare[idx] = [self.rarity(splits[i][0]) for i in idx]
            runs[idx] = [splits[i][2] for i in idx]
            f, u, _, cc, s = self._decide(router, full[idx], cv, runs[idx], cost_weight)
            flagged[idx], upgrade[idx], chosen_core[idx], sim[idx] = f, u, cc, s
        checked = np.array([s is not None for s in splits], dtype=bool)
        routed = np.where(flagged, chosen_core, chosen_full)
        return BatchCheck(flagged, checked, upgrade, chosen_full, chosen_core, routed, sim, rare, runs,
                          [None if s is None else s[1] for s in splits])

    def _decide(self, router: Router, full: np.ndarray, core: np.ndarray, runs: np.ndarray, cost_weight: float):
        ef, ec = router.predict(full), router.predict(core)
        cf = pick(ef.quality, ef.cost, cost_weight, router.cost_ref)
        cc = pick(ec.quality, ec.cost, cost_weight, router.cost_ref)
        cost = fill_cost(ef.cost)  # both picks priced by the full text's estimate
        rows = np.arange(len(cf))
        upgrade = cost[rows, cf] > cost[rows, cc] * (1.0 + self.margin)
        sim = np.sum(_unit(full) * _unit(core), axis=1)
        return upgrade & ((sim < self.max_similarity) | (np.asarray(runs) > 0)), upgrade, cf, cc, sim


def _need(embed: Embed | None) -> Embed:
    if embed is None:
        raise ValueError("embed is needed when embeddings are not given")
    return embed


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fill_cost(cost: np.ndarray) -> np.ndarray:
    """Costs [N, M] with NaN (experts the gateway prices itself) set to the row's mean."""
    cost = np.asarray(cost)
    if not np.isnan(cost).any():
        return cost
    row = np.nanmean(np.where(np.isnan(cost).all(1, keepdims=True), 0.0, cost), axis=1, keepdims=True)
    return np.where(np.isnan(cost), row, cost).astype(cost.dtype)


def pick(quality: np.ndarray, cost: np.ndarray, cost_weight: float, cost_ref: float) -> np.ndarray:
    """Chosen column per row [N]: `decide_many` on costs with unpriced columns filled."""
    return decide_many(quality, fill_cost(cost), cost_weight, cost_ref)