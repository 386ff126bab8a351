"""GLIDER (arXiv 2410.07172, "Glider: Global and Local Instruction-Driven Expert Router"),
adapted from routing among LoRA experts inside one model to routing among whole LLMs.

The paper's router adds two scores per expert: a global one, the cosine between a task
instruction that an LLM writes for the input and each expert's task description (embedded by
one text encoder), and a local one, a learned per-token gate. Its logits are
local + alpha * global, alpha a scaling hyperparameter. Here:

- Global (faithful in form). The instruction comes from an instruction LLM when one is
  configured: embed its output with `global_from_instruction` and pass the result to
  `estimate(..., global_scores=...)`. By default there is none, and the instruction is the
  query's nearest TASK learned from the training data: one prototype per task label (seeded
  KMeans pseudo-tasks when the data has none), keyed by the unit mean of its prompt
  embeddings, with a text description ("Task <label>: " + its most distinctive TF-IDF terms,
  in params). An expert's description is its own text when given (`descriptions`, e.g.
  LLMRouter's `feature` strings, embedded with the router's embedder, `embed=`), else learned:
  the task prototypes it beats the average expert on, weighted by that margin.
  Which instruction vector meets which description: a learned description is made of mean
  prompt embeddings, so it meets the task's mean prompt embedding. A text description (given,
  or an onboarded card's) meets the unit sum of that and the embedded task description: the
  paper compares instruction text with description text, and the word list adds what the
  prompts' mean lacks (it doubles the coder's mbpp-vs-winogrande margin in the onboarding
  test), while the mean keeps what a bag of terms misses. Only text needs the embedder, so a
  model with no descriptions trains without one.
  Each expert's cosines are centred on their mean over the training queries: a description
  says where an expert is relatively strong, not how strong, and centring puts text and
  learned descriptions (whose raw cosines sit at different levels) on one footing. The
  centred score per (task, expert) is a table, so serving costs one nearest-task lookup.
- Local (adapted: per query, not per token): an MLP on the query embedding predicting every
  expert's score, fitted by sklearn, run in numpy.
- alpha: chosen from `alpha_grid` on a seeded held-out part of the training rows, by the mean
  true score of the argmax choice (ties to the smaller). The grid starts above 0, so the
  global router always takes part, as in the paper; how much is the data's call.
- Quality (for `decide`, on the score scale): one shared, strictly increasing calibration of
  the logits fitted on the held-out part: sigmoid(a * logit + b) by cross-entropy for scores
  in 0..1 (soft labels allowed), a * logit + b by least squares otherwise. Shared and
  monotone, it keeps the logits' ranking of experts (the w=0 choice alpha was picked for).
  The MLP is then refitted on all training rows and the calibration carried over.
- Cost: a per-model ridge (`LinearCost`), as the mlp router.
- An expert that joins by description (`onboard`; adapted, the paper has no such case): no
  local score, so its logit is base + slope * (its centred global score from the embedded
  description and skills). base: the logit whose calibrated quality is the trained experts'
  mean predicted quality on the held-out part, the same on every query: per-query means of
  the trained experts carry THEIR difficulty profile (on RouterBench every one of them finds
  mbpp hard), which would make any newcomer look best on the easiest task whatever its
  description says. slope: not alpha (which only measures what the global score adds on top
  of a local score), but the least-squares rise of the trained experts' per-task local logits,
  double-centred (task difficulty and overall strength removed), per unit of their centred
  description match, i.e. what a description match has been worth. It is 0 when that is not
  positive: e.g. LLMRouter's `feature` blurbs do not predict where their models are strong,
  so with them given, a newcomer gets a flat quality. The flat base is optimistic on tasks
  every trained expert finds hard: a vaguely described newcomer gets some of that traffic.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from routers.base import (
    Embed,
    Estimates,
    ExpertCard,
    OnboardingError,
    Router,
    cost_reference,
    fill_missing,
    training_costs,
)
from routers.carrot import neighbours
from routers.dataset import RoutingDataset
from routers.linear import LinearCost
from routers.mlp import fit_mlp, mlp_forward

ALPHA_GRID = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
MIN_VALIDATION = 20  # fewer rows than this: alpha and calibration are fitted in-sample
TAIL_CHARS = 400  # of each prompt, for its task's description terms


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (all-zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form


def task_labels(embeddings: np.ndarray, tasks: Sequence[str], n_clusters: int, seed: int) -> list[str]:
    """The data's task labels; without any, seeded KMeans pseudo-tasks on the embeddings."""
    if any(tasks):
        return [t or "unlabelled" for t in tasks]
    from sklearn.cluster import KMeans  # noqa: PLC0415

    k = max(1, min(n_clusters, len(np.unique(embeddings, axis=0))))
    km = KMeans(n_clusters=k, random_state=seed, n_init=4).fit(unit(embeddings))
    return [f"cluster-{c}" for c in km.labels_]


