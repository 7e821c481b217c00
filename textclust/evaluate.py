"""Evaluation against gold labels: accuracy after Hungarian matching, NMI, ARI, coverage.

Conventions (the same as ../shared/BASELINES.md): a text with no cluster (uncovered
or noise) is wrong for accuracy and forms one cluster of its own for NMI and ARI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

UNASSIGNED = -1


@dataclass
class Scores:
    acc: float
    nmi: float
    ari: float
    coverage: float
    n: int
    n_clusters: int

    def to_dict(self) -> dict:
        return asdict(self)


def hungarian_accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Best one-to-one matching of predicted clusters to gold classes; unassigned count as wrong."""
    gold_ids, gold_idx = np.unique(gold, return_inverse=True)
    pred_ids, pred_idx = np.unique(predicted, return_inverse=True)
    table = np.zeros((len(pred_ids), len(gold_ids)), dtype=np.int64)
    np.add.at(table, (pred_idx, gold_idx), 1)
    table[pred_ids == UNASSIGNED, :] = 0  # the "no cluster" bucket cannot be matched to a class
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(gold))


def score_partition(gold: list, predicted: list[int]) -> Scores:
    """Scores for parallel lists; ``predicted`` uses -1 for "no cluster"."""
    gold_arr = np.asarray([str(g) for g in gold])
    pred = np.asarray(predicted, dtype=int)
    if len(gold_arr) != len(pred) or len(pred) == 0:
        raise ValueError("gold and predicted labels must be non-empty and of equal length")
    return Scores(
        acc=round(hungarian_accuracy(gold_arr, pred), 4),
        nmi=round(float(normalized_mutual_info_score(gold_arr, pred)), 4),
        ari=round(float(adjusted_rand_score(gold_arr, pred)), 4),
        coverage=round(float((pred != UNASSIGNED).mean()), 4),
        n=len(pred),
        n_clusters=len(set(pred.tolist()) - {UNASSIGNED}),
    )
