"""A stored run read back as plain objects (and a pandas DataFrame).

Everything the CLI prints or exports comes from :func:`load_run`, so what a user
sees is always what the database holds.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .errors import NotFoundError, render_settings
from .interfaces import RunStore
from .stats import RunStats
from .store import FINISHED, StoredRun, open_store, store_path

EXAMPLES_PER_CLUSTER = 2
# Texts shown as an explanation's examples never nearly repeat one another (two copies of one news
# story tell the reader nothing new): see choose_examples.
EXAMPLE_POOL = 50  # an explanation's most representative texts looked through for its examples
NEAR_DUPLICATE_COSINE = 0.95  # embeddings this close: the texts say the same thing
SAME_START_CHARS = 50  # texts that agree in their first 50 characters (case, punctuation and spacing
# aside) read as one text once clipped for display


@dataclass
class ClusterSummary:
    """One selected explanation and the texts it covers (as primary explanation)."""

    number: int  # its rank in the run (largest first): the summary's #N, the exports' explanation_number
    explanation_db_id: int  # the database's id (internal; SQL joins only)
    name: str
    explanation: str
    source: str
    size: int  # input rows whose primary explanation this is
    share: float  # of non-empty input rows
    matched: int  # input rows this explanation matches at all (incl. as a secondary match)
    mean_score: float
    terms: list[str]
    examples: list[str]
    round: int
    evidence: list[str] = field(default_factory=list)  # the model's quotes from member texts (LLM runs)
    # An offline "mentions A or B" explanation: the share of its distinct member texts that
    # mention one of its terms (issue 15: it must be true of them). None: not such a predicate.
    truth: float | None = None


@dataclass
class RunResult:
    run_id: int
    goal: str
    status: str
    explainer: str
    corpus: dict
    settings: dict  # as stored: RunConfig.to_dict() (see ``config``)
    stats: RunStats
    timings: dict
    versions: dict
    created_at: str
    error: str | None
    clusters: list[ClusterSummary] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # one per input row, in input order
    # text id -> cosine of its embedding with the centroid of its explanation's members: ranks
    # the members whose scores tie (a model's "yes" is 1.0 for all). Not part of the exports.
    fit: dict = field(default_factory=dict, repr=False)
    # text id -> unit embedding of the texts that may be shown as examples (the near-duplicate check
    # of :meth:`examples`). Not part of the exports.
    example_vectors: dict = field(default_factory=dict, repr=False)

    def representative_key(self, row: dict) -> tuple:
        """Sort key of a member row: highest score, then closest to its explanation's members,
        then input order."""
        return (-(row["score"] or 0.0), -self.fit.get(row["text_id"], 0.0), row["row_index"])

    def examples(self, members: list[dict], n: int) -> list[dict]:
        """The ``n`` member rows of an explanation shown as its examples, wherever examples are
        shown (the summary, ``show``, the reports): one row per distinct text, the most
        representative first (:meth:`representative_key`), none a near-duplicate of another
        (:func:`choose_examples`)."""
        ranked = sorted(_one_per_text(members), key=self.representative_key)
        return choose_examples(ranked, n, self.example_vectors)

    @property
    def config(self) -> RunConfig:
        """The run's settings as the configuration tree."""
        return RunConfig.from_dict(self.settings)

    @property
    def notice(self) -> str | None:
        """How the explanations were made, or why the result is partial (settings by keyword)."""
        if self.stats.notice is None:
            return None
        return render_settings(self.stats.notice, lambda name: name)

    @property
    def coverage(self) -> float:
        return self.stats.coverage

    def scored_rows(self, gold: list) -> tuple[list[str], list[int], list[int]]:
        """What ``textclust eval`` scores against a gold column aligned with the input rows:
        (gold labels, predicted explanation numbers with -1 for none, row indices), over the
        rows with a text and a non-empty gold label (labels normalised as texts are)."""
        from .ingest import normalize_text

        labels, predicted, kept = [], [], []
        for i, (row, label) in enumerate(zip(self.rows, gold)):
            label = normalize_text(label)
            if row["status"] == "empty" or not label:
                continue
            labels.append(label)
            number = row["explanation_number"]
            predicted.append(-1 if number is None else number)
            kept.append(i)
        return labels, predicted, kept

    def score(self, gold: list):
        """:class:`~textclust.evaluate.Scores` of this run against ``gold`` (see :meth:`scored_rows`)."""
        from .evaluate import score_partition

        labels, predicted, _ = self.scored_rows(gold)
        return score_partition(labels, predicted)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per input row: its text, embedding cluster, primary explanation (number, name,
        text) and score."""
        return pd.DataFrame(self.rows, columns=ROW_COLUMNS)

    def to_dict(self, include_rows: bool = True) -> dict:
        """JSON-able, with the stats in their stored form (``RunStats.to_dict``)."""
        data = {"notice": self.notice, **asdict(self)}
        data["stats"] = self.stats.to_dict()
        data.pop("fit")
        data.pop("example_vectors")
        if not include_rows:
            data.pop("rows")
        return data


ROW_COLUMNS = [
    "row_index",
    "row_key",
    "text_id",
    "text",
    "status",
    "embedding_cluster",  # the clustering's label (-1: noise / none), not an explanation
    "explanation_number",  # the explanation's #N in the run's summary, report and show
    "explanation_name",
    "explanation",
    "score",
    "also_matches",
    "explained_by",  # how the explanation was produced, e.g. "extractive (no language model configured)"
    "assigned_by",  # why it fits: "seed match" / "classifier" (seeded explanations) or "similarity"
]


def explanation_label(number: int | None, name: str | None) -> str | None:
    """An explanation as every output names it: its number in the run and its name, "#3 refund"
    (:mod:`textclust.report.units` words the counts)."""
    if name is None:
        return None
    return name if number is None else f"#{number} {name}"


def resolve_run_id(db: RunStore, run_id: int | str) -> int:
    """``run_id`` itself, or for ``"latest"`` the run a command last made, resumed or reused (as the
    command line takes it); NotFoundError in a database without runs."""
    if isinstance(run_id, str):
        if run_id.strip().lower() == "latest":
            latest = db.latest_run_id()
            if latest is None:
                raise NotFoundError(f"no runs in {db.path}")
            return latest
        try:
            return int(run_id)
        except ValueError:
            raise NotFoundError(f"{run_id!r} is not a run id (a number, or latest)") from None
    return run_id


def load_run(db: RunStore | str | Path, run_id: int | str, include_rows: bool = True) -> RunResult:
    """The stored run ``run_id`` of ``db`` (a store, or what :func:`~textclust.store.open_store` opens: the path of
    one; NotFoundError when either is missing); ``run_id`` ``"latest"`` is the last run made, resumed or reused, as on
    the command line. Its rows and cluster summaries only when it finished (:data:`FINISHED`)."""
    if isinstance(db, (str, Path)):
        file = store_path(db)
        if file is not None and not file.is_file():
            raise NotFoundError(f"{{db}} {db}: no such database")
        db = open_store(db)
    stored = db.read_run(resolve_run_id(db, run_id))
    run, corpus = stored.run, stored.corpus
    result = RunResult(
        run_id=run.id,
        goal=run.goal,
        status=run.status,
        explainer=run.explainer,
        corpus={
            "id": corpus.id,
            "name": corpus.name,
            "source": corpus.source,
            "text_column": corpus.text_column,
            "n_rows": corpus.n_rows,
            "n_texts": corpus.n_texts,
            "n_empty": corpus.n_empty,
            "n_duplicate_rows": corpus.n_duplicate_rows,
        },
        settings=run.settings,
        stats=RunStats.from_dict(run.stats),
        timings=run.timings or {},
        versions=run.versions or {},
        created_at=run.created_at.isoformat(timespec="seconds"),
        error=run.error,
    )
    if run.status not in FINISHED:
        return result

    # Top-level explanations only; sub-explanations (depth 2) are in stats.hierarchy.
    explanations = {e.id: e for e in stored.explanations}
    evidence = _evidence(stored)
    results = stored.text_results
    texts = stored.texts
    secondary = _secondary_matches(stored, explanations)

    rows = []
    primary: list[int | None] = []  # per row, its primary explanation's database id (internal)
    for row_index, row_key, text_id in stored.input_rows:
        res = results.get(text_id) if text_id else None
        exp = explanations.get(res.explanation_id) if res and res.explanation_id else None
        primary.append(exp.id if exp else None)
        rows.append(
            {
                "row_index": row_index,
                "row_key": row_key,
                "text_id": text_id,
                "text": texts.get(text_id, "") if text_id else "",
                "status": _status(res, exp),
                "embedding_cluster": None if res is None else res.cluster,
                "explanation_number": None,  # set below, once the explanations are ranked
                "explanation_name": exp.name if exp else None,
                "explanation": exp.text if exp else None,
                "score": None if res is None or res.score is None else round(res.score, 4),
                "also_matches": "",  # set below: the other explanations it matches, as "#N name"
                "explained_by": _explained_by(exp) if exp else None,
                "assigned_by": res.reason if res is not None and exp else None,
            }
        )
    result.fit = _fit_to_members(db, result.config.embedding.model, rows, primary)
    result.example_vectors = _example_vectors(db, result.config.embedding.model, rows, primary,
                                              result.representative_key)
    result.clusters = _summaries(explanations, rows, primary, evidence, result.examples)
    number = {c.explanation_db_id: c.number for c in result.clusters}
    for row, exp_id in zip(rows, primary):
        row["explanation_number"] = number.get(exp_id)
        also = secondary.get((row["text_id"], exp_id), []) if exp_id is not None else []
        row["also_matches"] = "; ".join(explanation_label(number.get(i), explanations[i].name) for i in also)
    if include_rows:
        result.rows = rows
    return result


EVIDENCE_PER_CLUSTER = 3


def _status(res, exp) -> str:
    if res is None:
        return "empty"
    if exp is not None:
        return "covered"
    return "unparsed" if res.reason == "unparsed" else "uncovered"


def _evidence(stored: StoredRun) -> dict[int, list[str]]:
    """A few of the model's evidence quotes per selected explanation (none offline)."""
    quotes: dict[int, list[str]] = {}
    for exp_id, quote in stored.evidence:
        found = quotes.setdefault(exp_id, [])
        if len(found) < EVIDENCE_PER_CLUSTER and quote.strip() and quote not in found:
            found.append(quote)
    return quotes


