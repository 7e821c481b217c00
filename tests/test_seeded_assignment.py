"""Seeded assignment (issue 23, item 3): centring, guarded seeded k-means, "none" only where it earns its place."""

from __future__ import annotations

import numpy as np

from textclust.explain.user_classifier import (classify_user_candidates, cosine_zero_shot,
                                               none_earns_its_place, seeded_partition)


def _unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _shared_direction_corpus(seed=0):
    """Two groups along axes 1 and 2, every vector sharing a strong common direction (axis 0).
    Seed "a" is worded broadly: it leans on the common direction more than seed "b"."""
    rng = np.random.default_rng(seed)
    d, n = 16, 200
    common = np.zeros(d); common[0] = 3.0
    y = np.repeat([0, 1], n // 2)
    X = np.tile(common, (n, 1)) + rng.normal(0, 0.35, (n, d))
    X[y == 0, 1] += 1.0
    X[y == 1, 2] += 1.0
    E = np.zeros((2, d))
    E[0, 0], E[0, 1], E[0, 2] = 3.0, 0.6, 0.25   # broad wording: close to everything
    E[1, 0], E[1, 2] = 1.0, 1.0
    return _unit(X), _unit(E), y


def test_plain_argmax_fails_on_a_shared_direction_and_the_new_rule_does_not():
    X, E, y = _shared_direction_corpus()
    plain = (cosine_zero_shot(X, E) == y).mean()
    winner, _, _ = seeded_partition(X, E)
    new = (winner == y).mean()
    assert plain < 0.75, plain          # the broad seed takes most texts
    assert new >= 0.95 and new > plain + 0.2, (plain, new)
    result = classify_user_candidates(X, E)
    assert result.matches.any(axis=1).mean() == 1.0  # closed set: nobody left in "none"
    assert (result.matches.argmax(axis=1) == y).mean() >= 0.95


def test_guard_falls_back_to_argmax_when_refinement_drifts_off_the_seeds():
    """Seeds split the texts along a weak axis; a strong unrelated axis would capture k-means.
    The guard must keep the argmax answer (never worse than plain cosine)."""
    rng = np.random.default_rng(1)
    d, n = 16, 400
    goal = rng.integers(0, 2, n)          # what the seeds ask for (weak signal)
    other = rng.integers(0, 2, n)         # a strong structure nobody asked for
    X = rng.normal(0, 0.2, (n, d))
    X[:, 0] += np.where(goal == 1, 0.35, -0.35)
    X[:, 1] += np.where(other == 1, 2.0, -2.0)
    X[:, 2] += 1.0
    X = _unit(X)
    E = _unit(np.array([[1.0, 0.3, 1.0] + [0] * (d - 3), [-1.0, -0.3, 1.0] + [0] * (d - 3)]))
    plain = (cosine_zero_shot(X, E) == goal).mean()
    winner, _, _ = seeded_partition(X, E)
    assert (winner == goal).mean() >= plain - 1e-9


def test_open_set_none_stays_when_texts_stand_apart():
    rng = np.random.default_rng(2)
    d = 24
    centres = np.eye(d)[:5] * 2.0
    X = np.vstack([centres[k] + rng.normal(0, 0.3, (60, d)) for k in range(5)])
    y = np.repeat(np.arange(5), 60)
    X = _unit(X)
    E = _unit(centres[:2] + rng.normal(0, 0.1, (2, d)))  # seeds for 2 of 5 groups
    result = classify_user_candidates(X, E)
    none = ~result.matches.any(axis=1)
    unseeded = y >= 2
    assert (none & unseeded).sum() / max(1, none.sum()) >= 0.9
    assert (none & unseeded).sum() / unseeded.sum() >= 0.8
    for j in range(2):
        assert result.matches[y == j, j].mean() >= 0.9


def test_none_does_not_earn_its_place_in_a_closed_set():
    X, E, y = _shared_direction_corpus(3)
    winner, _, _ = seeded_partition(X, E)
    weakest = np.zeros(len(X), dtype=bool)
    weakest[np.argsort((X @ E.T).max(axis=1))[:20]] = True  # a detector's least similar texts
    assert not none_earns_its_place(X, E, winner, weakest)


def test_same_input_same_result():
    X, E, _ = _shared_direction_corpus()
    a, b = classify_user_candidates(X, E), classify_user_candidates(X.copy(), E.copy())
    assert np.array_equal(a.matches, b.matches) and np.array_equal(a.scores, b.scores)
