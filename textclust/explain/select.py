"""Stage 6 — select: the integer program that picks a covering set of explanations.

Given the match matrix A (texts × candidates), choose s_j ∈ {0,1} to minimise

    Σ_i w_i z_i  (+ cost · Σ_j s_j  for automatic K)
    s.t. z_i ≥ λ_overlap · (y_i − 1),  z_i ≥ λ_miss · (1 − y_i),  y_i = Σ_j A_ij s_j
         (and Σ_j s_j = K for a fixed K)

so that every text is covered by exactly one selected explanation where possible:
a missed text costs λ_miss, each extra explanation on a text costs λ_overlap.
Solved with scipy's HiGHS-backed ``milp``. Texts with identical rows of A are
merged (weights added) first, which shrinks the program by orders of magnitude.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from ..errors import SettingsError
from ..interfaces import Assignment, SelectionResult

STATUS_KEEP_ALL = "seeded (no selection)"
# A candidate "absorbs" an explanation when it matches at least this share of that
# explanation's texts; one that absorbs two or more of a selection's explanations is
# their disjunction (a catch-all), not a better explanation of those texts.
ABSORB_SHARE = 0.6


class Selector:
    """Chooses the explanations of one round from an :class:`~textclust.interfaces.Assignment`.

    Only candidates some text was judged against can be chosen (the user's are always
    kept); with ``max_candidate_share``, a candidate matching more than that share of the
    texts is left out. A fixed ``k`` larger than the candidates that fit at least
    ``min_share`` of the texts selects those only (never padding with ones that fit almost
    nothing) and records how many in ``shortfall`` (the round loop then proposes more, and
    says what happened). Otherwise :func:`select_explanations` solves the covering program:
    exactly ``k``, or automatic K with a cost of ``min_share · Σ weights · lambda_miss`` per
    explanation.
    """

    def __init__(self, k: int | None = None, min_share: float = 0.005, lambda_miss: float = 1.0,
                 lambda_overlap: float = 0.5, max_candidate_share: float | None = None,
                 log=None, notes: list | None = None, reject_catch_alls: bool = False):
        self.k = k
        self.min_share = min_share
        self.lambda_miss = lambda_miss
        self.lambda_overlap = lambda_overlap
        self.max_candidate_share = max_candidate_share
        self.log = log or (lambda message: None)
        self.notes: list[str] = [] if notes is None else notes
        self.shortfall: int | None = None  # fixed K: how many could be selected, when fewer than k
        # With a model: a broad or merged proposal ("General statements", "A or B") is left out
        # when specific candidates cover its texts (see catch_alls); offline candidates are
        # cluster descriptions and need no such rule.
        self.reject_catch_alls = reject_catch_alls

    def select(self, assignment: Assignment, weights: np.ndarray, n_user: int = 0,
               exclude=()) -> SelectionResult:
        """The program's choice; candidates in ``exclude`` (never the user's) cannot be chosen."""
        matches = assignment.matches
        w = np.asarray(weights, dtype=float)
        m = matches.shape[1]
        judged = np.ones(m, dtype=bool) if assignment.judged is None else assignment.judged
        excluded = set(exclude)
        eligible = [j for j in range(m) if j < n_user or (judged[j] and j not in excluded)]
        if self.max_candidate_share is not None:
            share = (w[:, None] * matches).sum(axis=0) / w.sum()
            eligible = [j for j in eligible if j < n_user or share[j] <= self.max_candidate_share]
        if self.reject_catch_alls:
            broad = catch_alls([j for j in eligible if j >= n_user], matches, w)
            if broad:
                self.log(f"selection: {len(broad)} catch-all candidate{'s' if len(broad) != 1 else ''} left out "
                         "(smaller, specific candidates cover its texts: a disjunction or a broad statement)")
                eligible = [j for j in eligible if j not in broad]
        k = self.k
        self.shortfall = None
        if k is not None:
            # A fixed K is never padded with candidates that fit almost no text.
            share = (w[:, None] * matches).sum(axis=0) / w.sum()
            useful = [j for j in eligible if j < n_user or share[j] >= self.min_share]
            if k > len(useful):
                self.shortfall = len(useful)
                eligible, k = useful, len(useful)
        if not eligible:
            return SelectionResult([], float(self.lambda_miss * w.sum()), "no candidates", 0.0)
        result = select_explanations(
            matches[:, eligible], k=k, cost=None if k is not None else self.min_share * w.sum() * self.lambda_miss,
            weights=w, lambda_miss=self.lambda_miss, lambda_overlap=self.lambda_overlap,
            forced=list(range(n_user)),
        )
        return SelectionResult(sorted(eligible[c] for c in result.chosen), result.objective, result.status,
                               result.coverage)

    def rescore(self, chosen: list[int], assignment: Assignment, weights: np.ndarray,
                status: str) -> SelectionResult:
        """The program's objective of an earlier choice, on the latest judgments (so that two
        rounds' selections are compared on the same evidence)."""
        w = np.asarray(weights, dtype=float)
        A = assignment.matches[:, list(chosen)]
        y = A.sum(axis=1)
        z = np.where(y == 0, self.lambda_miss, self.lambda_overlap * np.maximum(y - 1, 0))
        cost = 0.0 if self.k is not None else self.min_share * w.sum() * self.lambda_miss * len(chosen)
        return SelectionResult(sorted(chosen), float((w * z).sum() + cost), status, float(w[y > 0].sum() / w.sum()))

    def keep_all(self, assignment: Assignment, weights: np.ndarray) -> SelectionResult:
        """Every candidate kept (the user's own, with nothing proposed)."""
        w = np.asarray(weights, dtype=float)
        covered = assignment.matches.any(axis=1)
        return SelectionResult(list(range(assignment.matches.shape[1])), float(w[~covered].sum()), STATUS_KEEP_ALL,
                               float(w[covered].sum() / w.sum()))


