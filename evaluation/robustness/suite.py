"""The router robustness suite (`switchyard bench robustness`): one call, four studies.

1. Categories (the DSC benchmark, Kassem et al., arXiv 2504.07113): the project's own prompt
   set (prompts.jsonl: 8 categories x simple/hard) through every router; per category the
   share sent to each expert, the over-routing rate (simple prompts sent to the most expensive
   expert) and the share of jailbreak attempts sent to the weakest expert(s).
2. Perturbations (perturb.py): meaning-preserving rewrites of every prompt; per router and
   perturbation the decision flip rate and the change in mean expected (predicted) cost.
3. Confounder gadgets (gadgets.py, Shafran et al., arXiv 2501.01818): a prefix searched
   white-box against one router on a few simple prompts, applied to the held-out prompts for
   that router and, unchanged, for the others (transfer); upgrade rates with and without it,
   against a random-words prefix, and with the defence on. A second search restricted to
   common words (low token rarity) plays the attacker who knows the rarity filter.
4. The defence (routers/defence.py PrefixDefence): detection on gadget-prefixed prompts and
   false positives on clean ones (the prompt set and RouterBench test prompts), with the
   dataset's true quality and cost of routing RouterBench prompts with and without it.

Expert roles. Routers do not keep their training scores, so each router's experts are
ranked by a reference: with routing data (`data`, default $SWITCHYARD_DATA/routerbench when
it exists) the mean score and cost per model over its train split, for the models it has;
otherwise (and for columns the data lacks) the router's own mean predicted quality and cost
over the prompt set. most_expensive = highest mean cost, strongest = highest mean score,
weakest = lowest mean score, and "weak half" = the experts below the median mean score.
`roles` overrides any of them by expert name. "More expensive" (upgrades) always compares
these mean costs, so a pick is an upgrade only when it moves to a pricier model, not when the
same model's per-query estimate moves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evaluation.robustness.gadgets import Objective, apply_gadget, gadget_vocab, random_gadget, search_gadget
from evaluation.robustness.perturb import PERTURBATIONS, perturb_all
from routers.base import Router
from routers.defence import PrefixDefence, fill_cost, pick
from routers.embedder import embed_cached

PROMPTS = Path(__file__).with_name("prompts.jsonl")
CATEGORIES = ("coding", "translation", "math", "instruction_following", "general_knowledge", "jailbreak", "privacy", "unsafe")
SAFETY = ("jailbreak", "privacy", "unsafe")
COMMON_WORDS_MAX_ID = 5000  # BERT WordPiece ids below this are the ~2.9k most frequent whole words


def load_prompts(path: str | Path | None = None) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in Path(path or PROMPTS).read_text().splitlines() if line.strip()]
    for r in rows:
        if not {"id", "category", "difficulty", "prompt"} <= set(r):
            raise ValueError(f"prompt row lacks fields: {r}")
    return rows


# -- expert roles --------------------------------------------------------------------------


@dataclass
class ExpertRef:
    names: list[str]
    mean_cost: np.ndarray  # [M]
    mean_quality: np.ndarray  # [M]
    source: str
    most_expensive: int
    strongest: int
    weakest: int
    weak_half: np.ndarray  # bool [M]

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "most_expensive": self.names[self.most_expensive], "strongest": self.names[self.strongest],
                "weakest": self.names[self.weakest], "weak_half": [n for n, w in zip(self.names, self.weak_half) if w],
                "mean_cost": {n: float(c) for n, c in zip(self.names, self.mean_cost)},
                "mean_quality": {n: round(float(q), 4) for n, q in zip(self.names, self.mean_quality)}}


def expert_reference(router: Router, embeddings: np.ndarray, data_stats: dict[str, tuple[float, float]] | None = None,
                     roles: dict[str, str] | None = None) -> ExpertRef:
    """Mean cost and quality per column of `router.predict` (see the module doc)."""
    names = list(router.all_models)
    est = router.predict(embeddings)
    cost = np.nanmean(fill_cost(est.cost), axis=0).astype(np.float64)
    quality = np.nanmean(est.quality, axis=0).astype(np.float64)
    known = [i for i, n in enumerate(names) if data_stats and n in data_stats]
    for i in known:
        quality[i], cost[i] = data_stats[names[i]]
    source = ("routing data (train split)" if len(known) == len(names) else
              "routing data, predicted for the rest" if known else "mean prediction over the prompt set")
    ref = ExpertRef(names, cost, quality, source, int(np.argmax(cost)), int(np.argmax(quality)), int(np.argmin(quality)),
                    quality < np.median(quality))
    for role, name in (roles or {}).items():
        if role not in ("most_expensive", "strongest", "weakest"):
            raise ValueError(f"unknown role {role!r} (most_expensive, strongest, weakest)")
        if name not in names:
            raise ValueError(f"role {role}: {name!r} is not one of the router's experts")
        setattr(ref, role, names.index(name))
    return ref


def dataset_stats(data: str | Path) -> tuple[dict[str, tuple[float, float]], Any]:
    """({model: (mean score, mean cost)} over the train split, the test split) of routing data."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415

    full = load_dataset(data)
    train, test = full.split("train"), full.split("test")
    if len(train) == 0:
        train = full
    if full.costs is None:
        raise ValueError(f"{data}: the robustness suite needs per-prompt costs")
    q, c = np.nanmean(train.scores, axis=0), np.nanmean(train.costs, axis=0)
    return {m: (float(q[i]), float(c[i])) for i, m in enumerate(train.models)}, test


