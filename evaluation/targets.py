"""The targets table (`switchyard targets`): every router kind against the issue's targets.

(a) RouterBench slice (DIR/routerbench): each kind is fitted on split "train" and swept over
    cost weights on split "test". Columns: AIQ over the single models' cost range, the best
    mean quality of any operating point, and the cheapest operating point whose mean quality
    reaches the reference model's (gpt-4-1106-preview) as a share of that model's cost.
    Reference rows: the single models' hull and the per-prompt oracle.
(b) RouterDC (DIR/routerdc7) and LLMRouter (DIR/llmrouter): each kind's mean test score at
    w=0 against the best single model's (RouterDC's out-of-distribution files have split ''
    and are in neither split).

Writes results.json, report.md and routerbench_curves.png into the output folder. A kind that
fails to fit or evaluate is reported with its reason and left out; it never stops the run.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import (
    DEFAULT_WEIGHTS,
    Point,
    aiq,
    choose,
    cost_at_quality,
    cost_range_of,
    hull,
    oracle_points,
    outcome,
    single_model_points,
    sweep,
    sweep_estimates,
)

REFERENCE_MODEL = "gpt-4-1106-preview"
SECTIONS = {"routerbench": "RouterBench slice", "routerdc7": "RouterDC (7 models)", "llmrouter": "LLMRouter (9 models)"}

Log = Callable[[str], None]


def _embed(embedder, texts: Sequence[str]) -> np.ndarray:  # noqa: ANN001
    from routers.embedder import embed_cached  # noqa: PLC0415 - heavy import

    return embed_cached(embedder, list(texts))


def _fit(kind: str, models: list[str], x: np.ndarray, data, seed: int | None = None):  # noqa: ANN001, ANN202
    from routers.artifacts import build_router  # noqa: PLC0415

    return build_router(kind, models, **({} if seed is None else {"seed": seed})).fit(x, data)


def task_means(train, tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Evaluation-only reference: each prompt estimated by its TRUE task's train means of score
    and cost. What a router earns from knowing the task and nothing about the prompt."""
    t_train, t = np.asarray(train.tasks), np.asarray(tasks)
    overall_q, overall_c = np.nanmean(train.scores, axis=0), np.nanmean(train.costs, axis=0)
    q = np.tile(overall_q, (len(t), 1))
    c = np.tile(overall_c, (len(t), 1))
    for name in np.unique(t):
        seen = t_train == name
        if seen.any():
            q[t == name] = np.nanmean(train.scores[seen], axis=0)
            c[t == name] = np.nanmean(train.costs[seen], axis=0)
    return np.nan_to_num(q), np.nan_to_num(c)


def seeded(kind: str) -> bool:
    """Whether a kind's fit depends on a seed (it takes one): only those get a seed spread."""
    import inspect  # noqa: PLC0415

    from routers.artifacts import ROUTER_KINDS  # noqa: PLC0415

    return "seed" in inspect.signature(ROUTER_KINDS[kind].__init__).parameters


def seed_spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, min and max over seeds; an unreached cost target (None or NaN) counts as unreached."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    ok = v[np.isfinite(v)]
    return {"values": [_rounded(x) for x in v], "mean": _rounded(float(ok.mean())) if len(ok) else None,
            "min": _rounded(float(ok.min())) if len(ok) else None, "max": _rounded(float(ok.max())) if len(ok) else None,
            "reached": int(len(ok)), "runs": int(len(v))}


