"""The candidate explanation: what propose produces and assign/select consume."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Candidate:
    """A predicate about a text ("mentions refunds or billing errors") and how to score it.

    ``vector`` is what texts are compared with (unit length). ``calibration_labels``
    (optional, one entry per text) says which texts are known positives
    (== ``source_cluster``) and known negatives (another label, not -1), from which
    assign calibrates this candidate's threshold.
    """

    name: str
    text: str
    vector: np.ndarray
    source: str  # "extractive" offline; "llm" / "seed" later
    round: int = 1
    source_cluster: int | None = None
    terms: list[str] = field(default_factory=list)
    calibration_labels: np.ndarray | None = None