def describe_tasks(prompts: Sequence[str], labels: np.ndarray, names: list[str], n_terms: int) -> list[str]:
    """'Task <name>: t1, t2, ...': the terms whose mean TF-IDF over the task's prompts most
    exceeds their mean over the other prompts. Each prompt's tail only (TAIL_CHARS), where
    few-shot prompts put the actual question, so the shared examples do not fill the list."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    try:
        tfidf = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z]{3,}\b", sublinear_tf=True,
                                min_df=2 if len(prompts) >= 50 else 1)
        weights = tfidf.fit_transform([p[-TAIL_CHARS:] for p in prompts])
        vocab = tfidf.get_feature_names_out()
    except ValueError:  # no words at all
        return [f"Task {n}" for n in names]
    out = []
    for i, name in enumerate(names):
        inside = np.asarray(weights[labels == i].mean(axis=0)).ravel()
        rest = np.asarray(weights[labels != i].mean(axis=0)).ravel() if (labels != i).any() else np.zeros_like(inside)
        lift = inside - rest
        terms = [vocab[j] for j in np.argsort(-lift, kind="stable")[:n_terms] if lift[j] > 0]
        out.append(f"Task {name}: " + ", ".join(terms) if terms else f"Task {name}")
    return out


def prototypes(x: np.ndarray, labels: np.ndarray, n_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit mean prompt embedding [T, D] and training share [T] per task (zero for an absent task)."""
    keys = np.zeros((n_tasks, x.shape[1]), np.float32)
    counts = np.bincount(labels, minlength=n_tasks).astype(np.float32)
    np.add.at(keys, labels, x)
    return unit(keys), counts / max(counts.sum(), 1.0)


