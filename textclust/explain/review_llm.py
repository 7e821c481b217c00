"""Review with a language model: one call a round decides, for each newly proposed candidate,
whether to keep it, reject it (off the goal, a catch-all, a restatement of the goal, a
disjunction) or merge it into another (a near-duplicate), before texts are judged against it.

Why before assignment: each text is checked against its ``prefilter`` most similar candidates,
so a broad or duplicate candidate takes a slot that its own label's candidate needed (measured
with ``bench/llm_cost.py``: rows "never checked against its label's candidate"). The model
sees, per candidate, statistics from the embeddings (no judgment has been paid for yet): the
share of texts it is the closest candidate of, the most similar other explanation, the
candidates it shares nearest texts with, and its few most similar member texts.

The model's answer is checked, never trusted blindly: an unknown number or action keeps the
candidate; a merge into itself, into an unknown number or into a candidate that is itself
removed keeps it; and a review that would leave the round with no candidate at all (and
nothing from earlier rounds) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..prompts_loader import render_prompt
from .propose_llm import MAX_EXPLANATION_CHARS, MAX_LISTED_CANDIDATES, data_block, one_line, render_split, truncate

MEMBERS = 3  # member texts shown per reviewed candidate
MEMBER_CHARS = 200  # each cut to this many characters: the review reads wording, not whole texts
NEAR = 3  # a text is "near" a candidate when it is among the text's NEAR most similar ones
ACTIONS = ("keep", "reject", "merge")
REVIEW_SCHEMA_NAME = "candidate_review"
REVIEW_SCHEMA = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "candidate": {"type": "integer"},
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "into": {"type": "integer"},
                    "reason": {"type": "string", "maxLength": 160},
                },
                "required": ["candidate", "action", "into", "reason"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["decisions"],
    "additionalProperties": False,
}


@dataclass
class Review:
    """What the review decided for the new candidates (indices into them)."""

    rejected: list[int]
    merged: dict[int, int]  # new index -> index into existing + new (the one it merges into)
    reasons: dict[int, str]
    ok: bool = True
    error: str | None = None
    ignored: bool = False  # the answer would have removed every candidate: not applied

    @property
    def removed(self) -> set[int]:
        return set(self.rejected) | set(self.merged)


def review_stats(X: np.ndarray, V: np.ndarray, n_existing: int) -> list[dict]:
    """Per new candidate (columns ``n_existing``… of ``V``): "closest" share, the most similar
    other explanation, the top overlaps (as prompt strings, numbers 1-based) and member rows."""
    m = V.shape[0]
    S = X @ V.T  # texts × candidates
    closest = np.bincount(S.argmax(axis=1), minlength=m) / max(1, len(X))
    near = np.zeros_like(S, dtype=bool)
    top = np.argsort(-S, axis=1)[:, :min(NEAR, m)]
    np.put_along_axis(near, top, True, axis=1)
    shared = near.T.astype(np.int64) @ near.astype(np.int64)  # candidates × candidates: texts near both
    C = V @ V.T
    out = []
    for j in range(n_existing, m):
        others = [k for k in range(m) if k != j]
        similar = max(others, key=lambda k: C[j, k]) if others else None
        overlaps = sorted((k for k in others if shared[j, k]), key=lambda k: -shared[j, k])[:2]
        n_near = max(1, int(near[:, j].sum()))
        out.append({
            "closest": f"{closest[j]:.0%}",
            "similar": f"{similar + 1} (cosine {C[j, similar]:.2f})" if similar is not None else "none",
            "overlaps": ", ".join(f"{k + 1} ({shared[j, k] / n_near:.0%} of its near texts)" for k in overlaps)
                        or "none",
            "members": [int(i) for i in np.argsort(-S[:, j])[:MEMBERS]],
        })
    return out


def review_messages(goal: str, existing: list[tuple[str, str]], reviewed: list[tuple[str, str]],
                    stats: list[dict], texts: list[str]) -> list[dict]:
    """``existing``/``reviewed``: (name, explanation) pairs, numbered 1..e then e+1..; ``stats``
    from :func:`review_stats` (members index ``texts``)."""
    def listed(pairs, start, extra=()):
        return [{"number": start + k, "name": one_line(name), "text": truncate(one_line(text), MAX_EXPLANATION_CHARS),
                 **(extra[k] if extra else {})} for k, (name, text) in enumerate(pairs)]

    e = len(existing)
    before, after = render_split("review", goal=one_line(goal), existing=listed(existing, 1),
                                 reviewed=listed(reviewed, e + 1, stats))
    block = data_block([{"candidate": e + 1 + k, "text": truncate(texts[i], MEMBER_CHARS)}
                        for k, s in enumerate(stats) for i in s["members"]])
    return [{"role": "system", "content": render_prompt("review_system").strip()},
            {"role": "user", "content": before + block + after}]


def validate_review(data) -> dict:
    """Structural check for the client (a ValueError makes it ask the model to repair)."""
    if not isinstance(data, dict) or not isinstance(data.get("decisions"), list):
        raise ValueError('expected an object {"decisions": [...]}')
    return data


def _number(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_review(data, n_existing: int, n_new: int) -> Review:
    """The decisions that can be applied (numbers are 1-based over existing then new)."""
    rejected, merged, reasons = [], {}, {}
    for item in data.get("decisions", []) if isinstance(data, dict) else []:
        if not isinstance(item, dict):
            continue
        number, action = _number(item.get("candidate")), str(item.get("action", "")).strip().lower()
        j = None if number is None else number - 1 - n_existing
        if j is None or not 0 <= j < n_new or j in rejected or j in merged:
            continue  # not a reviewed candidate, or decided already: the first decision stands
        reasons[j] = one_line(str(item.get("reason") or ""))[:160]
        if action == "reject":
            rejected.append(j)
        elif action == "merge":
            into = _number(item.get("into"))
            if into is not None and 1 <= into <= n_existing + n_new and into - 1 != n_existing + j:
                merged[j] = into - 1
    # A merge into a candidate that is itself removed would lose both: keep the merged one.
    removed_targets = {n_existing + j for j in rejected} | {n_existing + j for j in merged}
    merged = {j: t for j, t in merged.items() if t not in removed_targets}
    return Review(rejected, merged, reasons)


def review(client, goal: str, existing: list[tuple[str, str]], reviewed: list[tuple[str, str]],
           X: np.ndarray, V: np.ndarray, texts: list[str], stage: str = "review") -> Review:
    """One review call over the ``reviewed`` (new) candidates; ``V``: unit vectors of existing then
    reviewed candidates; ``X``: unit vectors of the texts the round proposes for."""
    existing = list(existing)[-MAX_LISTED_CANDIDATES:]  # the latest, when there are very many
    V = V[-(len(existing) + len(reviewed)):]
    stats = review_stats(X, V, len(existing))
    messages = review_messages(goal, existing, reviewed, stats, texts)
    result = client.complete_json(stage, messages, REVIEW_SCHEMA, REVIEW_SCHEMA_NAME, validate=validate_review)
    if not result.ok:
        return Review([], {}, {}, ok=False, error=result.error or "no usable answer")
    decision = parse_review(result.data, len(existing), len(reviewed))
    if not existing and len(decision.removed) >= len(reviewed):
        return Review([], {}, decision.reasons, ignored=True)
    return decision
