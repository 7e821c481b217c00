"""Stage 6 — the covering integer program (select_explanations) on hand-checked instances.

Objective (see select.py): every text costs λ_miss·w if no chosen candidate matches it,
λ_overlap·w for every chosen candidate beyond the first that matches it; automatic K adds
``cost`` per chosen candidate. Each expected answer is worked out by hand below.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from textclust.errors import SettingsError
from textclust.explain.select import select_explanations


def matrix(n_texts: int, columns: list[set[int]]) -> np.ndarray:
    """Match matrix (texts × candidates) from the set of texts each candidate matches."""
    A = np.zeros((n_texts, len(columns)), dtype=bool)
    for j, members in enumerate(columns):
        A[list(members), j] = True
    return A


def brute_force(A, k=None, cost=0.0, w=None, lm=1.0, lo=0.5):
    """Reference: enumerate every subset (tiny instances only)."""
    n, m = A.shape
    w = np.ones(n) if w is None else np.asarray(w, float)
    best = None
    sizes = [k] if k is not None else range(m + 1)
    for size in sizes:
        for subset in itertools.combinations(range(m), size):
            y = A[:, list(subset)].sum(axis=1)
            z = np.where(y == 0, lm, lo * np.maximum(y - 1, 0))
            value = float((w * z).sum() + (0 if k is not None else cost * size))
            if best is None or value < best[0] - 1e-9:
                best = (value, list(subset))
    return best


def test_fixed_k_picks_the_obviously_best_pair():
    # 6 texts. c0={0,1,2}, c1={3,4,5} partition the texts; c2={0,1}, c3={3}.
    # K=2: {c0,c1} covers everyone exactly once -> objective 0. Every other pair misses
    # at least one text (e.g. {c0,c3} misses 4,5 -> 2; {c2,c3} misses 2,4,5 -> 3).
    A = matrix(6, [{0, 1, 2}, {3, 4, 5}, {0, 1}, {3}])
    result = select_explanations(A, k=2)
    assert result.chosen == [0, 1]
    assert result.objective == pytest.approx(0.0, abs=1e-9)
    assert result.coverage == 1.0
    assert result.status == "optimal"


def test_fixed_k_one_picks_the_largest():
    # K=1 with unit weights: objective = number of texts missed. c1 misses 1 (text 0), c0 misses 3.
    A = matrix(4, [{0}, {1, 2, 3}])
    result = select_explanations(A, k=1)
    assert result.chosen == [1]
    assert result.objective == pytest.approx(1.0)
    assert result.coverage == pytest.approx(0.75)


def test_overlap_penalty_prefers_disjoint_candidates():
    # 4 texts. c0={0,1,2}, c1={1,2,3}, c2={3}. K=2:
    #   {c0,c1}: all covered, texts 1 and 2 twice -> 2 × 0.5 = 1.0
    #   {c0,c2}: all covered exactly once         -> 0.0   <- best
    #   {c1,c2}: text 0 missed (1.0), text 3 twice (0.5) -> 1.5
    A = matrix(4, [{0, 1, 2}, {1, 2, 3}, {3}])
    result = select_explanations(A, k=2)
    assert result.chosen == [0, 2]
    assert result.objective == pytest.approx(0.0, abs=1e-9)
    # A heavier overlap penalty only makes {c0,c1} worse: same answer.
    assert select_explanations(A, k=2, lambda_overlap=2.0).chosen == [0, 2]


def test_overlap_penalty_breaks_ties_towards_a_disjoint_cover():
    # 4 texts; c0 = all texts, c1 = {0,1,2}, c2 = {3}. K=2, λ_overlap 0.5:
    #   {c1,c2}: every text once          -> 0.0   <- best
    #   {c0,c2}: text 3 twice             -> 0.5
    #   {c0,c1}: texts 0,1,2 twice        -> 1.5
    A = matrix(4, [{0, 1, 2, 3}, {0, 1, 2}, {3}])
    result = select_explanations(A, k=2)
    assert result.chosen == [1, 2]
    assert result.objective == pytest.approx(0.0, abs=1e-9)


def test_overlap_penalty_decides_automatic_k():
    # 8 texts, text 0 has weight 2; c0 = {0..5}, c1 = {2..7}; cost 0.1 per candidate.
    # λ_overlap 0.5:
    #   {c0}:    misses 6,7 (2)               + 0.1 = 2.1   <- best
    #   {c1}:    misses 0 (2) and 1 (1)       + 0.1 = 3.1
    #   {c0,c1}: texts 2..5 twice: 4 × 0.5    + 0.2 = 2.2
    # λ_overlap 0.1: {c0,c1} costs 4 × 0.1 + 0.2 = 0.6 -> both are kept.
    A = matrix(8, [set(range(6)), set(range(2, 8))])
    w = np.array([2.0, 1, 1, 1, 1, 1, 1, 1])
    strict = select_explanations(A, cost=0.1, weights=w, lambda_overlap=0.5)
    assert strict.chosen == [0]
    assert strict.objective == pytest.approx(2.1)
    assert strict.coverage == pytest.approx(7 / 9)
    lenient = select_explanations(A, cost=0.1, weights=w, lambda_overlap=0.1)
    assert lenient.chosen == [0, 1]
    assert lenient.objective == pytest.approx(0.6)
    assert lenient.coverage == 1.0


def test_automatic_k_drops_a_candidate_that_does_not_pay_for_itself():
    # 10 texts, unit weights, cost 2 per candidate (λ_miss = 1):
    # c0 covers 0..5 (6 texts), c1 covers 6..8 (3 texts), c2 covers 9 (1 text).
    #   {}           : 10 missed            = 10
    #   {c0}         : 4 missed + 2         = 6
    #   {c0,c1}      : 1 missed + 4         = 5   <- best
    #   {c0,c1,c2}   : 0 missed + 6         = 6   (c2 saves 1 miss but costs 2)
    A = matrix(10, [set(range(6)), {6, 7, 8}, {9}])
    result = select_explanations(A, cost=2.0)
    assert result.chosen == [0, 1]
    assert result.objective == pytest.approx(5.0)
    assert result.coverage == pytest.approx(0.9)
    # Cheaper explanations (cost 0.5 < 1 saved miss): c2 now pays for itself -> 1.5.
    cheap = select_explanations(A, cost=0.5)
    assert cheap.chosen == [0, 1, 2]
    assert cheap.objective == pytest.approx(1.5)
    assert cheap.coverage == 1.0
    # Too expensive for anything: cost 7 > 6 saved -> select nothing, objective 10.
    none = select_explanations(A, cost=7.0)
    assert none.chosen == []
    assert none.objective == pytest.approx(10.0)
    assert none.coverage == 0.0


def test_weights_change_the_choice():
    # 3 texts, c0={0}, c1={1,2}, K=1.
    # Unit weights: c1 misses 1 text (1.0), c0 misses 2 (2.0) -> c1.
    # Weights (5,1,1): c1 misses text 0 (5.0), c0 misses texts 1,2 (2.0) -> c0.
    A = matrix(3, [{0}, {1, 2}])
    assert select_explanations(A, k=1).chosen == [1]
    weighted = select_explanations(A, k=1, weights=np.array([5.0, 1.0, 1.0]))
    assert weighted.chosen == [0]
    assert weighted.objective == pytest.approx(2.0)
    assert weighted.coverage == pytest.approx(5 / 7)


def test_duplicate_rows_equal_doubled_weights():
    # Merging identical rows must not change the program: two copies of a text with
    # weight 1 behave exactly like one copy with weight 2.
    A = matrix(3, [{0}, {1, 2}])
    doubled = np.vstack([A, A[[0]], A[[0]]])  # text 0 three times in total
    by_rows = select_explanations(doubled, k=1)
    by_weight = select_explanations(A, k=1, weights=np.array([3.0, 1.0, 1.0]))
    assert by_rows.chosen == by_weight.chosen == [0]
    assert by_rows.objective == pytest.approx(by_weight.objective) == pytest.approx(2.0)


def test_lambda_miss_scales_missed_texts():
    # Same instance as the fixed-K-one test: 1 text missed, λ_miss 3 -> objective 3.
    A = matrix(4, [{0}, {1, 2, 3}])
    result = select_explanations(A, k=1, lambda_miss=3.0)
    assert result.chosen == [1]
    assert result.objective == pytest.approx(3.0)


def test_texts_matching_nothing_count_in_objective_and_coverage():
    # Texts 3 and 4 match no candidate: they are missed whatever is chosen (2 × λ_miss = 2).
    # c0={0,1}, c1={2}; K=2 -> both, the rest of the objective is 0.
    A = matrix(5, [{0, 1}, {2}])
    result = select_explanations(A, k=2, weights=np.array([1.0, 1.0, 1.0, 1.0, 3.0]))
    assert result.chosen == [0, 1]
    assert result.objective == pytest.approx(1.0 + 3.0)  # weights of texts 3 and 4
    assert result.coverage == pytest.approx(3 / 7)


def test_nothing_matches_anything():
    A = np.zeros((4, 3), dtype=bool)
    auto = select_explanations(A, cost=1.0)
    assert auto.chosen == [] and auto.coverage == 0.0 and auto.objective == pytest.approx(4.0)
    fixed = select_explanations(A, k=2)
    assert len(fixed.chosen) == 2 and fixed.coverage == 0.0 and fixed.objective == pytest.approx(4.0)


def test_no_candidates():
    result = select_explanations(np.zeros((3, 0), dtype=bool), k=None, cost=1.0)
    assert result.chosen == []
    assert result.coverage == 0.0
    assert result.objective == pytest.approx(3.0)
    assert result.status == "no candidates"


@pytest.mark.parametrize("k", [0, 4, 10])
def test_k_out_of_range_raises_settings_error(k):
    A = matrix(4, [{0}, {1}, {2, 3}])
    with pytest.raises(SettingsError, match=f"cannot select {k} explanations from 3 candidates"):
        select_explanations(A, k=k)


def test_neither_k_nor_cost_is_an_error():
    with pytest.raises(ValueError):
        select_explanations(matrix(2, [{0}, {1}]))


def test_k_equal_to_number_of_candidates_selects_all():
    A = matrix(4, [{0, 1}, {1, 2}, {3}])
    # Forced to take all three: text 1 covered twice -> 0.5.
    result = select_explanations(A, k=3)
    assert result.chosen == [0, 1, 2]
    assert result.objective == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_random_instances(seed):
    rng = np.random.default_rng(seed)
    n, m = 12, 5
    A = rng.random((n, m)) < 0.35
    w = rng.integers(1, 4, size=n).astype(float)
    for k, cost in [(2, None), (3, None), (None, 1.5), (None, 4.0)]:
        result = select_explanations(A, k=k, cost=cost, weights=w)
        value, _ = brute_force(A, k=k, cost=cost or 0.0, w=w)
        assert result.objective == pytest.approx(value, abs=1e-6), (k, cost)
        # The reported objective is the objective of the reported choice.
        y = A[:, result.chosen].sum(axis=1)
        z = np.where(y == 0, 1.0, 0.5 * np.maximum(y - 1, 0))
        recomputed = (w * z).sum() + (0 if k is not None else cost * len(result.chosen))
        assert result.objective == pytest.approx(recomputed, abs=1e-6)
        covered = A[:, result.chosen].any(axis=1)
        assert result.coverage == pytest.approx(w[covered].sum() / w.sum())
        if k is not None:
            assert len(result.chosen) == k


# --- catch-alls (issue 24): a broad or merged proposal never wins over specific ones ------------


def _catch_all_case(noise_seed: int = 0):
    """100 texts in 4 groups of 25. Four specific candidates, each matching its group plus a
    few judgment errors into the next group (as a model errs); one broad "General statements"
    matching 84 texts across all groups. Worked out with a cost c = 5 per explanation
    (min_share 0.05): the broad one alone costs 16 misses + c = 21; the four specific ones
    cost their overlaps (20 texts × 0.5 = 10) + 4c = 30; two of them 40 misses + 2c = 50."""
    rng = np.random.default_rng(noise_seed)
    groups = [set(range(g * 25, g * 25 + 25)) for g in range(4)]
    specific = [grp | set(rng.choice(sorted(groups[(g + 1) % 4]), 5, replace=False).tolist())
                for g, grp in enumerate(groups)]
    broad = set(rng.choice(100, 84, replace=False).tolist())
    return matrix(100, specific + [broad])


def _assignment(A):
    from textclust.interfaces import Assignment

    return Assignment(scores=A.astype(float), thresholds=np.full(A.shape[1], 0.5), matches=A)


def test_a_catch_all_wins_the_plain_program():
    """Why the rule exists: with a realistic cost per explanation the program alone prefers
    the one broad candidate (the failure seen with a scripted model that proposes one)."""
    from textclust.explain.select import Selector

    A = _catch_all_case()
    chosen = Selector(min_share=0.05).select(_assignment(A), np.ones(100)).chosen
    assert chosen == [4]


@pytest.mark.parametrize("noise_seed", [0, 1, 2])
def test_catch_all_is_left_out_when_specific_candidates_cover_its_texts(noise_seed):
    from textclust.explain.select import Selector, catch_alls

    A = _catch_all_case(noise_seed)
    w = np.ones(100)
    assert catch_alls(list(range(5)), A, w) == {4}
    chosen = Selector(min_share=0.05, reject_catch_alls=True).select(_assignment(A), w).chosen
    assert chosen == [0, 1, 2, 3]


def test_a_broad_candidate_is_kept_when_it_is_the_honest_answer():
    """Two small candidates inside a broad one that they do not cover: the broad one stays."""
    from textclust.explain.select import catch_alls

    A = matrix(100, [set(range(0, 10)), set(range(10, 20)), set(range(0, 90))])
    assert catch_alls([0, 1, 2], A, np.ones(100)) == set()


def test_one_near_duplicate_inside_is_not_a_catch_all():
    """A candidate that contains just one other (a paraphrase of it) is not a disjunction."""
    from textclust.explain.select import catch_alls

    A = matrix(100, [set(range(0, 40)), set(range(0, 35)), set(range(50, 90))])
    assert catch_alls([0, 1, 2], A, np.ones(100)) == set()


def test_a_broad_statement_spread_over_specific_candidates_is_a_catch_all():
    """ "Asks a question": true of a third of the texts of every kind. Its texts are spread over
    five specific candidates (no one holds half of them) that cover them: it is left out, and
    the program then picks the specific ones."""
    from textclust.explain.select import Selector, catch_alls

    groups = [set(range(g * 20, g * 20 + 20)) for g in range(5)]
    broad = {t for grp in groups for t in sorted(grp)[:7]}  # 35 texts, 7 of each group
    A = matrix(100, groups + [broad])
    w = np.ones(100)
    assert catch_alls(list(range(6)), A, w) == {5}
    assert Selector(min_share=0.05, reject_catch_alls=True).select(_assignment(A), w).chosen == [0, 1, 2, 3, 4]


def test_a_two_way_disjunction_is_a_catch_all():
    """ "positive or negative opinion" over two halves: each half holds more than half of it, so
    it is not spread thin, but both lie inside it: a disjunction, left out."""
    from textclust.explain.select import catch_alls

    A = matrix(100, [set(range(0, 48)), set(range(50, 98)), set(range(0, 95))])
    assert catch_alls([0, 1, 2], A, np.ones(100)) == {2}