def _explained_by(explanation) -> str:
    if explanation.source == "extractive":
        return "extractive (no language model configured)"
    if explanation.source == "seed":
        return "seed (given by the user)"
    return explanation.source


def _secondary_matches(stored: StoredRun, explanations: dict) -> dict:
    """(text id, primary explanation id) -> ids of the other selected explanations it matches."""
    selected = {i for i, e in explanations.items() if e.selected}
    primary = {t: r.explanation_id for t, r in stored.text_results.items() if r.n_explanations > 1}
    if not primary:
        return {}
    result: dict = {}
    for text_id, exp_id in stored.multi_matches:
        if text_id in primary and exp_id in selected and exp_id != primary[text_id]:
            result.setdefault((text_id, primary[text_id]), []).append(exp_id)
    return result


def _fit_to_members(db, model: str, rows: list[dict], primary: list) -> dict[str, float]:
    """Text id -> cosine of its embedding with the mean embedding of the texts sharing its
    primary explanation, for explanations whose members' scores tie (else ranking by score
    is enough). Texts without a cached embedding are left out (ranked after the others)."""
    members: dict[int, dict[str, float]] = {}
    for r, exp_id in zip(rows, primary):
        if exp_id is not None and r["score"] is not None:
            members.setdefault(exp_id, {})[r["text_id"]] = r["score"]
    tied = {e: list(m) for e, m in members.items() if len(m) > 1 and len(set(m.values())) < len(m)}
    if not tied or not model:
        return {}
    ids = sorted({t for m in tied.values() for t in m})
    X, found = db.load_embeddings(model, ids)
    if X is None:
        return {}
    position = {t: i for i, t in enumerate(ids) if found[i]}
    fit: dict[str, float] = {}
    for text_ids in tied.values():
        kept = [t for t in text_ids if t in position]
        if not kept:
            continue
        V = X[[position[t] for t in kept]]
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        centroid = V.mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        fit.update(zip(kept, (V @ centroid).astype(float).tolist()))
    return fit


