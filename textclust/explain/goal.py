"""What an offline run cannot do with the goal, said plainly.

Without a language model the explanations are extractive (the words that distinguish
each cluster), so they describe *topics*. A goal that asks for sentiment, causes,
counts or trends is recorded but not served; :func:`goal_gaps` names those parts by
simple keyword matching so the summary can say so.
"""

from __future__ import annotations

import re

# aspect -> words in the goal that ask for it
ASPECTS = {
    "sentiment or emotion": ("sentiment", "positive", "negative", "happy", "unhappy", "satisfied",
                             "dissatisfied", "emotion", "emotions", "feel", "feeling", "feelings", "tone",
                             "angry", "opinion", "like", "dislike", "complain", "complaint", "complaints"),
    "reasons (why)": ("why", "reason", "reasons", "cause", "causes", "because"),
    "counts or trends": ("how many", "how often", "trend", "trends", "over time", "increase", "decrease"),
    "style or language": ("style", "language", "written", "genre", "format"),
}


def goal_gaps(goal: str) -> list[str]:
    """The aspects of ``goal`` that extractive explanations cannot serve, in ASPECTS order."""
    lowered = " " + " ".join(re.findall(r"[\w']+", goal.lower())) + " "
    return [aspect for aspect, words in ASPECTS.items() if any(f" {w} " in lowered for w in words)]


def goal_gap_notice(goal: str) -> str | None:
    gaps = goal_gaps(goal)
    if not gaps:
        return None
    return (f"The goal asks for {' and '.join(gaps)}; offline, extractive explanations describe topics only "
            "(distinctive words), so that part of the goal is not served. Seeded explanations "
            "(--candidate \"NAME: explanation\") can steer the result toward it.")
