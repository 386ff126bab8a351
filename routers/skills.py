"""Skill-based routing after Symbolic-MoE (Chen, Yun, Stengel-Eskin, Chen, Bansal: "Symbolic
Mixture-of-Experts: Adaptive Skill-based Routing for Heterogeneous Reasoning", arXiv 2503.05641).

Faithful to the paper (and to the authors' code, github.com/dinobby/Symbolic-MoE):
- each model's profile counts, per skill, +1 for every training prompt with that skill that the
  model got right and -1 for every one it got wrong; here a score s in 0..1 adds 2s - 1, so
  partial credit works, and a missing score (NaN) adds nothing;
- global competence: each model's profile total, shifted when any is negative (x - min + 1, as
  the authors' `normalize_to_probability` does: the +1 keeps the weakest model recruitable),
  raised to the power 1/T with T = 0.5, normalised to sum 1;
- local suitability of a model for a query: the sum of its profile over the query's skills.
  Recruitment weight = local suitability x global competence for the models whose suitability
  is positive, 0 for the others (when none is positive, every suitability is first shifted to a
  minimum of 1). `recruit` takes the top k by weight, `sample` draws k with probabilities
  proportional to the weights, seeded, as the paper does;
- one aggregator per deployment, chosen on the profiling ("validation") data: the training set
  plays that role here, as it also builds the profiles.

Adapted, because no annotator LLM runs offline and the router contract wants quality and cost:
- skills: the paper asks an LLM for 2-5 keywords per prompt and uses the profiling prompts'
  keywords as the vocabulary. Here the vocabulary is learned: k-means (seeded) over the training
  prompt embeddings, each cluster a skill named by the TF-IDF terms that set its prompts apart
  (`skill_names`, kept in the artifact's JSON header). A query's skills are its nearest
  centroid and the next ones, up to `skills_per_query`, within `skill_margin` cosine of it: the
  paper's annotator lists 2-5 keywords that all apply, where a plain top-s would hand a prompt
  far from all but one skill unrelated ones. An annotator LLM plugs in through
  `skills_from_keywords`, which maps free-text keywords to their nearest vocabulary entries by
  embedding, as the paper maps a test prompt's keywords onto the profiled ones:
  `router.quality_from_skills([router.skills_from_keywords(keywords, embed)])`.
- quality: `decide` trades quality on the data's 0..1 scale against cost. The skill score is the
  paper's product with local suitability taken per unit of evidence (divided by the number of
  training outcomes behind it, a per-query constant up to missing scores, so within a query it
  orders models as the sum does): (suitability / evidence) x competence, comparable across
  queries whose skills are big or small clusters. An increasing map per model (isotonic over groups of >= `min_bin` prompts, so a few
  extreme prompts cannot pin an estimate at 0 or 1) takes it to the observed score; the map is
  fitted on cross-fitted skill scores (profiles from the other `folds`), i.e. as on unseen
  prompts. For a trained model the map absorbs its constant competence factor; competence
  still orders `recruit`/`sample` and places onboarded experts on the shared scale.
- aggregator: the paper picks the model that synthesises the experts' answers best; with no
  synthesis outcomes offline, the best mean training score is the proxy (`aggregator`).
- cost: a per-model ridge on the embedding (`LinearCost`), as in the mlp and mf routers.
- experts joining by card (`onboard`): the card's skills (else its description) map to
  vocabulary entries; the expert gets a profile of the typical per-skill magnitude (the median
  |mean right-ness| of the trained profiles) on those skills and 0 elsewhere, the median global
  competence, and as its map the median of the trained models' maps.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels import score_topk
from routers.base import Embed, Estimates, ExpertCard, OnboardingError, Router, cost_reference, training_costs
from routers.dataset import RoutingDataset
from routers.linear import LinearCost

TEMPERATURE = 0.5  # the paper's T for global competence
NAME_TERMS = 3
NAME_CHARS = 1000  # about what the embedder reads of a prompt's tail (256 tokens)

Skills = np.ndarray | Sequence[Sequence[int]]  # per query, vocabulary indices ([B, s] or ragged)


def global_competence(profile: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """[M] from a [K, M] profile: totals, shifted to a minimum of 1 if any is negative, ** (1/T),
    normalised to sum 1 (uniform if all are 0)."""
    total = profile.sum(axis=0).astype(np.float64)
    if total.size == 0:
        return np.zeros(0, np.float32)
    low = total.min()
    scaled = (total - low + 1.0 if low < 0 else total) ** (1.0 / temperature)
    s = scaled.sum()
    return (scaled / s if s > 0 else np.full_like(scaled, 1.0 / len(scaled))).astype(np.float32)


def recruitment_weights(local: np.ndarray, competence: np.ndarray) -> np.ndarray:
    """The paper's per-query weights [B, M] from local suitability [B, M] and competence [M]."""
    if local.size == 0:
        return np.zeros(local.shape, np.float32)
    positive = local > 0
    shifted = local - local.min(axis=1, keepdims=True) + 1.0
    base = np.where(positive.any(axis=1, keepdims=True), np.where(positive, local, 0.0), shifted)
    return (base * competence).astype(np.float32)