def _one_per_text(rows: list[dict]) -> list[dict]:
    """The first row of each distinct text, in the order of ``rows``."""
    first: dict = {}
    for r in rows:
        first.setdefault(r["text_id"], r)
    return list(first.values())


def _normalised_start(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))[:SAME_START_CHARS]


def near_duplicates(a: dict, b: dict, vectors: dict | None = None) -> bool:
    """Whether two member rows nearly repeat each other: the same start (see
    :data:`SAME_START_CHARS`) or, where both embeddings are at hand, a cosine above
    :data:`NEAR_DUPLICATE_COSINE`."""
    if _normalised_start(a["text"]) == _normalised_start(b["text"]):
        return True
    u, v = (vectors or {}).get(a["text_id"]), (vectors or {}).get(b["text_id"])
    return u is not None and v is not None and float(u @ v) > NEAR_DUPLICATE_COSINE


def choose_examples(ranked: list[dict], n: int, vectors: dict | None = None) -> list[dict]:
    """Up to ``n`` of ``ranked`` (distinct member rows, best first), skipping each that is a near-
    duplicate (:func:`near_duplicates`) of one already chosen. Only the first
    :data:`EXAMPLE_POOL` are looked at: an explanation whose texts all repeat one another shows
    fewer examples rather than unrepresentative ones."""
    chosen: list[dict] = []
    for row in ranked[:EXAMPLE_POOL]:
        if len(chosen) >= n:
            break
        if not any(near_duplicates(row, c, vectors) for c in chosen):
            chosen.append(row)
    return chosen


