"""Assign offline: which texts fit which candidate explanation, by embedding similarity.

Offline, a text's score for a candidate is the cosine similarity between the text's
embedding and the candidate's vector. Each candidate gets its own threshold,
calibrated on the texts whose membership is known (its source cluster are
positives, texts of other clusters negatives): the cut that maximises F-beta
(beta 2 by default: a missed member costs more than a stray one). A text matches
every candidate whose threshold it reaches *and* whose score is within ``margin``
of the text's best score, so it may match several (near-ties) or none. The margin
keeps one broad candidate from matching everything, which would otherwise let the
selection program collapse to a single explanation (measured: see README).

In ``partition`` mode (offline runs over a spectral or k-means clustering) there are no
thresholds: every text fits the candidate proposed for its own cluster (its ``home``; a text of
no such cluster: the candidate it is most similar to), and once the explanations are chosen it
keeps that one when it is selected, else it takes the *selected* one it is most similar to (see
:meth:`~textclust.interfaces.ExplainResult.final_matches`). Nearest-centroid alone would redraw
a spectral partition as k-means' round cells, undoing what the graph found. Calibrated
thresholds left 5–12% of the texts uncovered, and every one of those is a wrong answer to
"which group is this in?"
(measured with ``bench/quality.py``: see README).
"""

from __future__ import annotations

import numpy as np

from ..interfaces import Assignment, Candidate
from .thresholds import DEFAULT_THRESHOLD, calibrate_threshold
from .user_classifier import UserCandidateAssignment


NO_THRESHOLD = -2.0  # below any cosine similarity: the partition's "every text fits"


def assign(X: np.ndarray, candidates: list[Candidate], beta: float = 1.0, margin: float | None = None,
           partition: bool = False) -> Assignment:
    vectors = np.vstack([c.vector for c in candidates]).astype(np.float32)
    scores = X @ vectors.T
    thresholds = np.empty(len(candidates), dtype=np.float64)
    if partition:
        thresholds[:] = NO_THRESHOLD
        home = home_candidates(candidates, len(X))
        matches = scores >= scores.max(axis=1, keepdims=True)
        housed = np.flatnonzero(home >= 0)
        matches[housed] = False
        matches[housed, home[housed]] = True
        return Assignment(scores=scores, thresholds=thresholds, matches=matches, home=home)
    for j, cand in enumerate(candidates):
        if cand.calibration_labels is None or cand.source_cluster is None:
            thresholds[j] = DEFAULT_THRESHOLD
            continue
        labels = cand.calibration_labels
        positive = labels == cand.source_cluster
        negative = (labels != cand.source_cluster) & (labels != -1)
        thresholds[j] = calibrate_threshold(scores[:, j], positive, negative, beta)
    matches = scores >= thresholds[None, :]
    if margin is not None:
        matches &= scores >= scores.max(axis=1, keepdims=True) - margin
    return Assignment(scores=scores, thresholds=thresholds, matches=matches)


def home_candidates(candidates: list[Candidate], n: int) -> np.ndarray:
    """Per text, the first candidate proposed for the cluster the text is in (-1: none)."""
    home = np.full(n, -1)
    for j, cand in enumerate(candidates):
        if cand.calibration_labels is None or cand.source_cluster is None:
            continue
        members = (np.asarray(cand.calibration_labels) == cand.source_cluster) & (home < 0)
        home[members] = j
    return home


def join_user_candidates(user: UserCandidateAssignment, proposed: Assignment | None) -> Assignment:
    """The user's candidates' columns first, then the proposed candidates'. A user candidate's
    score is its classifier probability where the text fits it, -1 elsewhere (so score >=
    threshold is exactly "fits"); ``reasons`` says why for the user's columns."""
    user_scores = np.where(user.matches, user.scores, -1.0)
    n = len(user_scores)
    if proposed is None:
        return Assignment(user_scores, user.thresholds.astype(np.float64), user.matches.copy(),
                          reasons=user.reasons)
    extra = np.full((n, proposed.scores.shape[1]), None, dtype=object)
    n_user = user_scores.shape[1]
    return Assignment(
        home=None if proposed.home is None else np.where(proposed.home >= 0, proposed.home + n_user, -1),
        scores=np.hstack([user_scores, proposed.scores]),
        thresholds=np.concatenate([user.thresholds, proposed.thresholds]),
        matches=np.hstack([user.matches, proposed.matches]),
        reasons=np.hstack([user.reasons, extra]),
    )


class SimilarityAssigner:
    """The offline :class:`~textclust.interfaces.Assigner`: cosine similarity to each proposed
    candidate with calibrated thresholds and a ``margin``, and the user's candidates as the
    offline classifier of :mod:`.user_classifier` judged them (``user``, computed once).
    ``partition``: every text goes to its own cluster's candidate (see module docstring)."""

    def __init__(self, X: np.ndarray, user: UserCandidateAssignment | None = None, beta: float = 2.0,
                 margin: float | None = 0.05, partition: bool = False):
        self.X = X
        self.user = user
        self.beta = beta
        self.partition = partition
        self.margin = 0.0 if partition else margin  # the best selected candidate only
        self._last: Assignment | None = None

    def assign(self, candidates: list[Candidate]) -> Assignment:
        n_user = 0 if self.user is None else self.user.matches.shape[1]
        proposed = candidates[n_user:]
        result = assign(self.X, proposed, self.beta, self.margin, self.partition) if proposed else None
        if n_user:
            result = join_user_candidates(self.user, result)
        result.margin = self.margin
        self._last = result
        return result

    def current(self, candidates: list[Candidate]) -> Assignment:
        return self._last if self._last is not None else self.assign(candidates)

    def describe_work(self) -> str:
        return ""  # nothing paid for, nothing worth a log line
