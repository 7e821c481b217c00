"""Writing one run's result: clusters, explanations, assignments, selections, text results.

Everything is written in ONE transaction together with the run's final status, so a
run is either complete (or incomplete: a budget stop, with its partial result) with
all its rows, or has none of them. That is what makes an interrupted run safe to
resume: there is nothing half-written to clean up or duplicate.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete

from ..cluster import NOISE
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
                 explanation, k: int | None, stats: dict, timings: dict, status: str = "complete",
                 goal_similarity: np.ndarray | None = None, error: str | None = None) -> None:
    """Store ``explanation`` (an :class:`~textclust.explain.explainer.Explanation`, or its
    language-model subclass with evidence, unparsed texts and children) for ``run_id``."""
    primary, primary_score, n_matching = explanation.primary()
    selected = set(explanation.selected)
    matches = explanation.assignment.matches
    scores = explanation.assignment.scores
    evidence = getattr(explanation, "evidence", None) or {}
    unparsed = getattr(explanation, "unparsed", None)
    terms = {(c.round, c.source_cluster): c.terms for c in explanation.candidates}
    n = len(text_ids)
    with db.transaction() as session:
        clear_result(session, run_id)
        for record in explanation.rounds:
            in_round = record.labels != NOISE if record.round > 1 else np.ones(n, dtype=bool)
            for label in sorted(set(record.labels[in_round].tolist())):
                session.add(Cluster(run_id=run_id, round=record.round, label=label,
                                    size=int((record.labels == label).sum()),
                                    terms=terms.get((record.round, label), [])))
            _insert(session, ClusterMember,
                    [{"run_id": run_id, "round": record.round, "text_id": text_ids[i], "label": int(record.labels[i])}
                     for i in np.flatnonzero(in_round)])
        ids = _write_explanations(session, run_id, explanation, weights, selected, goal_similarity)
        for record in explanation.rounds:
            session.add(Selection(
                run_id=run_id, round=record.round, explanation_ids=[ids[j] for j in record.selection.chosen],
                k=k, objective=record.selection.objective, coverage=record.selection.coverage,
                status=record.selection.status,
            ))
        _insert(session, AssignmentRow,
                [{"explanation_id": ids[j], "text_id": text_ids[i], "run_id": run_id, "score": float(scores[i, j]),
                  "evidence": evidence.get((int(i), int(j)))}
                 for i, j in np.argwhere(matches)])
        _write_children(session, run_id, explanation, ids, text_ids, weights)
        reasons = explanation.reasons
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
        run.stats = stats
        run.timings = dict(timings)
        run.status = status
        run.error = error
        run.finished_at = utcnow()


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


def _write_explanations(session, run_id, explanation, weights, selected, goal_similarity,
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


def _write_children(session, run_id, explanation, parent_ids: list[int], text_ids, weights) -> None:
    """--depth 2: each parent's sub-explanations (rows with ``parent_id``) and their matches."""
    children = getattr(explanation, "children", None) or {}
    offset = len(explanation.candidates)
    for parent, child in children.items():
        members = explanation.child_members[parent]
        child_ids = _write_explanations(session, run_id, child, weights[members], set(child.selected), None,
                                        parent_id=parent_ids[parent], position_offset=offset)
        offset += len(child.candidates)
        evidence = child.evidence or {}
        _insert(session, AssignmentRow,
                [{"explanation_id": child_ids[j], "text_id": text_ids[members[i]], "run_id": run_id,
                  "score": float(child.assignment.scores[i, j]), "evidence": evidence.get((int(i), int(j)))}
                 for i, j in np.argwhere(child.assignment.matches)])


def hierarchy(explanation, weights: np.ndarray) -> list[dict] | None:
    """The explanation tree for the report: [{"name", "explanation", "size", "children": [...]}]."""
    children = getattr(explanation, "children", None)
    if not children:
        return None
    primary, _, _ = explanation.primary()
    tree = []
    for j in explanation.selected:
        node = {"name": explanation.candidates[j].name, "explanation": explanation.candidates[j].text,
                "size": int(weights[primary == j].sum()), "children": []}
        child = children.get(j)
        if child is not None:
            members = explanation.child_members[j]
            child_primary, _, _ = child.primary()
            for c in child.selected:
                node["children"].append({"name": child.candidates[c].name, "explanation": child.candidates[c].text,
                                         "size": int(weights[members][child_primary == c].sum()), "children": []})
        tree.append(node)
    return sorted(tree, key=lambda node: -node["size"])
