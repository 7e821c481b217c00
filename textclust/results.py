"""A stored run read back as plain objects (and a pandas DataFrame).

Everything the CLI prints or exports comes from :func:`load_run`, so what a user
sees is always what the database holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
from sqlalchemy import select

from .errors import NotFoundError
from .store import Database
from .store.schema import CorpusRow, Explanation, InputRow, Run, TextResult, TextRow

EXAMPLES_PER_CLUSTER = 2


@dataclass
class ClusterSummary:
    """One selected explanation and the texts it covers (as primary explanation)."""

    explanation_id: int
    name: str
    explanation: str
    source: str
    size: int  # input rows whose primary explanation this is
    share: float  # of non-empty input rows
    matched: int  # rows this explanation matches at all (incl. as a secondary match)
    mean_score: float
    terms: list[str]
    examples: list[str]
    round: int
    evidence: list[str] = field(default_factory=list)  # the model's quotes from member texts (LLM runs)


@dataclass
class RunResult:
    run_id: int
    goal: str
    status: str
    explainer: str
    corpus: dict
    settings: dict
    stats: dict
    timings: dict
    versions: dict
    created_at: str
    error: str | None
    clusters: list[ClusterSummary] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # one per input row, in input order

    @property
    def notice(self) -> str | None:
        return self.stats.get("notice")

    @property
    def coverage(self) -> float:
        return self.stats.get("coverage", 0.0)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per input row: its text, cluster, primary explanation and score."""
        return pd.DataFrame(self.rows, columns=ROW_COLUMNS)

    def to_dict(self, include_rows: bool = True) -> dict:
        data = {"notice": self.notice, **asdict(self)}
        if not include_rows:
            data.pop("rows")
        return data


ROW_COLUMNS = [
    "row_index",
    "row_key",
    "text_id",
    "text",
    "status",
    "cluster",
    "explanation_id",
    "explanation_name",
    "explanation",
    "score",
    "also_matches",
    "explained_by",  # how the explanation was produced, e.g. "extractive (no language model configured)"
    "assigned_by",  # why it fits: "seed match" / "classifier" (seeded explanations) or "similarity"
]


def load_run(db: Database, run_id: int, include_rows: bool = True) -> RunResult:
    with db.transaction() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run with id {run_id} in {db.path}")
        corpus = s.get(CorpusRow, run.corpus_id)
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
            stats=run.stats or {},
            timings=run.timings or {},
            versions=run.versions or {},
            created_at=run.created_at.isoformat(timespec="seconds"),
            error=run.error,
        )
        if run.status not in FINISHED:
            return result

        # Top-level explanations only; sub-explanations (--depth 2) are in stats["hierarchy"].
        explanations = {e.id: e for e in s.scalars(select(Explanation).where(Explanation.run_id == run_id,
                                                                               Explanation.parent_id.is_(None)))}
        evidence = _evidence(s, run_id, explanations)
        results = {r.text_id: r for r in s.scalars(select(TextResult).where(TextResult.run_id == run_id))}
        texts = dict(
            s.execute(
                select(TextRow.id, TextRow.text).join(TextResult, TextResult.text_id == TextRow.id).where(
                    TextResult.run_id == run_id
                )
            ).all()
        )
        secondary = _secondary_matches(s, run_id, explanations)
        input_rows = s.scalars(
            select(InputRow).where(InputRow.corpus_id == corpus.id).order_by(InputRow.row_index)
        ).all()

    rows = []
    for r in input_rows:
        res = results.get(r.text_id) if r.text_id else None
        exp = explanations.get(res.explanation_id) if res and res.explanation_id else None
        rows.append(
            {
                "row_index": r.row_index,
                "row_key": r.row_key,
                "text_id": r.text_id,
                "text": texts.get(r.text_id, "") if r.text_id else "",
                "status": _status(res, exp),
                "cluster": None if res is None else res.cluster,
                "explanation_id": exp.id if exp else None,
                "explanation_name": exp.name if exp else None,
                "explanation": exp.text if exp else None,
                "score": None if res is None or res.score is None else round(res.score, 4),
                "also_matches": "; ".join(secondary.get((r.text_id, exp.id if exp else None), [])),
                "explained_by": _explained_by(exp) if exp else None,
                "assigned_by": res.reason if res is not None and exp else None,
            }
        )
    result.clusters = _summaries(explanations, rows, evidence)
    if include_rows:
        result.rows = rows
    return result