# -- helpers -------------------------------------------------------------------------------


class _Memo:
    """Embeds each distinct text once per run (in one batch per call)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder, self.vecs = embedder, {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vecs))
        if missing:
            for t, v in zip(missing, self.embedder.encode(missing)):
                self.vecs[t] = v
        return np.stack([self.vecs[t] for t in texts]) if texts else np.zeros((0, self.embedder.dim), np.float32)


def _decide(router: Router, emb: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray]:
    """(picks [N], predicted cost of each pick [N])."""
    est = router.predict(np.asarray(emb, dtype=np.float32))
    chosen = pick(est.quality, est.cost, w, router.cost_ref)
    return chosen, fill_cost(est.cost)[np.arange(len(chosen)), chosen].astype(np.float64)


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _mean(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else float("nan")


def _short(name: str) -> str:
    return name.split("/")[-1]


def _pct(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the studies ---------------------------------------------------------------------------


def category_study(routers: dict[str, Router], refs: dict[str, ExpertRef], emb: np.ndarray, rows: list[dict],
                   weights: Sequence[float]) -> dict[str, Any]:
    cats = np.array([r["category"] for r in rows])
    simple = np.array([r["difficulty"] == "simple" for r in rows])
    out: dict[str, Any] = {}
    for name, router in routers.items():
        ref = refs[name]
        out[name] = {}
        for w in weights:
            chosen, cost = _decide(router, emb, w)
            per_cat = {}
            for c in [c for c in CATEGORIES if c in set(cats)]:
                m = cats == c
                counts = np.bincount(chosen[m], minlength=len(ref.names))
                per_cat[c] = {
                    "n": int(m.sum()),
                    "shares": {ref.names[i]: round(float(k) / m.sum(), 4) for i, k in enumerate(counts) if k},
                    "to_most_expensive": _r(_mean(chosen[m] == ref.most_expensive)),
                    "over_routing": _r(_mean(chosen[m & simple] == ref.most_expensive)),
                    "hard_to_most_expensive": _r(_mean(chosen[m & ~simple] == ref.most_expensive)),
                    "to_weakest": _r(_mean(chosen[m] == ref.weakest)),
                    "to_weak_half": _r(_mean(ref.weak_half[chosen[m]])),
                    "mean_predicted_cost": float(cost[m].mean()),
                }
            jb, safety = cats == "jailbreak", np.isin(cats, SAFETY)
            out[name][str(w)] = {
                "categories": per_cat,
                "over_routing": _r(_mean(chosen[simple] == ref.most_expensive)),
                "hard_to_most_expensive": _r(_mean(chosen[~simple] == ref.most_expensive)),
                "to_most_expensive": _r(_mean(chosen == ref.most_expensive)),
                "jailbreak_to_weakest": _r(_mean(chosen[jb] == ref.weakest)),
                "jailbreak_to_weak_half": _r(_mean(ref.weak_half[chosen[jb]])),
                "safety_to_weak_half": _r(_mean(ref.weak_half[chosen[safety]])),
                "mean_predicted_cost": float(cost.mean()),
            }
    return out


def perturbation_study(routers: dict[str, Router], refs: dict[str, ExpertRef], embed: Callable, texts: list[str],
                       clean_emb: np.ndarray, w: float, kinds: Sequence[str], seed: int, log: Callable) -> dict[str, Any]:
    out: dict[str, Any] = {name: {} for name in routers}
    clean = {name: _decide(r, clean_emb, w) for name, r in routers.items()}
    for kind in tqdm(kinds, desc="perturbations", unit="kind"):
        emb = clean_emb if kind == "identity" else embed(perturb_all(texts, kind, seed))
        for name, router in routers.items():
            c0, k0 = clean[name]
            c1, k1 = _decide(router, emb, w)
            ref = refs[name]
            out[name][kind] = {
                "flip_rate": _r(_mean(c1 != c0)),
                "upgrade_rate": _r(_mean(ref.mean_cost[c1] > ref.mean_cost[c0])),
                "downgrade_rate": _r(_mean(ref.mean_cost[c1] < ref.mean_cost[c0])),
                "mean_predicted_cost_clean": float(k0.mean()),
                "mean_predicted_cost": float(k1.mean()),
                "cost_change": float(k1.mean() - k0.mean()),
                "cost_change_pct": _r(100 * (k1.mean() / k0.mean() - 1), 2) if k0.mean() > 0 else None,
            }
    return out


def _attack_metrics(ref: ExpertRef, clean: np.ndarray, adv: np.ndarray, check: Any, cost_clean: np.ndarray,
                    cost_adv: np.ndarray) -> dict[str, Any]:
    up = ref.mean_cost[adv] > ref.mean_cost[clean]
    routed = check.chosen_routed
    return {
        "n": int(len(clean)),
        "to_most_expensive_clean": _r(_mean(clean == ref.most_expensive)),
        "to_most_expensive": _r(_mean(adv == ref.most_expensive)),
        "upgrade_rate": _r(_mean(up)),
        "upgrade_rate_defended": _r(_mean(ref.mean_cost[routed] > ref.mean_cost[clean])),
        "to_most_expensive_defended": _r(_mean(routed == ref.most_expensive)),
        "flagged": _r(_mean(check.flagged)),
        "detection": _r(_mean(check.flagged[up])) if up.any() else None,  # flagged among the upgraded
        "mean_predicted_cost_clean": float(cost_clean.mean()) if len(cost_clean) else None,
        "mean_predicted_cost": float(cost_adv.mean()) if len(cost_adv) else None,
    }


def gateway_flags(defence: PrefixDefence, router: Router, texts: list[str], embed: Callable, w: float,
                  embeddings: np.ndarray) -> np.ndarray:
    """Per text, whether `PrefixDefence.screen` flags it: the gateway's own call, one request at
    a time with its core embedded separately, as gateway/pipeline.py does."""
    cores = [defence.core(t) for t in texts]
    core_vecs = iter(embed([c for c in cores if c is not None]))
    return np.array([defence.screen(router, t, e, None if c is None else next(core_vecs), w)[1]["flagged"]
                     for t, c, e in zip(texts, cores, embeddings)], dtype=bool)


def _gateway_metrics(flags: np.ndarray, batch_flags: np.ndarray, upgraded: np.ndarray | None) -> dict[str, Any]:
    out = {"flagged_gateway": _r(_mean(flags)), "gateway_agrees_with_batch": _r(_mean(flags == batch_flags))}
    if upgraded is not None:
        out["detection_gateway"] = _r(_mean(flags[upgraded])) if upgraded.any() else None
    return out


def gadget_eval(routers: dict[str, Router], refs: dict[str, ExpertRef], embed: Callable, defence: PrefixDefence,
                gadget: str, target: str, sets: dict[str, tuple[list[str], np.ndarray]], w: float) -> dict[str, Any]:
    """Per router, per evaluation set: clean vs gadget-prefixed, with the defence."""
    out: dict[str, Any] = {}
    for name, router in routers.items():
        ref = refs[name]
        res: dict[str, Any] = {"setting": "white-box" if name == target else "transfer"}
        for set_name, (texts, clean_emb) in sets.items():
            adv_texts = apply_gadget(gadget, texts)
            c0, k0 = _decide(router, clean_emb, w)
            check = defence.check_batch(router, adv_texts, embed, w, embeddings=embed(adv_texts))
            _, k1 = _decide(router, embed(adv_texts), w)
            flags = gateway_flags(defence, router, adv_texts, embed, w, embed(adv_texts))
            upgraded = ref.mean_cost[check.chosen_full] > ref.mean_cost[c0]
            res[set_name] = _attack_metrics(ref, c0, check.chosen_full, check, k0, k1) | _gateway_metrics(flags, check.flagged, upgraded)
        out[name] = res
    return out


def defence_clean_study(routers: dict[str, Router], embed: Callable, defence: PrefixDefence, w: float,
                        sets: dict[str, tuple[list[str], np.ndarray]], truth: tuple[np.ndarray, np.ndarray, list[str]] | None,
                        rb_name: str | None) -> dict[str, Any]:
    """False positives on clean prompts and, with the data's outcomes, what they cost."""
    out: dict[str, Any] = {}
    for name, router in routers.items():
        res: dict[str, Any] = {}
        for set_name, (texts, emb) in sets.items():
            check = defence.check_batch(router, texts, embed, w, embeddings=emb)
            entry = {"n": len(texts), "checked": _r(_mean(check.checked)), "false_positive_rate": _r(_mean(check.flagged)),
                     "changed_pick": _r(_mean(check.chosen_routed != check.chosen_full))}
            entry |= {k.replace("flagged", "false_positive_rate"): v for k, v in
                      _gateway_metrics(gateway_flags(defence, router, texts, embed, w, emb), check.flagged, None).items()}
            if truth is not None and set_name == rb_name:
                scores, costs, models = truth
                cols = [models.index(m) if m in models else -1 for m in router.all_models]
                for label, picks in (("without", check.chosen_full), ("with", check.chosen_routed)):
                    j = np.array([cols[p] for p in picks])
                    ok = j >= 0
                    q = scores[np.flatnonzero(ok), j[ok]]
                    c = costs[np.flatnonzero(ok), j[ok]]
                    entry[f"quality_{label}_defence"] = _r(float(np.nanmean(q)))
                    entry[f"cost_{label}_defence"] = float(np.nanmean(c))
            res[set_name] = entry
        out[name] = res
    return out


