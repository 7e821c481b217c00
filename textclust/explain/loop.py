"""The one round loop: propose → assign → select, repeated on what is left uncovered.

This is the GoalEx method's skeleton. Any :class:`~textclust.interfaces.Proposer` and
:class:`~textclust.interfaces.Assigner` plug into it (offline: extractive proposals and
embedding similarity; with a model: written proposals and the model's judgments):

* round 1 proposes for every text; round r > 1 proposes for the texts no selected
  explanation covers (the proposer decides how: re-cluster them, or sample them);
* after each round the covering program re-selects among all candidates
  (:class:`~textclust.explain.select.Selector`);
* a round's selection replaces the previous one only when it is better on the latest
  judgments (a lower objective of the program, and no catch-all merging explanations
  already selected);
* the loop stops when the rounds run out, every text is covered, too few texts are left
  for another explanation (automatic K), the proposer has nothing new, a round did not
  improve the selection, or coverage rose by less than :data:`MIN_COVERAGE_GAIN`;
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
from .select import Selector, merging_candidates

# Coverage must rise by at least this much for another round to be worth it.
MIN_COVERAGE_GAIN = 0.005
OBJECTIVE_TOLERANCE = 1e-9  # a tie is no improvement: the earlier selection stays
STOP_CLASSIFIED = "classified into the given explanations"


class RoundLoop:
    """Runs the rounds over distinct texts (``weights``: how many input rows each stands for).

    A later round's selection replaces the earlier one only when it is better on the same
    judgments (:meth:`_compare`); otherwise the loop stops and says so.

    ``keep_round_without_gain``: when a round ends the loop (no better selection, or coverage
    rose by less than :data:`MIN_COVERAGE_GAIN`), keep its candidates and judgments with the
    better selection (True: the model's answers are paid for) or return the previous round's
    result whole (False: the offline explainer).

    ``more_rounds_for_k``: with a fixed K, rounds the loop may add after ``rounds`` while
    fewer than K explanations can be selected (each proposes for the texts still uncovered).
    """

    def __init__(self, proposer: Proposer | None, assigner: Assigner, selector: Selector, rounds: int, *,
                 keep_round_without_gain: bool = False, more_rounds_for_k: int = 0,
                 log: Callable[[str], None] | None = None):
        self.proposer = proposer
        self.assigner = assigner
        self.selector = selector
        self.rounds = rounds
        self.keep_round_without_gain = keep_round_without_gain
        self.more_rounds_for_k = more_rounds_for_k
        self.log = log or (lambda message: None)
        self.excluded: set[int] = set()  # candidates found to merge selected explanations: never chosen

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
        limit = self.rounds  # grows when a fixed K still lacks explanations (more_rounds_for_k)
        stop = None
        try:
            while round_number < limit:
                round_number += 1
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
                selection = self.selector.select(assignment, weights, n_user, exclude=self.excluded)
                worse = None
                if round_number > 1:
                    selection, worse = self._compare(result.selection, selection, assignment, weights, n_user,
                                                     round_number)
                attempt = ExplainResult(
                    candidates=attempt_candidates, assignment=assignment, selection=selection,
                    rounds=result.rounds + [RoundRecord(*pending, selection)],
                    n_user=n_user)
                pending = None
                self._log_round(round_number, len(new), merged, attempt)
                if worse is not None:
                    # Keep what this round judged (paid for, shown as candidates), not its choice.
                    stop = worse
                    if self.keep_round_without_gain:
                        result, candidates = attempt, attempt_candidates
                    break
                if round_number > 1 and selection.coverage < result.selection.coverage + MIN_COVERAGE_GAIN:
                    stop = f"coverage rose by less than {MIN_COVERAGE_GAIN:.1%}"
                    if self.keep_round_without_gain:
                        result, candidates = attempt, attempt_candidates
                    break
                result, candidates = attempt, attempt_candidates
                if round_number == limit and self._short_of_k(result) and limit < self.rounds + self.more_rounds_for_k:
                    limit += 1
            else:
                stop = f"all {self.rounds} rounds done"
                if limit > self.rounds:
                    stop += f" and {_count(limit - self.rounds, 'more round')} to find the {self.selector.k} asked for"
        except BudgetExceeded as err:
            stop = f"budget exceeded: {err.template}"  # settings stay named: readers spell them
            assignment = self.assigner.current(attempt_candidates)
            selection = self.selector.select(assignment, weights, n_user, exclude=self.excluded)
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
        self._note_fixed_k(result, round_number)
        result.notes = list(self.selector.notes)
        return result

    def _short_of_k(self, result: ExplainResult) -> bool:
        k = self.selector.k
        return k is not None and len(result.selection.chosen) < k

    def _note_fixed_k(self, result: ExplainResult, round_number: int) -> None:
        """What the user should know when a fixed K needed more rounds, or could not be met."""
        k = self.selector.k
        if k is None:
            return
        notes = []
        if round_number > self.rounds:
            notes.append(f"proposed in {_count(round_number - self.rounds, 'more round')} than the {self.rounds} "
                         f"set to find the {k} explanations asked for")
        if self._short_of_k(result):
            n = len(result.selection.chosen)
            notes.append(f"asked for {k} explanations, but after {_count(round_number, 'round')} only {n} "
                         f"candidates fit at least {self.selector.min_share:.1%} of the texts ({{min_share}}); "
                         f"selected {n}")
        for note in notes:
            self.selector.notes.append(note)
            self.log(note)

    def _compare(self, previous: SelectionResult, selection: SelectionResult, assignment: Assignment,
                 weights, n_user: int, round_number: int) -> tuple[SelectionResult, str | None]:
        """This round's selection if it is better than the previous one, else the previous
        one re-scored on the latest judgments, and why (None when this round's is better).

        Better means a lower objective of the covering program on the same judgments, without
        an explanation that merges two or more of those already selected (see
        :func:`~textclust.explain.select.merging_candidates`): such a catch-all lowers the
        program's cost by one explanation while saying less about the same texts."""
        mergers = merging_candidates(selection.chosen, previous.chosen, assignment.matches, weights)
        if mergers:
            self.excluded.update(mergers)
            self.log(f"round {round_number}: left out {_count(len(mergers), 'candidate')} that merge "
                     "explanations already selected")
            selection = self.selector.select(assignment, weights, n_user, exclude=self.excluded)
        earlier = self.selector.rescore(previous.chosen, assignment, weights,
                                        status=f"kept from round {round_number - 1}")
        if selection.chosen == earlier.chosen or selection.objective >= earlier.objective - OBJECTIVE_TOLERANCE:
            why = " (its best choice merged explanations already selected)" if mergers else ""
            return earlier, (f"round {round_number} did not improve the selection{why}; "
                             f"kept round {round_number - 1}'s")
        return selection, None

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
