"""The one round loop: propose → assign → select, repeated on what is left uncovered.

This is the GoalEx method's skeleton. Any :class:`~textclust.interfaces.Proposer` and
:class:`~textclust.interfaces.Assigner` plug into it (offline: extractive proposals and
embedding similarity; with a model: written proposals and the model's judgments):

* round 1 proposes for every text; round r > 1 proposes for the texts no selected
  explanation covers (the proposer decides how: re-cluster them, or sample them);
* after each round the covering program re-selects among all candidates
  (:class:`~textclust.explain.select.Selector`);
* the loop stops when the rounds run out, every text is covered, too few texts are left
  for another explanation (automatic K), the proposer has nothing new, or coverage rose
  by less than :data:`MIN_COVERAGE_GAIN`;
* when a budget runs out (:class:`~textclust.errors.BudgetExceeded`) it selects over what
  has been judged and returns that, marked ``incomplete``.

The user's own candidates come first, are judged like any other and are always kept; with
no proposer (``only_candidates``) the loop judges the texts against them once and keeps
them all.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import BudgetExceeded
from ..interfaces import (
    Assigner,
    Assignment,
    Candidate,
    ExplainResult,
    Proposer,
    RoundContext,
    RoundRecord,
    SelectionResult,
)
from .select import Selector

# Coverage must rise by at least this much for another round to be worth it.
MIN_COVERAGE_GAIN = 0.005
STOP_CLASSIFIED = "classified into the given explanations"


class RoundLoop:
    """Runs the rounds over distinct texts (``weights``: how many input rows each stands for).

    ``keep_round_without_gain``: when a round raises coverage by less than
    :data:`MIN_COVERAGE_GAIN`, keep its selection (True) or return the previous round's
    result (False). The offline explainer has always reverted; the model explainer has kept
    the round (its answers are paid for) — the issue on choosing explanations revisits this.
    """

    def __init__(self, proposer: Proposer | None, assigner: Assigner, selector: Selector, rounds: int, *,
                 keep_round_without_gain: bool = False, log: Callable[[str], None] | None = None):
        self.proposer = proposer
        self.assigner = assigner
        self.selector = selector
        self.rounds = rounds
        self.keep_round_without_gain = keep_round_without_gain
        self.log = log or (lambda message: None)

    def run(self, X: np.ndarray, texts: list[str], labels: np.ndarray, weights: np.ndarray,
            user_candidates: list[Candidate] = ()) -> ExplainResult:
        user = list(user_candidates)
        if self.proposer is None:
            return self._classify_only(labels, weights, user)
        return self._rounds(X, texts, labels, weights, user)

    # --- propose → assign → select ---------------------------------------------------------------

    def _rounds(self, X, texts, labels, weights, user: list[Candidate]) -> ExplainResult:
        n_user = len(user)
        candidates = list(user)
        result = self._empty(candidates, labels, weights, n_user)
        attempt_candidates = candidates
        pending = None  # (round, labels, n_new) of a round whose assignment is under way
        round_number = 0
        stop = None
        try:
            for round_number in range(1, self.rounds + 1):
                pool = None
                if round_number > 1:
                    pool = ~result.final_matches().any(axis=1)
                    if not pool.any():
                        stop = "every text is covered"
                        break
                    if self.selector.k is None and weights[pool].sum() < self.selector.min_share * weights.sum():
                        stop = "too few uncovered texts left for another explanation"
                        break
                proposal = self.proposer.propose(RoundContext(
                    round=round_number, X=X, texts=texts, labels=labels, weights=weights, pool=pool,
                    candidates=candidates, result=result if round_number > 1 else None))
                if proposal.stop_reason:
                    stop = proposal.stop_reason
                    break
                new = proposal.candidates
                merged = f" ({proposal.n_merged} merged as near-duplicates)" if proposal.n_merged else ""
                if not new and (round_number > 1 or not candidates):
                    stop = f"proposing failed: {proposal.error}" if proposal.error else "no new candidates" + merged
                    break
                attempt_candidates = candidates + new
                pending = (round_number, proposal.labels, len(new))
                assignment = self.assigner.assign(attempt_candidates)
                selection = self.selector.select(assignment, weights, n_user)
                attempt = ExplainResult(
                    candidates=attempt_candidates, assignment=assignment, selection=selection,
                    rounds=result.rounds + [RoundRecord(*pending, selection)],
                    n_user=n_user)
                pending = None
                self._log_round(round_number, len(new), merged, attempt)
                if round_number > 1 and selection.coverage < result.selection.coverage + MIN_COVERAGE_GAIN:
                    stop = f"coverage rose by less than {MIN_COVERAGE_GAIN:.1%}"
                    if self.keep_round_without_gain:
                        result, candidates = attempt, attempt_candidates
                    break
                result, candidates = attempt, attempt_candidates
            else:
                stop = f"all {self.rounds} rounds done"
        except BudgetExceeded as err:
            stop = f"budget exceeded: {err.template}"  # settings stay named: readers spell them
            assignment = self.assigner.current(attempt_candidates)
            selection = self.selector.select(assignment, weights, n_user)
            records = list(result.rounds)
            if pending is not None:
                records.append(RoundRecord(*pending, selection))
            elif records:
                last = records[-1]
                records[-1] = RoundRecord(last.round, last.labels, last.n_candidates, selection)
            result = ExplainResult(candidates=attempt_candidates, assignment=assignment, selection=selection,
                                   rounds=records, n_user=n_user, incomplete=True)
            self.log(f"stopped in round {round_number}: {stop}; keeping the best result so far "
                     f"(coverage {selection.coverage:.1%})")
        if not result.rounds:  # stopped before round 1 was judged
            result.rounds = [RoundRecord(1, labels.copy(), len(result.candidates), result.selection)]
        result.stop_reason = stop
        result.notes = list(self.selector.notes)
        return result

    def _empty(self, candidates, labels, weights, n_user) -> ExplainResult:
        """The result before round 1: nothing judged, nothing selected."""
        n, m = len(labels), len(candidates)
        assignment = Assignment(scores=np.full((n, m), np.nan), thresholds=np.full(m, 0.5),
                                matches=np.zeros((n, m), dtype=bool), judged=np.zeros(m, dtype=bool),
                                failed=np.zeros(n, dtype=bool), reasons=np.full((n, m), None, dtype=object))
        selection = SelectionResult([], float(self.selector.lambda_miss * weights.sum()), "no candidates", 0.0)
        return ExplainResult(candidates=list(candidates), assignment=assignment, selection=selection,
                             n_user=n_user)

    def _log_round(self, round_number: int, n_new: int, merged: str, result: ExplainResult) -> None:
        work = self.assigner.describe_work()
        unparsed = result.unparsed
        n_unparsed = 0 if unparsed is None else int(unparsed.sum())
        self.log(f"round {round_number}: {_count(n_new, 'new candidate')}" + merged
                 + (f", {work}" if work else "")
                 + f", {len(result.selection.chosen)} selected, coverage {result.selection.coverage:.1%}"
                 + (f", {_count(n_unparsed, 'text')} unparsed" if n_unparsed else ""))

    # --- only the user's candidates --------------------------------------------------------------

    def _classify_only(self, labels, weights, user: list[Candidate]) -> ExplainResult:
        """Judge every text against the user's candidates and keep them all (no selection)."""
        incomplete, stop = False, STOP_CLASSIFIED
        try:
            assignment = self.assigner.assign(user)
        except BudgetExceeded as err:
            incomplete, stop = True, f"budget exceeded: {err.template}"
            assignment = self.assigner.current(user)
        else:
            work = self.assigner.describe_work()
            if work:
                self.log(f"classified: {work}")
        selection = self.selector.keep_all(assignment, weights)
        return ExplainResult(candidates=list(user), assignment=assignment, selection=selection,
                             rounds=[RoundRecord(1, labels.copy(), len(user), selection)],
                             n_user=len(user), stop_reason=stop, incomplete=incomplete)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
