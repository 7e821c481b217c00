"""The goal, offline: what it can steer, and what an offline run cannot do with it.

Without a language model the explanations are extractive (the words that distinguish
each cluster), so they describe *topics*. The goal's embedding still ranks things:

* :func:`embed_goal` — the goal's unit vector (same model as the texts), from the goal
  without its instruction words ("Cluster the complaints by why the customer is unhappy."
  → "why the customer is unhappy", see :func:`goal_focus`);
* :func:`goal_similarity` — per candidate explanation, the cosine between its vector
  (a cluster centroid, or a user candidate's embedding) and the goal; the offline
  proposer orders its candidates by it and ranks each cluster's words by their own
  similarity to the goal (``textclust.explain.extractive``).

A goal that asks for sentiment, causes, counts, trends or style is recorded but that part
is not served; :func:`goal_gaps` names those parts by simple keyword matching so the
summary can say so.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

from ..errors import register_settings

register_settings(("candidate",))  # the goal notice names the option as {candidate}

# aspect -> words in the goal that ask for it
ASPECTS = {
    "sentiment or emotion": ("sentiment", "positive", "negative", "happy", "unhappy", "satisfied",
                             "dissatisfied", "emotion", "emotions", "feel", "feeling", "feelings", "tone",
                             "angry", "opinion", "like", "dislike"),  # ("complaints" names the texts, not a criterion)
    "reasons (why)": ("why", "reason", "reasons", "cause", "causes", "because"),
    "counts or trends": ("how many", "how often", "trend", "trends", "over time", "increase", "decrease"),
    "style or language": ("style", "language", "written", "genre", "format"),
}

# "Cluster the complaints by ...", "Group these texts according to ...", "Sort the reviews into ..."
_INSTRUCTION = re.compile(
    r"^\s*(?:please\s+)?(?:cluster|group|sort|organi[sz]e|categori[sz]e|classify|split|divide|partition)\b"
    r"(?:\s+(?:the|these|those|all|my|our|this|each))?(?:\s+[\w'-]+){0,2}?"
    r"\s+(?:by|according\s+to|based\s+on|on|into)\s+(?P<rest>.+)$",
    re.IGNORECASE,
)


def goal_focus(goal: str) -> str:
    """The part of ``goal`` that says what matters, without the instruction to cluster:
    "Cluster the complaints by why the customer is unhappy." → "why the customer is unhappy".
    A goal that does not start with such an instruction is returned as is (trimmed)."""
    text = " ".join(goal.split())
    match = _INSTRUCTION.match(text)
    rest = match.group("rest") if match else text
    rest = rest.strip().rstrip(".!?;:").strip()
    return rest or text


def embed_goal(goal: str, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """The goal's unit vector: ``embed`` (the texts' model) applied to :func:`goal_focus` (goal)."""
    vector = np.asarray(embed([goal_focus(goal)]), dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def goal_similarity(candidates: Sequence, goal_vector: np.ndarray) -> np.ndarray:
    """Cosine between each candidate's ``vector`` and the goal, one float per candidate, in
    ``candidates`` order (the offline proposer returns its candidates in descending order)."""
    if len(candidates) == 0:
        return np.zeros(0)
    V = np.vstack([np.asarray(c.vector, dtype=np.float64) for c in candidates])
    g = np.asarray(goal_vector, dtype=np.float64).reshape(-1)
    if V.shape[1] != g.shape[0]:
        raise ValueError(f"goal_vector has {g.shape[0]} dimensions, the candidates' vectors {V.shape[1]}")
    norms = np.linalg.norm(V, axis=1) * (np.linalg.norm(g) or 1.0)
    return (V @ g) / np.where(norms == 0, 1.0, norms)


REASONS = "reasons (why)"


def goal_gaps(goal: str) -> list[str]:
    """The aspects of ``goal`` that extractive explanations cannot serve, in ASPECTS order. A goal
    that asks why ("why the customer is unhappy") asks for reasons: its feeling words say what the
    reasons are about, not a grouping by feeling."""
    lowered = " " + " ".join(re.findall(r"[\w']+", goal.lower())) + " "
    gaps = [aspect for aspect, words in ASPECTS.items() if any(f" {w} " in lowered for w in words)]
    if REASONS in gaps:
        gaps = [g for g in gaps if g != "sentiment or emotion"]
    return gaps


def goal_gap_notice(goal: str) -> str | None:
    gaps = goal_gaps(goal)
    if not gaps:
        return None
    steer = "Seeded explanations ({candidate} \"NAME: explanation\") can steer the result toward it."
    if gaps == [REASONS]:
        # Reasons are often topics (a refund, a late delivery): partly served, and it says which part.
        return ("The goal asks why; offline, each explanation names what its texts talk about (words they "
                "contain), which shows a reason only where the texts state it as a topic (a refund, a late "
                "delivery), never one they leave unsaid. " + steer)
    return (f"The goal asks for {' and '.join(gaps)}; offline, extractive explanations describe topics only "
            "(distinctive words), so that part of the goal is not served. " + steer)