def catch_alls(candidates: list[int], matches: np.ndarray, weights: np.ndarray) -> set[int]:
    """The candidates that stand for many others rather than for something of their own.

    A candidate is a catch-all when smaller candidates cover at least ``ABSORB_SHARE`` of its
    texts between them, in one of two shapes:

    * a disjunction ("A or B", "positive or negative opinion"): two or more smaller ones lie
      (at least ``ABSORB_SHARE`` of each) inside it;
    * a broad statement true of some texts of every kind ("Asks a question", "General
      statements"): its texts are spread over smaller candidates with none holding half of
      them (one that did would be a paraphrase or a part, not evidence of breadth).

    Either lowers the program's cost (one explanation instead of several) while saying less.
    A broad candidate whose texts the smaller ones do not cover is kept: then it may be the
    honest answer."""
    if not candidates:
        return set()
    # Texts with the same matches count alike: work on the distinct rows, weighted (as the
    # program does), so a large corpus costs what its few hundred match patterns cost.
    A, inverse = np.unique(np.asarray(matches[:, candidates], dtype=bool), axis=0, return_inverse=True)
    w = np.bincount(inverse.ravel(), weights=np.asarray(weights, dtype=float), minlength=len(A))
    size = (w[:, None] * A).sum(axis=0)  # column i of A is candidates[i]
    out = set()
    for c in range(len(candidates)):
        if size[c] <= 0:
            continue
        smaller = [p for p in range(len(candidates)) if p != c and 0 < size[p] < size[c]]
        if len(smaller) < 2:
            continue
        inside = A[:, smaller] & A[:, [c]]
        parts = (w[:, None] * inside).sum(axis=0)
        # A disjunction: two or more smaller candidates lie (mostly) inside it.
        absorbed = [i for i, p in enumerate(smaller) if parts[i] >= ABSORB_SHARE * size[p]]
        covered_by_absorbed = w[inside[:, absorbed].any(axis=1)].sum() if absorbed else 0.0
        disjunction = len(absorbed) >= 2 and covered_by_absorbed >= ABSORB_SHARE * size[c]
        # A broad statement: spread over smaller candidates, none holding half of it.
        spread = w[inside.any(axis=1)].sum() >= ABSORB_SHARE * size[c] and parts.max() <= 0.5 * size[c]
        if disjunction or spread:
            out.add(candidates[c])
    return out


