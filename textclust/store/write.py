"""Writing one run's result: clusters, explanations, assignments, selections, text results.

Everything is written in ONE transaction together with the run's final status, so a
run is either complete (or incomplete: a budget stop, with its partial result) with
all its rows, or has none of them. That is what makes an interrupted run safe to
resume: there is nothing half-written to clean up or duplicate.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete

from ..interfaces import NOISE, ExplainResult
from ..stats import RunStats
from .schema import Assignment as AssignmentRow
from .schema import Cluster, ClusterMember, Run, Selection, TextResult, utcnow
from .schema import Explanation as ExplanationRow

REASON_UNPARSED = "unparsed"  # the model's answer for this text could not be used


def clear_result(session, run_id: int) -> None:
    """Remove whatever result rows a run has (before it is resumed in place)."""
    for table in (TextResult, AssignmentRow, Selection, ClusterMember, Cluster):
        session.execute(delete(table).where(table.run_id == run_id))
    session.execute(delete(ExplanationRow).where(ExplanationRow.run_id == run_id))


def write_result(db, run_id: int, *, text_ids: list[str], labels: np.ndarray, weights: np.ndarray,
                 result: ExplainResult, k: int | None, stats: RunStats, timings: dict,
                 status: str = "complete", goal_similarity: np.ndarray | None = None,
                 error: str | None = None) -> None:
    """Store ``result`` (the round loop's result: candidates, their assignment with its
    evidence and reasons, the selection, the rounds and any depth-2 children) for ``run_id``,
    with its final ``status``, ``stats`` and ``timings``, in one transaction."""
    primary, primary_score, n_matching = result.primary()
    selected = set(result.selected)
    assignment = result.assignment
    matches = assignment.matches
    scores = assignment.scores
    evidence = assignment.evidence or {}
    reasons = assignment.reasons
    unparsed = result.unparsed
    terms = {(c.round, c.source_cluster): c.terms for c in result.candidates}
    n = len(text_ids)
    with db.transaction() as session:
        clear_result(session, run_id)
        for record in result.rounds:
            in_round = record.labels != NOISE if record.round > 1 else np.ones(n, dtype=bool)
            for label in sorted(set(record.labels[in_round].tolist())):
                session.add(Cluster(run_id=run_id, round=record.round, label=label,
                                    size=int((record.labels == label).sum()),
                                    terms=terms.get((record.round, label), [])))
            _insert(session, ClusterMember,
                    [{"run_id": run_id, "round": record.round, "text_id": text_ids[i], "label": int(record.labels[i])}
                     for i in np.flatnonzero(in_round)])
        ids = _write_explanations(session, run_id, result, weights, selected, goal_similarity)
        for record in result.rounds:
            session.add(Selection(
                run_id=run_id, round=record.round, explanation_ids=[ids[j] for j in record.selection.chosen],
                k=k, objective=record.selection.objective, coverage=record.selection.coverage,
                status=record.selection.status,
            ))
        _insert(session, AssignmentRow,
                [{"explanation_id": ids[j], "text_id": text_ids[i], "run_id": run_id, "score": float(scores[i, j]),
                  "evidence": evidence.get((int(i), int(j)))}
                 for i, j in np.argwhere(matches)])
        _write_children(session, run_id, result, ids, text_ids, weights)
        _insert(
            session, TextResult,
            [{"run_id": run_id, "text_id": t, "cluster": int(labels[i]),
              "explanation_id": ids[primary[i]] if primary[i] >= 0 else None,
              "score": None if primary[i] < 0 else float(primary_score[i]),
              "n_explanations": int(n_matching[i]),
              "reason": _reason(i, primary, reasons, unparsed)}
             for i, t in enumerate(text_ids)],
        )
        run = session.get(Run, run_id)
        run.stats = stats.to_dict()
        run.timings = dict(timings)
        run.status = status
        run.error = error
        run.finished_at = utcnow()
        run.claimed_by = None  # finished: no process works on it any more


def _insert(session, model, rows: list[dict]) -> None:
    """A bulk insert; nothing at all for no rows. (SQLAlchemy runs an insert given an empty
    parameter list as ``INSERT … DEFAULT VALUES``: one row of NULLs, which fails the NOT NULL
    constraints, and the whole result with it: e.g. a budget stop before any assignment.)"""
    if rows:
        session.execute(model.__table__.insert(), rows)


def _reason(i: int, primary, reasons, unparsed) -> str | None:
    if primary[i] < 0:
        return REASON_UNPARSED if unparsed is not None and unparsed[i] else None
    return (reasons[i, primary[i]] if reasons is not None else None) or "similarity"


def _write_explanations(session, run_id, explanation: ExplainResult, weights, selected, goal_similarity,
                        parent_id: int | None = None, position_offset: int = 0) -> list[int]:
    matches = explanation.assignment.matches
    rows = []
    for j, cand in enumerate(explanation.candidates):
        row = ExplanationRow(
            run_id=run_id, round=cand.round, position=position_offset + j, name=cand.name, text=cand.text,
            source=cand.source, source_cluster=cand.source_cluster, terms=cand.terms,
            threshold=float(explanation.assignment.thresholds[j]),
            n_matched=int(weights[matches[:, j]].sum()), selected=j in selected, parent_id=parent_id,
            goal_similarity=None if goal_similarity is None else float(goal_similarity[j]),
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return [r.id for r in rows]


def _write_children(session, run_id, explanation: ExplainResult, parent_ids: list[int], text_ids,
                    weights) -> None:
    """Depth 2: each parent's sub-explanations (rows with ``parent_id``) and their matches."""
    offset = len(explanation.candidates)
    for parent, child in explanation.children.items():
        members = explanation.child_members[parent]
        child_ids = _write_explanations(session, run_id, child, weights[members], set(child.selected), None,
                                        parent_id=parent_ids[parent], position_offset=offset)
        offset += len(child.candidates)
        evidence = child.assignment.evidence or {}
        _insert(session, AssignmentRow,
                [{"explanation_id": child_ids[j], "text_id": text_ids[members[i]], "run_id": run_id,
                  "score": float(child.assignment.scores[i, j]), "evidence": evidence.get((int(i), int(j)))}
                 for i, j in np.argwhere(child.assignment.matches)])
