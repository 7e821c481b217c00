"""Deleting runs: ``textclust runs --delete ID…`` and ``textclust prune``.

A run is deleted with everything that belongs only to it: its result rows (clusters,
cluster members, explanations, assignments, selections, text results; see
:func:`.write.clear_result`) and the record of its language-model calls (``llm_calls``).
What other runs may use stays: the texts, the embedding cache and the language-model
response cache (``llm_responses``), so re-running a deleted run's command pays for
nothing again. A corpus goes with the last run that used it (its ``input_rows`` with it;
its texts stay).

A run in status 'running' whose process is alive (:func:`.claims.process_alive`) is never
deleted: ``--delete`` refuses it, ``prune`` leaves it alone. The deletes happen in one
transaction that first takes the write lock and checks again, so nothing is half-deleted
and a run claimed meanwhile is not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from ..errors import NotFoundError, SettingsError
from . import sqlite
from .claims import process_alive
from .schema import CorpusRow, InputRow, LLMCall, Run
from .write import clear_result


@dataclass(frozen=True)
class Doomed:
    """A run that would be deleted, and why."""

    run_id: int
    status: str
    corpus: str
    goal: str
    reason: str

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "corpus": self.corpus, "goal": self.goal,
                "reason": self.reason}


def _runs(session, run_ids: list[int] | None = None) -> list[tuple[Run, str]]:
    """(run, its corpus's name), by id; all runs, or those of ``run_ids``."""
    query = select(Run, CorpusRow.name).join(CorpusRow, CorpusRow.id == Run.corpus_id).order_by(Run.id)
    if run_ids is None:
        return [tuple(row) for row in session.execute(query)]
    found = [tuple(row) for chunk in sqlite.chunks(run_ids) for row in session.execute(query.where(Run.id.in_(chunk)))]
    return sorted(found, key=lambda row: row[0].id)


def _live(run: Run) -> bool:
    return run.status == "running" and process_alive(run.claimed_by)


def _doomed(run: Run, corpus: str, reason: str) -> Doomed:
    return Doomed(run.id, run.status, corpus, run.goal, reason)


def _ids_text(ids) -> str:
    return ", ".join(str(i) for i in ids)


def plan_delete(db, run_ids: list[int]) -> list[Doomed]:
    """The runs ``run_ids`` as they would be deleted; NotFoundError naming every id that does not
    exist, SettingsError naming every run a live process is working on (nothing is deleted)."""
    with db._reading() as s:
        found = _runs(s, list(dict.fromkeys(run_ids)))
    _check(db, [run_id for run_id in dict.fromkeys(run_ids) if run_id not in {r.id for r, _ in found}],
           [run for run, _ in found if _live(run)])
    return [_doomed(run, corpus, "asked for") for run, corpus in found]


def _check(db, missing: list[int], live: list[Run]) -> None:
    if missing:
        what = f"run with id {missing[0]}" if len(missing) == 1 else f"runs with ids {_ids_text(missing)}"
        raise NotFoundError(f"no {what} in {db.path}; nothing deleted")
    if live:
        busy = ", ".join(f"run {r.id} (process {(r.claimed_by or {}).get('pid')})" for r in live)
        raise SettingsError(f"{busy}: still being worked on by a live process; nothing deleted")


def plan_prune(db) -> list[Doomed]:
    """What ``prune`` deletes: failed, incomplete (budget-stopped) and interrupted runs (status
    'running', process gone), and every complete run that has a newer complete run with the
    same corpus, goal and result-affecting settings (the same ``settings_key``)."""
    with db._reading() as s:
        runs = _runs(s)
    newest: dict[str, int] = {}
    for run, _ in runs:
        if run.status == "complete":
            newest[run.settings_key] = max(run.id, newest.get(run.settings_key, 0))
    doomed = []
    for run, corpus in runs:
        reason = _prune_reason(run, newest)
        if reason is not None:
            doomed.append(_doomed(run, corpus, reason))
    return doomed


def _prune_reason(run: Run, newest: dict[str, int]) -> str | None:
    if run.status == "failed":
        return "failed"
    if run.status == "incomplete":
        return "incomplete (stopped by the budget)"
    if run.status == "running":
        return None if _live(run) else "interrupted (its process is gone)"
    if run.status == "complete" and newest.get(run.settings_key, run.id) > run.id:
        return f"older duplicate of run {newest[run.settings_key]} (same input, goal and settings)"
    return None


def delete_runs(db, run_ids: list[int]) -> dict:
    """Delete the runs ``run_ids`` and what belongs only to them, in one transaction (checked
    again under the write lock, as :func:`plan_delete` checks). Returns ``{"runs": ids deleted,
    "corpora": how many corpora went with their last run}``."""
    run_ids = list(dict.fromkeys(run_ids))
    with db.transaction(immediate=True) as s:
        found = {run.id: run for run, _ in _runs(s, run_ids)}
        _check(db, [r for r in run_ids if r not in found], [run for run in found.values() if _live(run)])
        for run_id in run_ids:
            clear_result(s, run_id)
        for chunk in sqlite.chunks(run_ids):
            s.execute(delete(LLMCall).where(LLMCall.run_id.in_(chunk)))
            s.execute(delete(Run).where(Run.id.in_(chunk)))
        n_corpora = _delete_unused_corpora(s, {run.corpus_id for run in found.values()})
    return {"runs": run_ids, "corpora": n_corpora}


def _delete_unused_corpora(session, corpus_ids: set[int]) -> int:
    """Delete those of ``corpus_ids`` no run uses any more (their input rows too; the texts and
    their embeddings stay, for other corpora and later runs). How many were deleted."""
    ids = sorted(corpus_ids)
    used = {c for chunk in sqlite.chunks(ids)
            for c in session.scalars(select(Run.corpus_id).where(Run.corpus_id.in_(chunk)).distinct())}
    unused = [c for c in ids if c not in used]
    for chunk in sqlite.chunks(unused):
        session.execute(delete(InputRow).where(InputRow.corpus_id.in_(chunk)))
        session.execute(delete(CorpusRow).where(CorpusRow.id.in_(chunk)))
    return len(unused)