def merging_candidates(new: list[int], previous: list[int], matches: np.ndarray,
                       weights: np.ndarray) -> list[int]:
    """The candidates of the ``new`` selection that absorb (see :data:`ABSORB_SHARE`) two or
    more explanations of the ``previous`` selection that the new one drops: each stands for a
    disjunction of explanations already found ("A or B"), and covers their texts at a coarser
    grain, so the program's lower cost for it (one explanation instead of two) is no gain."""
    w = np.asarray(weights, dtype=float)
    dropped = [p for p in previous if p not in new]
    out = []
    for c in new:
        if c in previous:
            continue
        absorbed = 0
        for p in dropped:
            members = matches[:, p]
            size = w[members].sum()
            if size > 0 and w[members & matches[:, c]].sum() >= ABSORB_SHARE * size:
                absorbed += 1
        if absorbed >= 2:
            out.append(c)
    return out


def select_explanations(
    matches: np.ndarray,
    k: int | None = None,
    cost: float | None = None,
    weights: np.ndarray | None = None,
    lambda_miss: float = 1.0,
    lambda_overlap: float = 0.5,
    time_limit: float = 120.0,
    forced: list[int] | tuple[int, ...] = (),
) -> SelectionResult:
    """Solve the covering program; ``k`` fixes the count, else ``cost`` per explanation."""
    A = np.asarray(matches, dtype=bool)
    n, m = A.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if m == 0:
        return SelectionResult([], float(lambda_miss * w.sum()), "no candidates", 0.0)
    if k is not None and not 1 <= k <= m:
        raise SettingsError(f"cannot select {k} explanations from {m} candidates")
    if k is not None and len(forced) > k:
        raise SettingsError(f"{{k}} {k} is less than the {len(forced)} seeded explanations, which are always kept")
    if k is None and cost is None:
        raise ValueError("give k (fixed K) or cost (automatic K)")

    # Texts that match nothing cost λ_miss whatever is chosen: constant, leave them out.
    # Texts with the same match pattern behave identically: merge them.
    useful = A.any(axis=1)
    constant = lambda_miss * w[~useful].sum()
    patterns, inverse = np.unique(A[useful], axis=0, return_inverse=True)
    pw = np.bincount(inverse.ravel(), weights=w[useful], minlength=len(patterns))
    p = len(patterns)

    P = sparse.csr_matrix(patterns.astype(float))
    eye = sparse.identity(p, format="csr")
    # λ_o·P s − z ≤ λ_o  and  −λ_m·P s − z ≤ −λ_m
    rows = sparse.vstack([sparse.hstack([lambda_overlap * P, -eye]), sparse.hstack([-lambda_miss * P, -eye])])
    upper = np.concatenate([np.full(p, lambda_overlap), np.full(p, -lambda_miss)])
    constraints = [LinearConstraint(rows, -np.inf, upper)]
    if k is not None:
        constraints.append(LinearConstraint(np.concatenate([np.ones(m), np.zeros(p)])[None, :], k, k))
    c = np.concatenate([np.full(m, 0.0 if k is not None else cost), pw])
    integrality = np.concatenate([np.ones(m), np.zeros(p)])
    lower = np.zeros(m + p)
    lower[list(forced)] = 1  # seeded explanations are always kept
    bounds = Bounds(lower, np.concatenate([np.ones(m), np.full(p, np.inf)]))
    result = milp(c, constraints=constraints, integrality=integrality, bounds=bounds,
                  options={"time_limit": time_limit})
    if result.x is None:
        raise SettingsError(f"the selection program found no solution ({result.message})")
    chosen = [j for j in range(m) if result.x[j] > 0.5]
    covered = A[:, chosen].any(axis=1) if chosen else np.zeros(n, dtype=bool)
    status = "optimal" if result.status == 0 else f"stopped early: {result.message}"
    return SelectionResult(
        chosen=chosen,
        objective=float(result.fun + constant),
        status=status,
        coverage=float(w[covered].sum() / w.sum()),
    )