def skill_names(prompts: Sequence[str], labels: np.ndarray, n_skills: int) -> list[str]:
    """Each cluster's top TF-IDF terms by lift over the whole set (its own words, not the data's)."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415 - training only

    fallback = [f"skill {i}" for i in range(n_skills)]
    # max_df drops few-shot boilerplate, which recurs across a large share of the prompts.
    vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z]{3,}\b", max_df=0.3, sublinear_tf=True)
    try:
        tfidf = vec.fit_transform([p[-NAME_CHARS:] for p in prompts])
    except ValueError:  # no usable terms at all (e.g. synthetic prompts)
        return fallback
    terms = vec.get_feature_names_out()
    overall = np.asarray(tfidf.mean(axis=0)).ravel()
    names = []
    for c in range(n_skills):
        rows = np.flatnonzero(labels == c)
        lift = np.asarray(tfidf[rows].mean(axis=0)).ravel() - overall if len(rows) else np.zeros(0)
        top = [str(terms[i]) for i in np.argsort(-lift, kind="stable")[:NAME_TERMS] if lift[i] > 0]
        names.append(" ".join(top) or fallback[c])
    return names


def pool_bins(x: np.ndarray, y: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean x, mean y and size of consecutive groups of >= `min_count` points in x order, never
    splitting equal x (a short last group joins the one before). Isotonic regression on these
    rather than on raw points keeps a handful of extreme prompts from pinning a model's top
    estimate at 1 (on RouterBench, raw knots sent 17-28 test prompts at w=0 to claude-v2, the
    weakest model on average; groups of 50 send it 1-3)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order].astype(np.float64), y[order].astype(np.float64)
    ends = np.r_[np.flatnonzero(xs[1:] != xs[:-1]) + 1, len(xs)]  # ends of runs of equal x
    cuts, last = [0], 0
    for end in ends:
        if end - last >= min_count:
            cuts.append(int(end))
            last = end
    if cuts[-1] != len(xs):
        cuts[-1:] = [len(xs)] if len(cuts) > 1 else [0, len(xs)]
    sizes = np.diff(cuts).astype(np.float64)
    return np.add.reduceat(xs, cuts[:-1]) / sizes, np.add.reduceat(ys, cuts[:-1]) / sizes, sizes


@dataclass(frozen=True)
class CardSkills:
    """An onboarded expert's stand-in profile: right-ness [K] on its skills, and competence."""

    rightness: np.ndarray
    competence: float
    skills: tuple[int, ...]


