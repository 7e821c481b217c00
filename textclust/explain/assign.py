"""Stage 5 — assign: which texts fit which candidate explanation (multi-label, maybe none).

Offline, a text's score for a candidate is the cosine similarity between the text's
embedding and the candidate's vector. Each candidate gets its own threshold,
calibrated on the texts whose membership is known (its source cluster are
positives, texts of other clusters negatives): the cut that maximises F-beta
(beta 2 by default: a missed member costs more than a stray one). A text matches
every candidate whose threshold it reaches *and* whose score is within ``margin``
of the text's best score, so it may match several (near-ties) or none. The margin
keeps one broad candidate from matching everything, which would otherwise let the
selection program collapse to a single explanation (measured: see README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .candidates import Candidate

# Used for candidates that carry no calibration data (cosine scale of MiniLM).
DEFAULT_THRESHOLD = 0.5


@dataclass
class Assignment:
    scores: np.ndarray  # n_texts × n_candidates cosine similarities
    thresholds: np.ndarray  # per candidate
    matches: np.ndarray  # bool, scores >= thresholds


def calibrate_threshold(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, beta: float = 1.0) -> float:
    """The score cut that best separates known positives from known negatives (max F-beta;
    beta > 1 weighs recall higher)."""
    pos, neg = scores[positive], scores[negative]
    if len(pos) == 0:
        return DEFAULT_THRESHOLD
    if len(neg) == 0:
        return float(pos.min())
    candidates = np.unique(pos)
    # For each cut t: true positives = pos >= t, false positives = neg >= t.
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tp = len(pos) - np.searchsorted(pos_sorted, candidates, side="left")
    fp = len(neg) - np.searchsorted(neg_sorted, candidates, side="left")
    b2 = beta * beta
    f_beta = (1 + b2) * tp / ((1 + b2) * tp + fp + b2 * (len(pos) - tp))
    return float(candidates[int(np.argmax(f_beta))])


def assign(X: np.ndarray, candidates: list[Candidate], beta: float = 1.0, margin: float | None = None) -> Assignment:
    vectors = np.vstack([c.vector for c in candidates]).astype(np.float32)
    scores = X @ vectors.T
    thresholds = np.empty(len(candidates), dtype=np.float64)
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