def _example_vectors(db, model: str, rows: list[dict], primary: list, key) -> dict[str, np.ndarray]:
    """Text id -> unit embedding of each explanation's :data:`EXAMPLE_POOL` most representative
    texts (ranked by ``key``): the texts :func:`choose_examples` may compare. Texts without a cached
    embedding are left out (compared by their text only)."""
    members: dict = {}
    for r, exp_id in zip(rows, primary):
        if exp_id is not None:
            members.setdefault(exp_id, []).append(r)
    ids = sorted({r["text_id"] for m in members.values()
                  for r in sorted(_one_per_text(m), key=key)[:EXAMPLE_POOL]})
    if not ids or not model:
        return {}
    X, found = db.load_embeddings(model, ids)
    if X is None:
        return {}
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return {t: X[i] for i, t in enumerate(ids) if found[i]}


def _summaries(explanations: dict, rows: list[dict], primary: list, evidence: dict | None,
               examples) -> list[ClusterSummary]:
    """The selected explanations, largest first, numbered 1, 2, … in that order; ``examples``
    (members, n) -> rows chooses each one's examples (:meth:`RunResult.examples`)."""
    non_empty = sum(1 for r in rows if r["status"] != "empty")
    by_explanation: dict = {}
    for r, exp_id in zip(rows, primary):
        by_explanation.setdefault(exp_id, []).append(r)
    summaries = []
    for exp in (e for e in explanations.values() if e.selected):
        members = by_explanation.get(exp.id, [])
        distinct = _one_per_text(members)
        summaries.append(
            ClusterSummary(
                number=0,  # ranked below
                explanation_db_id=exp.id,
                name=exp.name,
                explanation=exp.text,
                source=exp.source,
                size=len(members),
                share=len(members) / non_empty if non_empty else 0.0,
                matched=exp.n_matched,
                mean_score=round(sum(r["score"] for r in members) / len(members), 4) if members else 0.0,
                terms=list(exp.terms or []),
                examples=[r["text"] for r in examples(members, EXAMPLES_PER_CLUSTER)],
                round=exp.round,
                evidence=(evidence or {}).get(exp.id, []),
                truth=_truth(exp, distinct),
            )
        )
    summaries.sort(key=lambda c: -c.size)
    for number, summary in enumerate(summaries, start=1):
        summary.number = number
    return summaries


def _truth(exp, members: list[dict]) -> float | None:
    """How often an extractive "mentions …" explanation holds for its distinct member texts."""
    from .explain.truthful import is_predicate, predicate_truth

    if exp.source != "extractive" or not is_predicate(exp.text or ""):
        return None
    truth = predicate_truth([r["text"] for r in members], list(exp.terms or []))
    return None if truth is None else round(truth, 4)