FINISHED = ("complete", "incomplete")  # incomplete: stopped by the language-model budget, partial result
EVIDENCE_PER_CLUSTER = 3


def _status(res, exp) -> str:
    if res is None:
        return "empty"
    if exp is not None:
        return "covered"
    return "unparsed" if res.reason == "unparsed" else "uncovered"


def _evidence(session, run_id: int, explanations: dict) -> dict[int, list[str]]:
    """A few of the model's evidence quotes per selected explanation (none offline)."""
    from .store.schema import Assignment

    selected = [i for i, e in explanations.items() if e.selected]
    quotes: dict[int, list[str]] = {}
    rows = session.execute(
        select(Assignment.explanation_id, Assignment.evidence)
        .where(Assignment.run_id == run_id, Assignment.explanation_id.in_(selected), Assignment.evidence.is_not(None))
        .order_by(Assignment.explanation_id, Assignment.text_id)
    )
    for exp_id, quote in rows:
        found = quotes.setdefault(exp_id, [])
        if len(found) < EVIDENCE_PER_CLUSTER and quote.strip() and quote not in found:
            found.append(quote)
    return quotes


def _explained_by(explanation: Explanation) -> str:
    if explanation.source == "extractive":
        return "extractive (no language model configured)"
    if explanation.source == "seed":
        return "seed (given by the user)"
    return explanation.source


def _secondary_matches(session, run_id: int, explanations: dict) -> dict:
    """(text id, primary explanation id) -> names of the other selected explanations it matches."""
    from .store.schema import Assignment

    selected = {i for i, e in explanations.items() if e.selected}
    primary = dict(
        session.execute(select(TextResult.text_id, TextResult.explanation_id).where(
            TextResult.run_id == run_id, TextResult.n_explanations > 1
        )).all()
    )
    if not primary:
        return {}
    result: dict = {}
    rows = session.execute(select(Assignment.text_id, Assignment.explanation_id).where(Assignment.run_id == run_id))
    for text_id, exp_id in rows:
        if text_id in primary and exp_id in selected and exp_id != primary[text_id]:
            result.setdefault((text_id, primary[text_id]), []).append(explanations[exp_id].name)
    return result


def _summaries(explanations: dict, rows: list[dict], evidence: dict | None = None) -> list[ClusterSummary]:
    non_empty = sum(1 for r in rows if r["status"] != "empty")
    by_explanation: dict = {}
    for r in rows:
        by_explanation.setdefault(r["explanation_id"], []).append(r)
    summaries = []
    for exp in (e for e in explanations.values() if e.selected):
        members = by_explanation.get(exp.id, [])
        by_score = sorted({r["text_id"]: r for r in members}.values(), key=lambda r: -(r["score"] or 0))
        summaries.append(
            ClusterSummary(
                explanation_id=exp.id,
                name=exp.name,
                explanation=exp.text,
                source=exp.source,
                size=len(members),
                share=len(members) / non_empty if non_empty else 0.0,
                matched=exp.n_matched,
                mean_score=round(sum(r["score"] for r in members) / len(members), 4) if members else 0.0,
                terms=list(exp.terms or []),
                examples=[r["text"] for r in by_score[:EXAMPLES_PER_CLUSTER]],
                round=exp.round,
                evidence=(evidence or {}).get(exp.id, []),
            )
        )
    summaries.sort(key=lambda c: -c.size)
    return summaries