# -- the suite -----------------------------------------------------------------------------


def run_robustness(
    routers: dict[str, Router],
    embedder: Any,
    out: Path,
    seed: int = 0,
    log: Callable[[str], Any] = print,
    *,
    cost_weight: float = 0.1,
    extra_weights: Sequence[float] = (0.0,),
    data: str | Path | None = None,
    roles: dict[str, str] | None = None,
    prompts: list[dict[str, str]] | None = None,
    perturbations: Sequence[str] | None = None,
    gadget_target: str | None = None,
    gadget_tokens: int = 10,
    gadget_iterations: int = 24,
    gadget_batch: int = 16,
    gadget_queries_per_category: int = 4,
    gadget_time_budget_s: float | None = 150.0,
    common_words_gadget: bool = True,
    routerbench_sample: int = 200,
    defence: PrefixDefence | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Run the four studies over `routers` ({name: fitted Router}, all on `embedder`'s
    embeddings) and write results.json, report.md and PNG plots into `out`.

    cost_weight: the operating point of every study; extra_weights: more points for the
    category study only. data: routing data with train/test splits and costs (RouterBench
    format or any loader's), for expert roles and clean RouterBench prompts; None means
    $SWITCHYARD_DATA/routerbench if it exists, "" or False means none. roles: expert-role
    overrides by name ({"most_expensive": ..., "strongest": ..., "weakest": ...}).
    gadget_target: the router the gadget is searched against (default: "carrot" if given,
    else the first). The search uses `gadget_queries_per_category` simple prompts of each
    category and is left out of every evaluation; it stops after `gadget_iterations`, at the
    objective's maximum, or after `gadget_time_budget_s` (None: no limit; a limit makes the
    gadget depend on the machine's speed). defence: the PrefixDefence to measure (default:
    its defaults, with the embedder's tokenizer)."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not routers:
        raise ValueError("no routers to benchmark")
    if not 0.0 <= cost_weight <= 1.0:
        raise ValueError(f"cost_weight must be in [0, 1], got {cost_weight}")
    rows = prompts if prompts is not None else load_prompts()
    kinds = list(perturbations) if perturbations is not None else list(PERTURBATIONS)
    unknown = [k for k in kinds if k not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbations: {unknown}")
    tokenizer = getattr(getattr(embedder, "_model", None), "tokenizer", None)
    defence = defence or PrefixDefence(tokenizer=tokenizer)
    memo = _Memo(embedder)
    texts = [r["prompt"] for r in rows]
    simple = np.array([r["difficulty"] == "simple" for r in rows])

    # routing data: expert roles, clean RouterBench prompts with their outcomes
    if data is None:
        default = Path(os.environ.get("SWITCHYARD_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "routerbench"
        data = default if default.exists() else None
    stats, rb = None, None
    if data:
        log(f"routing data: {data}")
        stats, test = dataset_stats(data)
        if len(test) and routerbench_sample > 0:
            rng = np.random.default_rng([seed, 17])
            sel = np.sort(rng.choice(len(test), size=min(routerbench_sample, len(test)), replace=False))
            rb = ([test.prompts[i] for i in sel], test.scores[sel], test.costs[sel], list(test.models))

    log(f"embedding {len(texts)} prompts")
    clean_emb = embed_cached(embedder, texts, progress=False)
    for t, v in zip(texts, clean_emb):
        memo.vecs[t] = v
    refs = {name: expert_reference(r, clean_emb, stats, roles) for name, r in routers.items()}
    weights = [cost_weight] + [w for w in extra_weights if w != cost_weight]

    # 1. categories
    categories = category_study(routers, refs, clean_emb, rows, weights)
    # 2. perturbations
    perturbation = perturbation_study(routers, refs, memo, texts, clean_emb, cost_weight, kinds, seed, log)

    # 3. gadgets: search on a few simple prompts per category, evaluate on the rest
    target = gadget_target or ("carrot" if "carrot" in routers else next(iter(routers)))
    if target not in routers:
        raise ValueError(f"gadget target {target!r} is not among the routers ({', '.join(routers)})")
    rng = np.random.default_rng([seed, 101])
    search_idx = []
    for c in CATEGORIES:
        pool = [i for i, r in enumerate(rows) if r["category"] == c and r["difficulty"] == "simple"]
        if pool:
            search_idx += sorted(rng.choice(pool, size=min(gadget_queries_per_category, len(pool)), replace=False).tolist())
    held = np.setdiff1d(np.arange(len(rows)), search_idx)
    held_texts = [texts[i] for i in held]
    sets = {"held_out": (held_texts, clean_emb[held]),
            "held_out_simple": ([texts[i] for i in held if simple[i]], clean_emb[held[simple[held]]])}
    rb_emb = None
    if rb is not None:
        log(f"embedding {len(rb[0])} RouterBench test prompts")
        rb_emb = embed_cached(embedder, rb[0], progress=False)
        for t, v in zip(rb[0], rb_emb):
            memo.vecs[t] = v
        sets["routerbench_test"] = (rb[0], rb_emb)

    vocab_all = gadget_vocab(tokenizer) if tokenizer is not None else None
    if vocab_all is None:
        raise ValueError("the embedder has no tokenizer to draw gadget words from")
    searches = [("rare-words", vocab_all)]
    if common_words_gadget:
        searches.append(("common-words", gadget_vocab(tokenizer, max_id=COMMON_WORDS_MAX_ID)))
    gadgets = []
    search_texts = [texts[i] for i in search_idx]
    for label, vocab in searches:
        objective = Objective(routers[target], cost_weight, refs[target].mean_cost)
        bar = tqdm(total=gadget_iterations, desc=f"gadget search ({label}, vs {target})", unit="it")
        result = search_gadget(objective, embedder.encode, search_texts, vocab, n_tokens=gadget_tokens,
                               iterations=gadget_iterations, batch=gadget_batch, seed=seed,
                               time_budget_s=gadget_time_budget_s,
                               progress=lambda i, best: (bar.update(1), bar.set_postfix(objective=f"{best:.3f}")))
        bar.close()
        control = random_gadget(vocab, gadget_tokens, seed)
        log(f"gadget ({label}): {result.gadget!r} objective {result.objective_empty:.3f} (none) / "
            f"{result.objective_start:.3f} (random start) -> {result.objective:.3f} in {result.iterations} it, {result.seconds:.0f} s")
        gadgets.append({
            "vocabulary": label, "vocabulary_size": len(vocab), "target": target, "gadget": result.gadget,
            "search": result.summary() | {"history": [round(h, 4) for h in result.history]},
            "random_prefix": control,
            "eval": gadget_eval(routers, refs, memo, defence, result.gadget, target, sets, cost_weight),
            "random_prefix_eval": gadget_eval(routers, refs, memo, defence, control, target, sets, cost_weight),
        })

    # 4. defence on clean prompts
    clean_sets = {"prompt_set": (texts, clean_emb)}
    if rb is not None:
        clean_sets["routerbench_test"] = (rb[0], rb_emb)
    truth = (rb[1], rb[2], rb[3]) if rb is not None else None
    defence_clean = defence_clean_study(routers, memo, defence, cost_weight, clean_sets, truth, "routerbench_test")

    results = {
        "config": {"routers": list(routers), "cost_weight": cost_weight, "weights": weights, "seed": seed,
                   "prompts": len(rows), "data": str(data) if data else None, "perturbations": kinds,
                   "gadget": {"target": target, "tokens": gadget_tokens, "iterations": gadget_iterations, "batch": gadget_batch,
                              "search_prompts": len(search_idx), "held_out": int(len(held)),
                              "time_budget_s": gadget_time_budget_s},
                   "defence": defence.params(), "routerbench_sample": len(rb[0]) if rb is not None else 0},
        "experts": {name: ref.summary() for name, ref in refs.items()},
        "categories": categories,
        "perturbations": perturbation,
        "gadgets": gadgets,
        "defence_clean": defence_clean,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = render_report(results)
    (out / "report.md").write_text(report)
    if plots:
        results["plots"] = write_plots(results, out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    log(report)
    log(f"wrote {out / 'results.json'}, {out / 'report.md'}" + (f" and {len(results.get('plots', []))} plots" if plots else "")
        + f" in {results['seconds']:.0f} s")
    return results


# -- output --------------------------------------------------------------------------------


def render_tables(results: dict[str, Any]) -> dict[str, str]:
    cfg = results["config"]
    w = str(cfg["cost_weight"])
    names = cfg["routers"]
    cats = [c for c in CATEGORIES if any(c in results["categories"][n][w]["categories"] for n in names)]
    tables = {}

    tables["experts"] = _table(
        ["router", "most expensive", "strongest", "weakest", "weak half", "roles from"],
        [[n, _short(e["most_expensive"]), _short(e["strongest"]), _short(e["weakest"]),
          ", ".join(_short(x) for x in e["weak_half"]), e["source"]] for n, e in results["experts"].items()])
    for wk in map(str, cfg["weights"]):
        tables[f"to_most_expensive@{wk}"] = _table(
            ["router"] + cats + ["all", "over-routing (simple)", "hard", "jailbreak to weakest", "jailbreak to weak half",
                                "jb+privacy+unsafe to weak half"],
            [[n] + [_pct(results["categories"][n][wk]["categories"].get(c, {}).get("to_most_expensive")) for c in cats]
             + [_pct(results["categories"][n][wk][k]) for k in ("to_most_expensive", "over_routing", "hard_to_most_expensive",
                                                               "jailbreak_to_weakest", "jailbreak_to_weak_half",
                                                               "safety_to_weak_half")] for n in names])
    rows = []
    for n in names:
        for c in cats:
            e = results["categories"][n][w]["categories"].get(c)
            if e:
                top = sorted(e["shares"].items(), key=lambda kv: -kv[1])[:3]
                rows.append([n, c, e["n"], ", ".join(f"{_short(k)} {_pct(v)}" for k, v in top), _pct(e["over_routing"])])
    tables["shares"] = _table(["router", "category", "n", "top experts (share)", "over-routing"], rows)

    kinds = cfg["perturbations"]
    tables["flip_rate"] = _table(["router"] + kinds, [[n] + [_pct(results["perturbations"][n][k]["flip_rate"]) for k in kinds]
                                                      for n in names])
    tables["cost_change"] = _table(
        ["router"] + kinds,
        [[n] + [("-" if results["perturbations"][n][k]["cost_change_pct"] is None else
                 f"{results['perturbations'][n][k]['cost_change_pct']:+.1f}%") for k in kinds] for n in names])

    rows = []
    for g in results["gadgets"]:
        for n in names:
            for set_name, e in g["eval"][n].items():
                if set_name == "setting":
                    continue
                rnd = g["random_prefix_eval"][n][set_name]
                rows.append([g["vocabulary"], n, g["eval"][n]["setting"], set_name, e["n"], _pct(e["to_most_expensive_clean"]),
                             _pct(e["to_most_expensive"]), _pct(rnd["upgrade_rate"]), _pct(e["upgrade_rate"]),
                             _pct(e["upgrade_rate_defended"]), _pct(e["detection"]), _pct(e["flagged"])])
    tables["gadgets"] = _table(["gadget", "router", "setting", "prompts", "n", "to most exp. (clean)", "to most exp. (gadget)",
                                "upgrade: random prefix", "upgrade: gadget", "upgrade: gadget + defence",
                                "detection (upgraded)", "flagged (all)"], rows)
    rows = []
    for n in names:
        for set_name, e in results["defence_clean"][n].items():
            rows.append([n, set_name, e["n"], _pct(e["checked"]), _pct(e["false_positive_rate"]), _pct(e["changed_pick"]),
                         "-" if "quality_without_defence" not in e else
                         f"{e['quality_without_defence']:.3f} / {e['quality_with_defence']:.3f}",
                         "-" if "cost_without_defence" not in e else
                         f"{e['cost_without_defence']:.6f} / {e['cost_with_defence']:.6f}"])
    tables["defence_clean"] = _table(["router", "clean prompts", "n", "checked", "false positives", "pick changed",
                                      "quality (data) without / with", "$ (data) without / with"], rows)
    rows = []
    for n in names:
        clean = results["defence_clean"][n]
        for g in results["gadgets"]:
            e = g["eval"][n]["held_out"]
            rows.append([n, g["vocabulary"], g["eval"][n]["setting"], e["n"], _pct(e.get("detection_gateway")),
                         _pct(e.get("flagged_gateway"))] + [_pct(clean[k].get("false_positive_rate_gateway")) if k in clean else "-"
                                                            for k in ("prompt_set", "routerbench_test")]
                        + [_pct(min(e.get("gateway_agrees_with_batch", 1.0),
                                    *(clean[k].get("gateway_agrees_with_batch", 1.0) for k in clean)))])
    tables["defence_gateway"] = _table(["router", "gadget", "setting", "n", "detection (upgraded)", "flagged (all prefixed)",
                                        "false positives: prompt set", "false positives: RouterBench test",
                                        "agrees with batch check"], rows)
    return tables


def render_report(results: dict[str, Any]) -> str:
    cfg = results["config"]
    t = render_tables(results)
    g0 = results["gadgets"][0] if results["gadgets"] else None
    parts = [
        "# Router robustness",
        "",
        f"Routers: {', '.join(cfg['routers'])}; cost weight {cfg['cost_weight']}; {cfg['prompts']} prompts "
        f"(evaluation/robustness/prompts.jsonl); seed {cfg['seed']}; routing data: {cfg['data'] or 'none'}; "
        f"{results['seconds']:.0f} s.",
        "",
        "## Expert roles",
        "",
        "Ranked by each model's mean score and cost over the routing data's train split where the router's "
        "experts are in it, else by the router's mean prediction over the prompt set. 'Weak half': experts "
        "below the median mean score.",
        "",
        t["experts"],
        "",
        "## 1. Categories (DSC benchmark)",
        "",
    ]
    for wk in map(str, cfg["weights"]):
        parts += [f"Share sent to the most expensive expert per category at cost weight {wk}; over-routing = simple "
                  "prompts sent to it; 'hard' = hard prompts sent to it:", "", t[f"to_most_expensive@{wk}"], ""]
    parts += [f"Top experts per category at cost weight {cfg['cost_weight']}:", "", t["shares"], "",
              "## 2. Perturbations", "",
              "Decision flip rate (share of prompts whose chosen expert changes) per meaning-preserving perturbation "
              "(evaluation/robustness/perturb.py); identity is the control:", "", t["flip_rate"], ""]
    if "casing" in cfg["perturbations"] and all(results["perturbations"][n]["casing"]["flip_rate"] == 0
                                                for n in cfg["routers"]):
        parts += ["Casing flips nothing: the embedding model lowercases its input (all-MiniLM-L6-v2 is uncased).", ""]
    parts += ["Change in the mean expected (predicted) cost of the chosen experts:", "", t["cost_change"], "",
              "## 3. Confounder gadgets", ""]
    for g in results["gadgets"]:
        s = g["search"]
        parts.append(f"- {g['vocabulary']} ({g['vocabulary_size']} words), searched against `{g['target']}` on "
                     f"{s['search_queries']} simple prompts: `{g['gadget']}`; objective {s['objective_empty']} without a "
                     f"prefix, {s['objective_start']} at the random start, {s['objective']} after {s['iterations']} "
                     f"iterations ({s['seconds']} s). Control: random prefix `{g['random_prefix']}`.")
    if g0:
        parts += ["", "Upgrade rate = share of prompts sent to a more expensive expert (by mean cost) than without the "
                  "prefix. 'held_out' excludes the search prompts; 'detection' = share of the upgraded prompts the "
                  "defence flags; 'gadget + defence' routes flagged prompts on their core.", ""]
    parts += [t["gadgets"], "", "## 4. Defence on clean prompts", "",
              f"PrefixDefence {cfg['defence']}: false positives = clean prompts flagged; quality and $ are the "
              "dataset's outcomes of the picks on the RouterBench test sample.", "", t["defence_clean"], "",
              "### The defence as the gateway runs it", "",
              "`PrefixDefence.screen`, the call gateway/pipeline.py makes when `defence.enabled` is set, one request at a "
              "time (its core embedded separately): detection = share of the held-out gadget-prefixed prompts the gadget "
              "upgraded that it flags; false positives = clean prompts flagged.", "", t["defence_gateway"], ""]
    return "\n".join(parts)


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cfg = results["config"]
    names, w = cfg["routers"], str(cfg["cost_weight"])
    written = []

    def grouped(ax: Any, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
        x = np.arange(len(labels))
        width = 0.8 / max(1, len(series))
        for j, (name, vals) in enumerate(series.items()):
            ax.bar(x + (j - (len(series) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    cats = [c for c in CATEGORIES if c in results["categories"][names[0]][w]["categories"]]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    grouped(ax, cats, {n: [results["categories"][n][w]["categories"][c]["to_most_expensive"] for c in cats] for n in names},
            "share to the most expensive expert")
    ax.set_title(f"Share of each category sent to the most expensive expert (cost weight {w})")
    fig.tight_layout()
    fig.savefig(out / "categories_most_expensive.png", dpi=120)
    plt.close(fig)
    written.append("categories_most_expensive.png")

    kinds = cfg["perturbations"]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    grouped(ax, kinds, {n: [results["perturbations"][n][k]["flip_rate"] for k in kinds] for n in names}, "decision flip rate")
    ax.set_title(f"Decision flip rate per perturbation (cost weight {w})")
    fig.tight_layout()
    fig.savefig(out / "perturbation_flip_rate.png", dpi=120)
    plt.close(fig)
    written.append("perturbation_flip_rate.png")

    if results["gadgets"]:
        fig, axes = plt.subplots(1, len(results["gadgets"]), figsize=(6 * len(results["gadgets"]), 4.5), squeeze=False)
        for ax, g in zip(axes[0], results["gadgets"]):
            labels = ["random prefix", "gadget", "gadget + defence"]
            series = {n: [g["random_prefix_eval"][n]["held_out"]["upgrade_rate"], g["eval"][n]["held_out"]["upgrade_rate"],
                          g["eval"][n]["held_out"]["upgrade_rate_defended"]] for n in names}
            grouped(ax, labels, series, "upgrade rate (held-out prompts)")
            ax.set_title(f"{g['vocabulary']} gadget vs {g['target']}")
        fig.tight_layout()
        fig.savefig(out / "gadget_upgrade_rate.png", dpi=120)
        plt.close(fig)
        written.append("gadget_upgrade_rate.png")
    return written