def _rounded(x: float, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _progress(kinds: list[str], desc: str):  # noqa: ANN202
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(kinds, desc=desc, unit="router", leave=False)


def routerbench_section(folder: Path, kinds: list[str], embedder, log: Log,  # noqa: ANN001
                        weights: Sequence[float] = DEFAULT_WEIGHTS, seeds: int = 1) -> dict[str, Any]:
    """`seeds` > 1: each seeded kind is also refit with seeds 1..seeds-1; its row stays seed 0's
    (the artifact `switchyard train` writes) and gains the spread over all seeds, because on this
    slice the seed moves AIQ about as much as the choice of router does."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from routers.base import cost_reference, fill_missing  # noqa: PLC0415

    data = load_dataset(folder)
    train, test = data.split("train"), data.split("test")
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"{folder}: needs rows in both splits 'train' and 'test'")
    if test.costs is None:
        raise ValueError(f"{folder}: RouterBench data must carry per-prompt costs")
    x_train, x_test = _embed(embedder, train.prompts), _embed(embedder, test.prompts)
    single = single_model_points(test.scores, test.costs)
    lo, hi = cost_range_of(single)
    ref = REFERENCE_MODEL if REFERENCE_MODEL in data.models else data.models[int(np.nanargmax([q for _, q in single]))]
    ref_cost, ref_quality = single[data.models.index(ref)]

    def row(points: list[Point] | list[tuple[float, float]], **extra: Any) -> dict[str, Any]:
        costs = [p.cost if isinstance(p, Point) else p[0] for p in points]
        quals = [p.quality if isinstance(p, Point) else p[1] for p in points]
        if isinstance(points[0], Point):
            at = cost_at_quality(points, ref_quality)
        else:  # single models: the cheapest model as good as the reference
            ok = [c for c, q in zip(costs, quals) if q >= ref_quality]
            at = min(ok) if ok else float("nan")
        hc, hq = hull(costs, quals)
        return {"aiq": _rounded(aiq(costs, quals, (lo, hi))), "best_quality": _rounded(float(np.nanmax(quals))),
                "cost_at_ref_quality": _rounded(at / ref_cost if math.isfinite(at) else float("nan")),
                "curve": [[float(c), float(q)] for c, q in zip(costs, quals)],
                "hull": [[float(c), float(q)] for c, q in zip(hc, hq)], **extra}

    rows: dict[str, dict[str, Any]] = {}
    rows["single models (hull)"] = row(single, kind="reference",
                                       models={m: {"cost": _rounded(c, 8), "quality": _rounded(q)}
                                               for m, (c, q) in zip(data.models, single)})
    orc = oracle_points(test.scores, test.costs, weights)
    rows["oracle"] = row(orc, kind="reference", quality_at_w0=_rounded(orc[0].quality))
    tq, tc = task_means(train, test.tasks)
    by_task = sweep_estimates(tq, tc, cost_reference(fill_missing(train.costs)), test.scores, test.costs, weights)
    rows["task means (true task)"] = row(by_task, kind="reference", quality_at_w0=_rounded(by_task[0].quality))
    failures: dict[str, str] = {}
    for kind in _progress(kinds, "routerbench"):
        started = time.perf_counter()
        try:
            router = _fit(kind, train.models, x_train, train)
            points = sweep(router, x_test, test.scores, test.costs, weights)
            result = row(points, kind="router", quality_at_w0=_rounded(points[0].quality))
            if seeds > 1 and seeded(kind):  # all seeds or none: a kind is a row or a failure, never both
                runs = [result] + [row(sweep(_fit(kind, train.models, x_train, train, seed=s), x_test, test.scores,
                                             test.costs, weights)) for s in range(1, seeds)]
                result["seeds"] = {"aiq": seed_spread([r["aiq"] for r in runs]),
                                   "cost_at_ref_quality": seed_spread([r["cost_at_ref_quality"] for r in runs])}
            rows[kind] = result | {"seconds": round(time.perf_counter() - started, 2)}
        except Exception as exc:  # noqa: BLE001 - one broken kind must not stop the table
            failures[kind] = _reason(exc)
            log(f"routerbench: skipped {kind}: {failures[kind]}")
    return {"folder": str(folder), "train_rows": len(train), "test_rows": len(test), "reference_model": ref,
            "reference_quality": _rounded(ref_quality), "reference_cost": _rounded(ref_cost, 8),
            "cost_range": [lo, hi], "weights": [float(w) for w in weights], "seeds": seeds, "rows": rows,
            "failures": failures}


def quality_section(folder: Path, kinds: list[str], embedder, log: Log, name: str) -> dict[str, Any]:  # noqa: ANN001
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from routers.base import cost_reference  # noqa: PLC0415
    from routers.baselines import oracle_choice  # noqa: PLC0415

    data = load_dataset(folder)
    train, test = data.split("train"), data.split("test")
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"{folder}: needs rows in both splits 'train' and 'test'")
    x_train, x_test = _embed(embedder, train.prompts), _embed(embedder, test.prompts)
    single = {m: float(np.nanmean(test.scores[:, i])) for i, m in enumerate(data.models)}
    best_model = max(single, key=single.get)
    best = single[best_model]
    rows: dict[str, dict[str, Any]] = {}
    if test.costs is not None:
        picks = oracle_choice(test.scores, test.costs, 0.0, cost_reference(test.costs))
        rows["oracle"] = {"kind": "reference", "score": _rounded(outcome(picks, test.scores, None)[0])}
    rows[f"best single ({best_model})"] = {"kind": "reference", "score": _rounded(best)}
    failures: dict[str, str] = {}
    for kind in _progress(kinds, name):
        started = time.perf_counter()
        try:
            router = _fit(kind, train.models, x_train, train)
            score = outcome(choose(router, x_test, 0.0), test.scores, None)[0]
            rows[kind] = {"kind": "router", "score": _rounded(score), "vs_best_single": _rounded(score - best),
                          "seconds": round(time.perf_counter() - started, 2)}
        except Exception as exc:  # noqa: BLE001
            failures[kind] = _reason(exc)
            log(f"{name}: skipped {kind}: {failures[kind]}")
    return {"folder": str(folder), "train_rows": len(train), "test_rows": len(test), "best_single_model": best_model,
            "best_single_score": _rounded(best), "single_models": {m: _rounded(s) for m, s in single.items()},
            "rows": rows, "failures": failures}


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {text[0] if text else ''}{at}"


# -- rendering -----------------------------------------------------------------------------


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def routerbench_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    ref = section["reference_model"].split("/")[-1]
    head = ["router", "AIQ", "best quality", "quality at w=0", f"cost to match {ref} ({section['reference_quality']:.3f}), % of its cost"]
    spread = section.get("seeds", 1) > 1
    if spread:
        head += [f"AIQ over {section['seeds']} seeds: mean [min, max]", "cost to match over seeds: mean [min, max] (seeds reaching it)"]
    body = []
    for name, r in section["rows"].items():
        at = r.get("cost_at_ref_quality")
        cells = [name, _fmt(r["aiq"]), _fmt(r["best_quality"]), _fmt(r.get("quality_at_w0")),
                 "not reached" if at is None else f"{at:.1%}"]
        if spread:
            cells += [_spread(r["seeds"]["aiq"]), _spread(r["seeds"]["cost_at_ref_quality"], pct=True)] if "seeds" in r else ["-", "-"]
        body.append(cells)
    return head, body


def _spread(s: dict[str, Any], pct: bool = False) -> str:
    if s["mean"] is None:
        return f"not reached (0 of {s['runs']})"
    text = f"{_fmt(s['mean'], pct)} [{_fmt(s['min'], pct)}, {_fmt(s['max'], pct)}]"
    return text + (f" ({s['reached']} of {s['runs']})" if pct else "")


def quality_table(sections: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    names = [n for n in ("routerdc7", "llmrouter") if n in sections]
    head = ["router"] + [f"{SECTIONS[n]}: test score at w=0 (vs best single)" for n in names]
    order: list[str] = []
    for n in names:
        for key in sections[n]["rows"]:
            label = "best single" if key.startswith("best single") else key
            if label not in order:
                order.append(label)
    body = []
    for label in order:
        cells = [label]
        for n in names:
            rows = sections[n]["rows"]
            key = next((k for k in rows if k == label or (label == "best single" and k.startswith("best single"))), None)
            if key is None:
                cells.append("-")
                continue
            r = rows[key]
            if label == "best single":
                cells.append(f"{r['score']:.3f} ({key[len('best single ('):-1].split('/')[-1]})")
            elif "vs_best_single" in r:
                cells.append(f"{_fmt(r['score'])} ({r['vs_best_single']:+.3f})")
            else:
                cells.append(_fmt(r["score"]))
        body.append(cells)
    return head, body


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    parts = ["# Switchyard targets", ""]
    rb = results["sections"].get("routerbench")
    if rb:
        parts += [f"## {SECTIONS['routerbench']}",
                  f"Fit on train ({rb['train_rows']} prompts), swept over {len(rb['weights'])} cost weights on test "
                  f"({rb['test_rows']} prompts). AIQ over the single models' cost range "
                  f"${rb['cost_range'][0]:.6f} .. ${rb['cost_range'][1]:.6f} per prompt.", "",
                  markdown(*routerbench_table(rb)), ""]
    if any(n in results["sections"] for n in ("routerdc7", "llmrouter")):
        parts += ["## RouterDC and LLMRouter", "Fit on train, mean test score of the chosen model at w=0.", "",
                  markdown(*quality_table(results["sections"])), ""]
    fails = [(s, k, why) for s, sec in results["sections"].items() for k, why in sec.get("failures", {}).items()]
    fails += [(s, "(section)", why) for s, why in results.get("skipped_sections", {}).items()]
    if fails:
        parts += ["## Skipped", ""] + [f"- {s}: {k}: {why}" for s, k, why in fails] + [""]
    return "\n".join(parts)


def plot(section: dict[str, Any], path: Path, title: str = "RouterBench slice: cost / quality over the cost-weight sweep") -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(12, 6.5))
    for name, r in section["rows"].items():
        if name == "single models (hull)":
            h = np.array(r["hull"])
            ax.plot(h[:, 0], h[:, 1], "--", color="0.35", lw=1.2, label=f"single-model hull (AIQ {r['aiq']:.3f})")
            for m, p in r["models"].items():
                ax.scatter(p["cost"], p["quality"], c="k", s=14, zorder=3)
                ax.annotate(m.split("/")[-1], (p["cost"], p["quality"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
            continue
        pts = np.array(sorted(r["curve"]))
        style = {"color": "black", "lw": 2.2} if name == "oracle" else {"lw": 1.4, "marker": ".", "ms": 3}
        ax.plot(pts[:, 0], pts[:, 1], label=f"{name} (AIQ {r['aiq']:.3f})", **style)
    lo, hi = section["cost_range"]
    ax.axvspan(lo, hi, color="0.95", zorder=0, label="AIQ cost range (single models)")
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.3, hi * 1.9)  # room for the dearest model's label
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("mean quality (test)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def run_targets(data_dir: Path, kinds: Sequence[str], out: Path, embedder=None, log: Log = print,  # noqa: ANN001
                weights: Sequence[float] = DEFAULT_WEIGHTS, seeds: int = 1) -> dict[str, Any]:
    """Build every section whose folder exists under `data_dir`; write the report files to `out`."""
    from routers.artifacts import ROUTER_KINDS  # noqa: PLC0415
    from routers.embedder import Embedder  # noqa: PLC0415

    kinds = list(kinds)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    unknown = [k for k in kinds if k not in ROUTER_KINDS]
    if unknown:
        raise ValueError(f"unknown router kind(s) {', '.join(unknown)}; known: {', '.join(ROUTER_KINDS)}")
    if not Path(data_dir).is_dir():
        raise ValueError(f"{data_dir}: no such data folder")
    present = [n for n in SECTIONS if (Path(data_dir) / n).exists()]
    if not present:
        raise ValueError(f"{data_dir}: none of {', '.join(SECTIONS)} found in it")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own bars only: one per section
    embedder = embedder or Embedder()
    results: dict[str, Any] = {"data": str(data_dir), "routers": kinds, "embedding_model": embedder.cache_id,
                               "sections": {}, "skipped_sections": {}}
    for name in SECTIONS:
        folder = Path(data_dir) / name
        if name not in present:
            results["skipped_sections"][name] = f"{folder} not found"
            continue
        log(f"{SECTIONS[name]}: {folder}")
        try:
            if name == "routerbench":
                results["sections"][name] = routerbench_section(folder, kinds, embedder, log, weights, seeds)
            else:
                results["sections"][name] = quality_section(folder, kinds, embedder, log, name)
        except (ValueError, OSError) as exc:
            results["skipped_sections"][name] = str(exc)
            log(f"{name}: skipped: {exc}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    if "routerbench" in results["sections"]:
        plot(results["sections"]["routerbench"], out / "routerbench_curves.png")
    return results


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    if not console.is_terminal:  # piped: rich would wrap the tables at 80 columns
        console = Console(width=140)
    tables = []
    if "routerbench" in results["sections"]:
        tables.append((SECTIONS["routerbench"] + " (train -> test)", *routerbench_table(results["sections"]["routerbench"])))
    if any(n in results["sections"] for n in ("routerdc7", "llmrouter")):
        tables.append(("RouterDC and LLMRouter (train -> test, w=0)", *quality_table(results["sections"])))
    for title, head, body in tables:
        table = Table(title=title)
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in body:
            table.add_row(*r)
        console.print(table)
