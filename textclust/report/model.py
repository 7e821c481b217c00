"""Everything a report shows, gathered once into plain (JSON-ready) data.

:func:`build_report` reads a stored run through :func:`textclust.results.load_run`
and adds what the run summary leaves out: more representative texts per
explanation, the texts matched by two or more explanations, the uncovered and
unclustered texts, and a 2-D map of the texts (from the cached embeddings).
The HTML, Markdown and JSON reports all render this one structure, so they
always show the same content. It holds the run's typed model usage
(:class:`~textclust.stats.ModelUsage`, key ``llm``) and the run result itself;
:func:`report_json` turns those into JSON data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..config import RunConfig, model_identity
from ..errors import TextclustError, register_settings, render_settings
from ..results import FINISHED, RunResult, explanation_label, load_run

register_settings(("max_points", "max_listed"))

REPRESENTATIVE_TEXTS = 5  # per explanation
MAX_LISTED = 200  # longest list of texts (overlaps, uncovered, unclustered) written into a report
MAX_POINTS = 4000  # the map plots at most this many texts (a seeded random sample beyond)
HOVER_CHARS = 300  # text shown on hover in the map is clipped to this many characters
SHOWN_CHARS = 300  # a text listed in the HTML report shows this much; the whole text on demand
MAP_REDUCTIONS = ("umap", "pca")
UNCOVERED = "uncovered"
NO_LLM = "no language model configured"
# The run's settings as every report lists them: by flat name, in the order and under the names
# they had while runs stored them flat (the user's candidates as "seeds", the model's identity as
# "llm"); a setting added since is listed after these.
SETTINGS_ORDER = ("k", "clusterer", "reduction", "n_components", "min_cluster_size", "min_samples",
                  "max_cluster_share", "embedding_model", "rounds", "min_share", "lambda_miss", "lambda_overlap",
                  "random_state", "seeds", "only_candidates", "llm", "examples", "depth", "n_samples",
                  "n_explanations", "batch_size", "prefilter", "escalations", "merge_threshold",
                  "max_candidate_share", "max_chars")
SETTINGS_SHOWN_AS = {"candidates": "seeds"}

Spell = Callable[[str], str]  # a setting's name -> how the reader knows it (the command line: its flag)


@dataclass
class ReportOptions:
    reduction: str = "umap"  # umap | pca: how the map reduces embeddings to 2-D
    max_points: int = MAX_POINTS
    max_listed: int = MAX_LISTED
    representative: int = REPRESENTATIVE_TEXTS
    seed: int = 0
    spell: Spell | None = None  # how the run's stored texts name settings (see spelled); None: by name

    def validate(self) -> None:
        if self.reduction not in MAP_REDUCTIONS:
            raise TextclustError(f"unknown map reduction '{self.reduction}'; choose {' or '.join(MAP_REDUCTIONS)}")
        if self.max_points < 10:
            raise TextclustError(f"{{max_points}} must be at least 10 (got {self.max_points})")
        if self.max_listed < 0:
            raise TextclustError(f"{{max_listed}} must not be negative (got {self.max_listed})")


def _no_report(run_id: int, status: str, error: str | None) -> str:
    detail = f": {error}" if error else ""
    return f"run {run_id} is {status}{detail}; only complete (or budget-stopped) runs have a report"


def ensure_reportable(db, run_id: int) -> None:
    """Raise the error :func:`build_report` would for a missing or unfinished run, cheaply (before
    a command says it is writing a report)."""
    run = db.get_run(run_id)
    if run.status not in FINISHED:
        raise TextclustError(_no_report(run_id, run.status, run.error))


def build_report(db, run_id: int, options: ReportOptions | None = None, with_map: bool = True) -> dict:
    """The report of one complete run as a plain dict (see the module docstring)."""
    options = options or ReportOptions()
    options.validate()
    result = load_run(db, run_id, include_rows=True)
    report = report_from_result(result, options)
    report["map"] = map_points(db, result, options) if with_map else None
    return report


def report_from_result(result: RunResult, options: ReportOptions) -> dict:
    """Everything of the report but the map (which needs the database's embeddings)."""
    if result.status not in FINISHED:
        raise TextclustError(_no_report(result.run_id, result.status, result.error))
    result = spelled_result(result, options.spell)
    report = _summary(result)
    report["explanations"] = _explanations(result, options)
    report["overlaps"] = _overlaps(result, options)
    report["uncovered"] = _listing(result, options, lambda r: r["status"] == "uncovered")
    report["unclustered"] = _listing(result, options, lambda r: r["status"] != "empty" and r["embedding_cluster"] == -1)
    # The tree of sub-explanations ([{"name", "size", "children": [...]}, ...]) of a --depth 2 run.
    report["hierarchy"] = result.stats.hierarchy or None
    report["map"] = None
    report["result"] = result
    report["not_listed"] = spelled("_Not listed ({max_listed} 0)._", options.spell)  # Markdown's wording
    return report


def report_json(report: dict) -> dict:
    """The report as JSON-ready data: everything shown plus the full run result (every input row)."""
    data = {k: v for k, v in report.items() if k not in ("result", "not_listed")}
    data["llm"] = report["llm"].to_dict() if report["llm"] else None  # the model usage as stored
    data["run_result"] = report["result"].to_dict(include_rows=True)
    return data


def spelled(text: str | None, spell: Spell | None = None) -> str | None:
    """Library text that names settings as ``{name}`` (a stored notice, stop reason or error),
    each setting spelled by ``spell`` (the command line: its flag), by default as its name."""
    return None if text is None else render_settings(text, spell or _by_name)


def _by_name(name: str) -> str:
    return name


def spelled_result(result: RunResult, spell: Spell | None = None) -> RunResult:
    """A copy of ``result`` whose stored texts name settings as the reader knows them (see
    :func:`spelled`); every report, summary and export shows this copy."""
    stats = result.stats
    stats = replace(stats, notice=spelled(stats.notice, spell), goal_notice=spelled(stats.goal_notice, spell),
                    stop_reason=spelled(stats.stop_reason, spell), notes=[spelled(n, spell) for n in stats.notes])
    return replace(result, stats=stats, error=spelled(result.error, spell))


# --- sections ----------------------------------------------------------------------------


def _summary(result: RunResult) -> dict:
    stats, corpus, config = result.stats, result.corpus, result.config
    non_empty = corpus["n_rows"] - corpus["n_empty"]
    usage = stats.model  # ModelUsage, or None without a language model
    return {
        "run_id": result.run_id,
        "goal": result.goal,
        "status": result.status,
        "created_at": result.created_at,
        "notice": result.notice,
        "explainer": result.explainer,
        "corpus": dict(corpus),
        "settings": settings_shown(config),
        "models": {
            "embedding model": config.embedding.model,
            "explainer": result.explainer,
            "language model": (usage.model if usage else None) or NO_LLM,
        },
        "versions": dict(result.versions or {}),
        "timings": {k: float(v) for k, v in (result.timings or {}).items()},
        "total_seconds": float(sum((result.timings or {}).values())),
        "llm": usage,  # report_json writes it as stored
        "llm_note": None if usage else NO_LLM,
        "counts": {
            "rows": corpus["n_rows"],
            "texts": corpus["n_texts"],
            "empty": corpus["n_empty"],
            "duplicate_rows": corpus["n_duplicate_rows"],
            "non_empty": non_empty,
            "covered": non_empty - stats.n_uncovered,
            "uncovered": stats.n_uncovered,
            "multi": stats.n_multi,
            "unclustered": stats.n_unclustered,
            "coverage": float(stats.coverage),
            "selected": stats.n_selected or len(result.clusters),
            "candidates": stats.n_candidates,
            "clusters": stats.n_clusters,
            "rounds": stats.rounds_used,
        },
        # Runs stored before stats recorded the clusterer: the one their settings chose.
        "clusterer": stats.clusterer or _legacy_algorithm(config),
    }


def settings_shown(config: RunConfig) -> dict:
    """The run's settings as reports list them (see :data:`SETTINGS_ORDER`)."""
    shown = {SETTINGS_SHOWN_AS.get(name, name): value for name, value in config.flat().items()}
    shown["llm"] = model_identity(config.model) if config.model is not None else None
    position = {name: i for i, name in enumerate(SETTINGS_ORDER)}
    return dict(sorted(shown.items(), key=lambda item: position.get(item[0], len(position))))


def _distinct(rows: list[dict]) -> list[dict]:
    """One entry per distinct text, with how many input rows hold it (first occurrence order)."""
    seen: dict[str, dict] = {}
    for r in rows:
        entry = seen.get(r["text_id"])
        if entry is None:
            seen[r["text_id"]] = {**r, "n_rows": 1}
        else:
            entry["n_rows"] += 1
    return list(seen.values())


def _explanations(result: RunResult, options: ReportOptions) -> list[dict]:
    by_explanation: dict[int, list[dict]] = {}
    for r in result.rows:
        if r["explanation_number"] is not None:
            by_explanation.setdefault(r["explanation_number"], []).append(r)
    items = []
    for c in result.clusters:
        # Chosen as the summary's examples are (ranked, no near-duplicates), just more of them.
        shown = result.examples(_distinct(by_explanation.get(c.number, [])), options.representative)
        items.append(
            {
                "number": c.number,  # the summary's #N and the exports' explanation_number
                "label": explanation_label(c.number, c.name),  # "#N name"
                "explanation_db_id": c.explanation_db_id,
                "name": c.name,
                "explanation": c.explanation,
                "source": c.source,
                "round": c.round,
                "size": c.size,
                "share": c.share,
                "matched": c.matched,
                "mean_score": c.mean_score,
                "terms": list(c.terms),
                "truth": c.truth,  # share of members a "mentions …" explanation is true of
                "representative": [
                    {"text": r["text"], "score": r["score"], "n_rows": r["n_rows"]}
                    for r in shown
                ],
                "evidence": list(getattr(c, "evidence", None) or []),  # quotes, once a language model gives them
            }
        )
    return items


def _overlaps(result: RunResult, options: ReportOptions) -> dict:
    rows = _distinct([r for r in result.rows if r["also_matches"]])
    return {
        "n_rows": result.stats.n_multi,
        "n_texts": len(rows),
        "texts": [
            {"text": r["text"], "primary": explanation_label(r["explanation_number"], r["explanation_name"]),
             "also": r["also_matches"].split("; "),
             "n_rows": r["n_rows"]}
            for r in rows[: options.max_listed]
        ],
    }


def _listing(result: RunResult, options: ReportOptions, keep) -> dict:
    rows = _distinct([r for r in result.rows if keep(r)])
    return {
        "n_rows": sum(r["n_rows"] for r in rows),
        "n_texts": len(rows),
        "texts": [
            {"text": r["text"], "explanation": explanation_label(r["explanation_number"], r["explanation_name"]),
             "n_rows": r["n_rows"]}
            for r in rows[: options.max_listed]
        ],
    }


# --- the 2-D map -------------------------------------------------------------------------


def map_points(db, result: RunResult, options: ReportOptions) -> dict:
    """2-D coordinates of (a sample of) the distinct texts, coloured by primary explanation."""
    texts = _distinct([r for r in result.rows if r["status"] != "empty"])
    n_total = len(texts)
    sampled = n_total > options.max_points
    if sampled:
        rng = np.random.default_rng(options.seed)
        keep = np.sort(rng.choice(n_total, size=options.max_points, replace=False))
        texts = [texts[i] for i in keep]
    model = result.config.embedding.model
    vectors = db.cached_embeddings(model, [t["text_id"] for t in texts]) if model else {}
    present = [t for t in texts if t["text_id"] in vectors]
    base = {"n_total": n_total, "sampled": sampled, "reduction": options.reduction, "embedding_model": model}
    if len(present) < 2:
        return {**base, "n_points": 0, "points": [],
                "unavailable": f"the embeddings of this run's texts are not in the cache (model {model})"}
    X = np.vstack([vectors[t["text_id"]] for t in present]).astype(np.float32)
    xy, used = _reduce(X, options)
    points = [
        {
            "x": round(float(x), 4),
            "y": round(float(y), 4),
            "text": _clip(t["text"]),
            "label": explanation_label(t["explanation_number"], t["explanation_name"]) or UNCOVERED,
        }
        for t, (x, y) in zip(present, xy)
    ]
    return {**base, "reduction": used, "n_points": len(points), "points": points,
            "n_missing": len(texts) - len(present), "unavailable": None}


def _reduce(X: np.ndarray, options: ReportOptions) -> tuple[np.ndarray, str]:
    n = X.shape[0]
    if options.reduction == "umap" and n >= 10:
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # 200 epochs (UMAP's own choice for large inputs) halve the time of its default for < 10k points.
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, metric="cosine",
                                n_epochs=200, random_state=options.seed)
            return reducer.fit_transform(X), "umap"
    from sklearn.decomposition import PCA

    components = min(2, n, X.shape[1])
    xy = PCA(n_components=components, random_state=options.seed).fit_transform(X)
    if components < 2:
        xy = np.hstack([xy, np.zeros((n, 2 - components))])
    return xy, "pca"


def _clip(text: str, limit: int = HOVER_CHARS) -> str:
    return cut_at_word(text, limit) or text


def cut_at_word(text: str, limit: int = SHOWN_CHARS) -> str | None:
    """``text`` cut to at most ``limit`` characters, at a word boundary, ending in "…"; None when
    it fits whole."""
    if len(text) <= limit:
        return None
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.6:  # back to the last space, unless one long word would lose too much
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def _legacy_algorithm(config) -> str:
    """The clusterer of a run stored before its stats recorded one: then, "auto" meant
    k-means with a given K and HDBSCAN without (every newer run records what it used)."""
    if config.clustering.algorithm == "auto":
        return "kmeans" if config.explaining.k else "hdbscan"
    return config.clustering.algorithm
