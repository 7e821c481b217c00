"""Stages 4–6 — explain: propose candidate explanations, assign texts, select a covering set."""

from .assign import assign, calibrate_threshold
from .candidates import Candidate
from .explainer import EXPLAINER_OFFLINE, EXPLAINER_SEEDED, OFFLINE_NOTICE, Explanation, OfflineExplainer
from .select import SelectionResult, select_explanations

__all__ = [
    "Candidate",
    "EXPLAINER_OFFLINE",
    "EXPLAINER_SEEDED",
    "Explanation",
    "OFFLINE_NOTICE",
    "OfflineExplainer",
    "SelectionResult",
    "assign",
    "calibrate_threshold",
    "select_explanations",
]
