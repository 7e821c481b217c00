"""Stage 5 — assign: which texts fit which candidate explanation (multi-label, maybe none).

Offline, a text's score for a candidate is the cosine similarity between the text's
embedding and the candidate's vector. Each candidate gets its own threshold,
calibrated on the texts whose membership is known (its source cluster are
positives, texts of other clusters negatives): the cut that maximises F1. A text
matches every candidate whose threshold it reaches, so it may match several or none.
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


def calibrate_threshold(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """The score cut that best separates known positives from known negatives (max F1)."""
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
    f1 = 2 * tp / (2 * tp + fp + (len(pos) - tp))
    return float(candidates[int(np.argmax(f1))])


def assign(X: np.ndarray, candidates: list[Candidate]) -> Assignment:
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
        thresholds[j] = calibrate_threshold(scores[:, j], positive, negative)
    return Assignment(scores=scores, thresholds=thresholds, matches=scores >= thresholds[None, :])