def learned_descriptions(keys: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each expert's description vector [M, D]: the task prototypes weighted by how much better
    than the average expert it scores on each task (the best-relative task if it beats none)."""
    n_tasks, m = len(keys), scores.shape[1]
    per_task = np.full((n_tasks, m), np.nan, np.float32)
    for t in range(n_tasks):
        rows = scores[labels == t]
        if len(rows) and np.isfinite(rows).any():
            with warnings.catch_warnings():  # a model with no score on the task: filled below
                warnings.simplefilter("ignore", RuntimeWarning)
                per_task[t] = np.nanmean(rows, axis=0)
    per_task = fill_missing(per_task)  # a missing (task, model) mean -> the model's mean over tasks
    advantage = per_task - per_task.mean(axis=1, keepdims=True)
    weight = np.maximum(advantage, 0.0)
    none = weight.sum(axis=0) <= 0
    weight[np.argmax(advantage[:, none], axis=0), np.flatnonzero(none)] = 1.0
    return unit(weight.T @ keys)


def description_slope(local: np.ndarray, labels: np.ndarray, match: np.ndarray) -> float:
    """How much an expert's local logit rises per unit of centred description match [T, M],
    by least squares over (task, expert) pairs weighted by the task's rows: the local logits
    are averaged per task and double-centred (minus the task's mean over experts: difficulty;
    minus the expert's mean over tasks: overall strength), leaving where each expert is
    relatively strong, which is what a description can say. 0 when undefined or negative."""
    n_tasks = len(match)
    rows = np.bincount(labels, minlength=n_tasks).astype(np.float64)
    if rows.sum() == 0 or local.shape[1] < 2:
        return 0.0
    mean = np.zeros((n_tasks, local.shape[1]))
    np.add.at(mean, labels, local)
    mean /= np.maximum(rows, 1)[:, None]
    share = rows / rows.sum()
    rel = mean - mean.mean(axis=1, keepdims=True)
    rel -= share @ rel
    denom = float(share @ (match**2).sum(axis=1))
    return max(0.0, float(share @ (match * rel).sum(axis=1)) / denom) if denom > 1e-12 else 0.0


def fit_calibration(z: np.ndarray, y: np.ndarray, link: str, ridge: float = 1e-2) -> tuple[float, float]:
    """(a, b) of the shared map q = f(a * z + b), f = sigmoid or identity; a > 0 always."""
    z, y = z.astype(np.float64), y.astype(np.float64)
    if len(z) == 0:
        return 1.0, 0.0
    design = np.stack([z, np.ones_like(z)], axis=1)
    if link == "identity":
        theta = np.linalg.solve(design.T @ design + ridge * np.eye(2), design.T @ y)
    else:
        theta = np.array([1.0, 0.0])
        for _ in range(50):  # Newton on the (convex) cross-entropy, a small ridge keeps it finite
            p = sigmoid(design @ theta)
            grad = design.T @ (p - y) + ridge * theta
            hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.abs(step).max() < 1e-9:
                break
    a, b = float(theta[0]), float(theta[1])
    return (a, b) if a > 1e-3 else (1e-3, b)  # strictly increasing: the argmax of the logits stays the choice


class GliderRouter(Router):
    kind = "glider"

    def __init__(self, models: list[str], cost_ref: float = 1.0, descriptions: dict[str, str] | None = None,
                 alpha: float | None = None, alpha_grid: Sequence[float] = ALPHA_GRID, hidden: int = 128, l2: float = 1e-3,
                 seed: int = 0, max_iter: int = 200, val_fraction: float = 0.2, n_clusters: int = 8, n_terms: int = 8,
                 embed: Embed | None = None, **params: Any) -> None:
        super().__init__(models, cost_ref, descriptions=dict(descriptions or {}), alpha=None if alpha is None else float(alpha),
                         alpha_grid=[float(a) for a in alpha_grid], hidden=int(hidden), l2=float(l2), seed=int(seed),
                         max_iter=int(max_iter), val_fraction=float(val_fraction), n_clusters=int(n_clusters),
                         n_terms=int(n_terms), **params)
        self.embed = embed  # runtime only, not saved: embeds `descriptions` (and task descriptions) at fit time
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self.keys = np.zeros((0, 0), np.float32)  # [T, D] task prototypes: unit mean prompt embeddings
        self.share = np.zeros(0, np.float32)  # [T] each task's share of the training rows
        self.experts = np.zeros((len(models), 0), np.float32)  # [M, D] expert description vectors
        self.centre = np.zeros(len(models), np.float32)  # [M] each expert's mean cosine over training queries
        self.table = np.zeros((0, len(models)), np.float32)  # [T, M] centred global score per (task, expert)
        self.calib = np.array([1.0, 0.0], np.float32)  # (a, b) of the shared calibration
        self.card = np.zeros(2, np.float32)  # (base logit, description slope) for experts known by description
        self.cost = LinearCost()

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"] or 0.0)

    @property
    def link(self) -> str:
        return str(self.params.get("link", "sigmoid"))

    # -- fitting --------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> GliderRouter:
        costs = training_costs(data, self.kind)
        p = self.params
        x = np.asarray(embeddings, np.float32)
        scores = np.asarray(data.scores, np.float32)
        known = np.isfinite(scores)
        in_unit = bool(known.any()) and float(scores[known].min()) >= 0.0 and float(scores[known].max()) <= 1.0
        p["link"] = "sigmoid" if in_unit else "identity"

        raw = task_labels(x, data.tasks, p["n_clusters"], p["seed"])
        names = sorted(set(raw))
        labels = np.array([names.index(t) for t in raw], np.int64)
        p["tasks"] = names
        p["task_descriptions"] = describe_tasks(data.prompts, labels, names, p["n_terms"])
        described, task_text = self._described_vectors(x.shape[1])

        # Hold out a seeded part to choose alpha and fit the calibration on logits the MLP has not seen.
        order = np.random.default_rng(p["seed"]).permutation(len(x))
        n_val = int(round(p["val_fraction"] * len(x))) if len(x) >= MIN_VALIDATION else 0
        val, part = (order[:n_val], order[n_val:]) if n_val else (order, order)
        self._set_global(x[part], labels[part], scores[part], len(names), described, task_text)
        self.weights, self.biases = fit_mlp(x[part], fill_missing(scores[part]), p["hidden"], p["l2"], p["seed"], p["max_iter"])
        local, glob = self.local_scores(x[val]), self.global_scores(x[val])
        if p["alpha"] is None:
            p["val_scores"] = {str(a): round(self._choice_score(local + a * glob, scores[val]), 6) for a in p["alpha_grid"]}
            p["alpha"] = max(p["alpha_grid"], key=lambda a: (p["val_scores"][str(a)], -a))
        z = local + self.alpha * glob
        self.calib = np.array(fit_calibration(z[known[val]], scores[val][known[val]], p["link"]), np.float32)
        base = self._uncalibrate(float(self.calibrate(z).mean())) if z.size else 0.0

        # Final state from every training row; the calibration carries over.
        self._set_global(x, labels, scores, len(names), described, task_text)
        if n_val:
            self.weights, self.biases = fit_mlp(x, fill_missing(scores), p["hidden"], p["l2"], p["seed"], p["max_iter"])
        # The description slope from per-task means over all rows (in-sample, but an MLP's task
        # means sit close to the truth, and the held-out part alone is thin per task).
        self.card = np.array([base, description_slope(self.local_scores(x), labels, self.table)], np.float32)
        self.cost.fit(x, costs)
        self.cost_ref = cost_reference(costs)
        return self

    def _embedder(self) -> Embed:
        if self.embed is None:
            from routers.embedder import DEFAULT_MODEL, Embedder  # noqa: PLC0415 - heavy, only when texts need it

            self.embed = Embedder(str(self.params.get("embedding_model") or DEFAULT_MODEL)).encode
        return self.embed

    def _described_vectors(self, dim: int) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        """Embedded `descriptions` of the trained models that have one, by column, and the
        embedded task descriptions they are compared with (None when no model has one)."""
        given = {i: self.params["descriptions"][m] for i, m in enumerate(self.models) if self.params["descriptions"].get(m)}
        if not given:
            return {}, None
        vecs = np.asarray(self._embedder()(list(given.values())), np.float32)
        if vecs.shape[1] != dim:
            raise ValueError(f"glider: description embeddings have {vecs.shape[1]} dimensions, the prompts {dim}: "
                             "pass the embedder the prompts were embedded with (embed=...)")
        return dict(zip(given, unit(vecs))), unit(np.asarray(self._embedder()(self.params["task_descriptions"]), np.float32))

    def _set_global(self, x: np.ndarray, labels: np.ndarray, scores: np.ndarray, n_tasks: int,
                    described: dict[int, np.ndarray], task_text: np.ndarray | None) -> None:
        self.keys, self.share = prototypes(x, labels, n_tasks)
        self.experts = learned_descriptions(self.keys, labels, scores)
        cosine = self.keys @ self.experts.T  # [T, M]
        if described:
            # A text description meets each task as text too: the paper compares instruction
            # text with description text, and the word list adds what the mean prompt lacks.
            instruction = unit(self.keys + task_text)
            for i, vec in described.items():
                self.experts[i] = vec
                cosine[:, i] = instruction @ vec
        self.centre = (self.share @ cosine).astype(np.float32)
        self.table = (cosine - self.centre).astype(np.float32)

    @staticmethod
    def _choice_score(logits: np.ndarray, scores: np.ndarray) -> float:
        """Mean true score of each row's argmax (rows whose pick has no recorded score skipped)."""
        if len(logits) == 0:
            return 0.0
        picked = scores[np.arange(len(logits)), np.argmax(logits, axis=1)]
        return float(np.nanmean(picked)) if np.isfinite(picked).any() else 0.0

    # -- scoring --------------------------------------------------------------------------

    def nearest_task(self, embeddings: np.ndarray) -> np.ndarray:
        """Index [B] of each query's nearest task prototype (its default instruction)."""
        return neighbours(np.asarray(embeddings, np.float32), self.keys, 1)[:, 0]

    def global_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[B, M] centred cosine of each query's nearest task with each expert's description."""
        return self.table[self.nearest_task(embeddings)]

    def global_from_instruction(self, instruction_texts: Sequence[str], embed: Embed) -> np.ndarray:
        """[B, M] global scores from an instruction LLM's task instructions (one text per query),
        embedded with the router's embedder; pass them to `estimate(..., global_scores=...)`."""
        if not len(instruction_texts):
            return np.zeros((0, len(self.models)), np.float32)
        return unit(np.asarray(embed(list(instruction_texts)), np.float32)) @ self.experts.T - self.centre

    def local_scores(self, embeddings: np.ndarray) -> np.ndarray:
        return mlp_forward(embeddings, self.weights, self.biases)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        z = self.calib[0] * logits + self.calib[1]
        return (sigmoid(z) if self.link == "sigmoid" else z).astype(np.float32)

    def _uncalibrate(self, quality: float) -> float:
        """The logit whose calibrated quality is `quality`."""
        if self.link == "sigmoid":
            q = min(max(quality, 1e-6), 1 - 1e-6)
            quality = float(np.log(q / (1 - q)))
        return (quality - float(self.calib[1])) / float(self.calib[0])

    def estimate(self, embeddings: np.ndarray, global_scores: np.ndarray | None = None) -> Estimates:
        x = np.asarray(embeddings, np.float32)
        glob = self.global_scores(x) if global_scores is None else np.asarray(global_scores, np.float32)
        return Estimates(quality=self.calibrate(self.local_scores(x) + self.alpha * glob), cost=self.cost.predict(x))

    # -- experts by description -----------------------------------------------------------

    def card_state(self, card: ExpertCard, embed: Embed) -> np.ndarray:
        """The card's centred global score per task [T], as a text-described trained expert's."""
        text = " ".join(s for s in (card.description, "Skills: " + ", ".join(card.skills) if card.skills else "") if s)
        if not text.strip():
            raise OnboardingError(f"glider needs a description or skills for expert {card.name!r}")
        vecs = np.asarray(embed([text, *self.params["task_descriptions"]]), np.float32)
        if vecs.shape[1] != self.keys.shape[1]:
            raise OnboardingError(f"expert {card.name!r}: description embedding has {vecs.shape[1]} dimensions, "
                                  f"the router {self.keys.shape[1]}")
        cosine = unit(self.keys + unit(vecs[1:])) @ unit(vecs[:1])[0]
        return (cosine - self.share @ cosine).astype(np.float32)

    def card_quality(self, embeddings: np.ndarray, card: ExpertCard, state: np.ndarray) -> np.ndarray:
        glob = state[self.nearest_task(np.asarray(embeddings, np.float32))]
        return self.calibrate(self.card[0] + self.card[1] * glob)

    # -- artifact -------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        layers = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        return {**layers, "keys": self.keys, "share": self.share, "experts": self.experts, "centre": self.centre,
                "table": self.table, "calib": self.calib, "card": self.card, **self.cost.arrays()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        n = sum(1 for k in arrays if k[0] == "w" and k[1:].isdigit())
        self.weights = [arrays[f"w{i}"] for i in range(n)]
        self.biases = [arrays[f"b{i}"] for i in range(n)]
        self.keys, self.share, self.experts = arrays["keys"], arrays["share"], arrays["experts"]
        self.centre, self.table, self.calib, self.card = arrays["centre"], arrays["table"], arrays["calib"], arrays["card"]
        self.cost.load_arrays(arrays)
        if not np.isfinite(self.keys).all():
            raise ValueError("glider artifact: keys contain NaN or inf")