class SkillsRouter(Router):
    """Symbolic-MoE skill routing (see the module docstring for what is faithful and adapted)."""

    kind = "skills"

    def __init__(self, models: list[str], cost_ref: float = 1.0, n_skills: int = 48, skills_per_query: int = 3,
                 skill_margin: float = 0.1, temperature: float = TEMPERATURE, k: int = 3, folds: int = 5, min_bin: int = 50,
                 seed: int = 0, **params: Any) -> None:
        super().__init__(models, cost_ref, n_skills=int(n_skills), skills_per_query=int(skills_per_query),
                         skill_margin=float(skill_margin), temperature=float(temperature), k=int(k), folds=int(folds),
                         min_bin=int(min_bin), seed=int(seed), **params)
        m = len(models)
        self.centroids = np.zeros((0, 0), np.float32)  # [K, D] unit-norm skill vocabulary
        self.profile = np.zeros((0, m), np.float32)  # [K, M] summed 2 * score - 1
        self.counts = np.zeros((0, m), np.float32)  # [K, M] known outcomes behind each entry
        self.competence = np.full(m, 1.0 / max(m, 1), np.float32)  # [M]
        self.cal_x = np.zeros(0, np.float32)  # every model's map knots, concatenated
        self.cal_y = np.zeros(0, np.float32)
        self.cal_offsets = np.zeros(m + 1, np.int64)  # model j's knots: [offsets[j], offsets[j + 1])
        self.cost = LinearCost()

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> SkillsRouter:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - training only (sklearn's dependency)

        # The matrices are small ([N, 384], [384, 384]): one BLAS thread fits in about 0.5 s for
        # 2,000 prompts, while threads that spin on a busy 2-core machine took over 5 s.
        with threadpool_limits(1):
            return self._fit(embeddings, data)

    def _fit(self, embeddings: np.ndarray, data: RoutingDataset) -> SkillsRouter:
        from sklearn.cluster import KMeans  # noqa: PLC0415 - training only
        from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415

        costs = training_costs(data, self.kind)
        if len(data) == 0:
            raise ValueError("skills: no training prompts")
        x = np.asarray(embeddings, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        n_skills = max(1, min(self.params["n_skills"], len(x)))
        with warnings.catch_warnings():  # fewer distinct prompts than skills: duplicate centres are fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_skills, random_state=self.params["seed"], n_init=1).fit(x)
        centres = km.cluster_centers_.astype(np.float32)
        self.centroids = np.ascontiguousarray(centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12))
        self.params["skill_names"] = skill_names(data.prompts, km.labels_, n_skills)

        scores = np.asarray(data.scores, np.float32)
        known = np.isfinite(scores)
        rightness = np.where(known, 2.0 * scores - 1.0, 0.0).astype(np.float32)  # +1 right, -1 wrong, 0 unknown
        member = self._membership(self.query_skills(x))  # [N, K]: each prompt's skills
        self.profile = member.T @ rightness
        self.counts = member.T @ known.astype(np.float32)
        self.competence = global_competence(self.profile, self.params["temperature"])
        self._calibrate(member, rightness, scores)

        means = np.where(known.any(0), np.where(known, scores, 0).sum(0) / np.maximum(known.sum(0), 1), -np.inf)
        self.params["aggregator"] = self.models[int(np.argmax(means))]
        self.cost.fit(np.asarray(embeddings, np.float32), costs)
        self.cost_ref = cost_reference(costs)
        return self

    def _calibrate(self, member: np.ndarray, rightness: np.ndarray, scores: np.ndarray) -> None:
        """Per-model increasing map from skill score to observed score, on cross-fitted scores."""
        from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415 - training only

        n, m = scores.shape
        known = np.isfinite(scores).astype(np.float32)
        folds = min(self.params["folds"], n)
        fold = np.random.default_rng(self.params["seed"]).permutation(n) % max(folds, 1)
        skill = np.zeros((n, m), np.float32)
        for f in range(folds) if folds >= 2 else ():
            out, rest = fold == f, fold != f
            profile, counts = member[rest].T @ rightness[rest], member[rest].T @ known[rest]
            # Competence at the full set's scale: its shift (+1) is not scale-free.
            competence = global_competence(profile * (n / rest.sum()), self.params["temperature"])
            skill[out] = self._skill_score(member[out], profile, counts, competence)
        if folds < 2:  # too few prompts to hold any out: in-sample
            skill = self._skill_score(member, self.profile, self.counts, self.competence)
        xs, ys, offsets = [], [], [0]
        for j in range(m):
            keep = np.isfinite(scores[:, j])
            if keep.any():
                bx, by, bw = pool_bins(skill[keep, j], scores[keep, j], self.params["min_bin"])
                iso = IsotonicRegression(out_of_bounds="clip").fit(bx, by, sample_weight=bw)
                xs.append(iso.X_thresholds_), ys.append(iso.y_thresholds_)
            else:  # no outcomes at all: a flat 0, as fill_missing treats an empty column
                xs.append(np.zeros(1)), ys.append(np.zeros(1))
            offsets.append(offsets[-1] + len(xs[-1]))
        self.cal_x = np.concatenate(xs).astype(np.float32)
        self.cal_y = np.concatenate(ys).astype(np.float32)
        self.cal_offsets = np.asarray(offsets, np.int64)

    @staticmethod
    def _skill_score(member: np.ndarray, profile: np.ndarray, counts: np.ndarray, competence: np.ndarray) -> np.ndarray:
        """Local suitability per unit of evidence, times competence: [B, M]."""
        return (member @ profile) / np.maximum(member @ counts, 1.0) * competence

    # -- skills ----------------------------------------------------------------------------

    @property
    def skill_names(self) -> list[str]:
        return list(self.params.get("skill_names", []))

    @property
    def aggregator(self) -> str:
        """The model to synthesise the recruited experts' answers (best mean training score)."""
        return str(self.params["aggregator"])

    def query_skills(self, embeddings: np.ndarray) -> np.ndarray:
        """Indices [B, s] of each query's skills, the stand-in for annotated keywords: its nearest
        skill and the next nearest up to `skills_per_query` whose cosine is within `skill_margin`
        of it; -1 pads the rest. A prompt far from every other skill has one skill, where plain
        top-s would hand it unrelated ones."""
        return self._nearest_skills(embeddings, self.params["skills_per_query"])

    def _nearest_skills(self, vecs: np.ndarray, s: int) -> np.ndarray:
        s = max(1, min(s, len(self.centroids)))
        sims, idx = score_topk(np.asarray(vecs, np.float32), self.centroids, s, keys_normalized=True)
        sims, idx = sims.numpy(), idx.numpy()
        return np.where(sims >= sims[:, :1] - self.params["skill_margin"], idx, -1)

    def skills_from_keywords(self, keywords: Sequence[str], embed: Embed, per_keyword: int = 1) -> list[int]:
        """Vocabulary entries for free-text keywords (an annotator LLM's, or a card's skills): each
        keyword's nearest skill, as the paper maps keywords (and with `per_keyword` > 1 the next
        ones within `skill_margin`, as for queries), in order, repeats kept (the paper counts a
        keyword as often as it is given)."""
        words = [w.strip() for w in keywords if w.strip()]
        if not words or len(self.centroids) == 0:
            return []
        idx = self._nearest_skills(np.asarray(embed(words), np.float32), per_keyword)
        return [int(i) for i in idx.ravel() if i >= 0]

    def _membership(self, skills: Skills) -> np.ndarray:
        """[B, K]: how often each skill is among each query's skills."""
        out = np.zeros((len(skills), len(self.centroids)), np.float32)
        if isinstance(skills, np.ndarray) and skills.ndim == 2:
            rows, cols = np.nonzero(skills >= 0)  # -1: no skill
            np.add.at(out, (rows, skills[rows, cols].astype(np.int64)), 1.0)
            return out
        for b, row in enumerate(skills):  # ragged: annotated keyword lists
            np.add.at(out[b], np.asarray(row, np.int64), 1.0)
        return out

    def local_suitability(self, skills: Skills) -> np.ndarray:
        """The paper's local suitability [B, M]: each model's profile summed over the query's skills."""
        return self._membership(skills) @ self.profile

    # -- estimates -------------------------------------------------------------------------

    def _map(self, skill: np.ndarray, j: int) -> np.ndarray:
        lo, hi = self.cal_offsets[j], self.cal_offsets[j + 1]
        return np.interp(skill, self.cal_x[lo:hi], self.cal_y[lo:hi]).astype(np.float32)

    def quality_from_skills(self, skills: Skills) -> np.ndarray:
        """Calibrated quality [B, M] for queries given their skills (vocabulary indices)."""
        skill = self._skill_score(self._membership(skills), self.profile, self.counts, self.competence)
        out = np.zeros(skill.shape, np.float32)
        for j in range(skill.shape[1]):
            out[:, j] = self._map(skill[:, j], j)
        return out

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        x = np.asarray(embeddings, np.float32)
        return Estimates(quality=self.quality_from_skills(self.query_skills(x)), cost=self.cost.predict(x))

    def weights(self, embeddings: np.ndarray) -> np.ndarray:
        """The paper's recruitment weights [B, M] (unnormalised)."""
        return recruitment_weights(self.local_suitability(self.query_skills(embeddings)), self.competence)

    def _ranked(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Recruitment weights [B, M] and every model in deterministic recruitment order [B, M]:
        by weight, then local suitability, then model index."""
        local = self.local_suitability(self.query_skills(embeddings))
        w = recruitment_weights(local, self.competence)
        index = np.broadcast_to(np.arange(w.shape[1]), w.shape)
        return w, np.lexsort((index, -local, -w), axis=-1).astype(np.int64)

    def _k(self, k: int | None) -> int:
        return max(1, min(k or self.params["k"], len(self.models)))

    def recruit(self, embeddings: np.ndarray, k: int | None = None) -> np.ndarray:
        """Deterministic recruitment [B, k] (k defaults to the `k` param): the top k by weight."""
        return self._ranked(embeddings)[1][:, : self._k(k)]

    def sample(self, embeddings: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
        """The paper's sampled recruitment [B, k], reproducible for a seed: k distinct models drawn
        with probability proportional to their weights (the authors draw with replacement; a
        router wants distinct models), topped up in `recruit` order if fewer have any weight."""
        w, order = self._ranked(embeddings)
        k = self._k(k)
        rng = np.random.default_rng(seed)
        out = np.zeros((len(w), k), np.int64)
        for b in range(len(w)):
            live = np.flatnonzero(w[b] > 0)
            n = min(k, len(live))
            drawn = [int(i) for i in rng.choice(live, n, replace=False, p=w[b, live] / w[b, live].sum())] if n else []
            out[b] = (drawn + [int(i) for i in order[b] if i not in drawn])[:k]
        return out

    # -- experts by card -------------------------------------------------------------------

    def card_state(self, card: ExpertCard, embed: Embed) -> CardSkills:
        words = list(card.skills) or [s for s in re.split(r"[.;\n]", card.description) if s.strip()]
        # Each phrase takes as many entries as a query has skills, so queries on the expert's
        # topic overlap the card however the vocabulary happened to split that topic.
        skills = sorted(set(self.skills_from_keywords(words, embed, self.params["skills_per_query"])))
        if not skills:
            raise OnboardingError(f"expert {card.name!r}: the skills router needs the card's skills or description")
        per_skill = np.abs(self.profile / np.maximum(self.counts, 1.0))[self.counts > 0]
        rightness = np.zeros(len(self.centroids), np.float32)
        rightness[skills] = float(np.median(per_skill)) if per_skill.size else 1.0
        return CardSkills(rightness=rightness, competence=float(np.median(self.competence)), skills=tuple(skills))

    def card_quality(self, embeddings: np.ndarray, card: ExpertCard, state: CardSkills) -> np.ndarray:
        if len(embeddings) == 0:
            return np.zeros(0, np.float32)
        # Evidence as for any model (every training outcome on the query's skills): right-ness on
        # the card's skills only, so a query half on the expert's topic scores half.
        evidence = self.counts.mean(axis=1)
        member = self._membership(self.query_skills(embeddings))
        profile, counts = (state.rightness * evidence)[:, None], evidence[:, None]
        skill = self._skill_score(member, profile, counts, np.float32(state.competence))[:, 0]
        return np.median(np.stack([self._map(skill, j) for j in range(len(self.models))], axis=1), axis=1)

    # -- artifact --------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "profile": self.profile, "counts": self.counts, "competence": self.competence,
                "cal_x": self.cal_x, "cal_y": self.cal_y, "cal_offsets": self.cal_offsets, **self.cost.arrays()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids, self.profile, self.counts = arrays["centroids"], arrays["profile"], arrays["counts"]
        self.competence = arrays["competence"]
        self.cal_x, self.cal_y, self.cal_offsets = arrays["cal_x"], arrays["cal_y"], arrays["cal_offsets"]
        self.cost.load_arrays(arrays)
        if not np.isfinite(self.centroids).all():
            raise ValueError("skills artifact: centroids contain NaN or inf")
