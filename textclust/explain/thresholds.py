"""The score cut that best separates known members from known non-members (max F-beta):
how extractive explanations and the user-candidate classifier calibrate their thresholds."""

from __future__ import annotations

import numpy as np

# Used for candidates that carry no calibration data (cosine scale of MiniLM).
DEFAULT_THRESHOLD = 0.5


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
