"""The explain stage: propose candidate explanations, assign texts to them, select a covering
set — in rounds, by one loop (:mod:`.loop`) over a proposer and an assigner.

Where things are:

* :mod:`.explainer` — :func:`build_explainer` (offline or with a model) and the explainers;
* :mod:`.loop` — the round loop; :mod:`.select` — the covering program;
* offline: :mod:`.extractive` (proposer), :mod:`.similarity` (assigner),
  :mod:`.user_classifier` (the user's own candidates without a model);
* with a model: :mod:`.model` (proposer and assigner), :mod:`.propose_llm` and
  :mod:`.assign_llm` (prompts, parsing, judging), :mod:`.hierarchy` (depth 2),
  :mod:`.estimate` (dry run);
* :mod:`.goal` (what the goal steers offline), :mod:`.sampling`.
"""

from ..interfaces import Assignment, Candidate, ExplainResult, SelectionResult
from .explainer import (
    EXPLAINER_LLM,
    EXPLAINER_OFFLINE,
    EXPLAINER_SEEDED,
    OFFLINE_NOTICE,
    Explainer,
    ModelExplainer,
    OfflineExplainer,
    build_explainer,
    explainer_name,
)
from .select import Selector, select_explanations
from .similarity import assign, calibrate_threshold

__all__ = [
    "Assignment",
    "Candidate",
    "EXPLAINER_LLM",
    "EXPLAINER_OFFLINE",
    "EXPLAINER_SEEDED",
    "ExplainResult",
    "Explainer",
    "ModelExplainer",
    "OFFLINE_NOTICE",
    "OfflineExplainer",
    "SelectionResult",
    "Selector",
    "assign",
    "build_explainer",
    "calibrate_threshold",
    "explainer_name",
    "select_explanations",
]
