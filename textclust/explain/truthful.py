"""Offline explanations that are true of their members (issue 15, item 1).

An extractive explanation used to read "mentions refund, charged or billing" with the
cluster's most *distinctive* words. Checked against the texts finally assigned to it, that
predicate held for as few as 10% of them. Here the wording is chosen after assignment,
from the members themselves:

* among the explanation's distinctive terms (c-TF-IDF over the final members against
  every other text), pick greedily the term that the most not-yet-covered members
  mention, up to :data:`MAX_TERMS`;
* if those terms reach :data:`TRUTH_TARGET` of the members, the explanation is the
  predicate "mentions A, B or C" — true of that share, which is measured, not assumed;
* otherwise it is not phrased as a predicate at all: "similar in meaning to: “…”; “…”"
  (its closest members), with the words' real shares ("31% mention refund").

:func:`predicate_truth` is the measure the summary, the report and ``bench/quality.py``
show: the share of members for which a "mentions …" explanation literally holds.
"""

from __future__ import annotations

import re

import numpy as np

from .extractive import TOKEN_PATTERN, scored_terms

PREDICATE_PREFIX = "mentions "
SIMILAR_PREFIX = "similar in meaning to "
TRUTH_TARGET = 0.9  # a predicate must hold for at least this share of its members
MAX_TERMS = 5  # more alternatives than this is no longer a readable predicate
TERM_POOL = 30  # distinctive terms considered per explanation
N_EXAMPLES = 1  # quoted members of a "similar in meaning" explanation (the examples show more)
QUOTE_CHARS = 50

_TOKEN = re.compile(TOKEN_PATTERN)


def grams(text: str) -> set[str]:
    """The 1- and 2-word phrases of ``text`` as the extractive vocabulary sees them."""
    words = _TOKEN.findall(text.lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def is_predicate(text: str) -> bool:
    return text.startswith(PREDICATE_PREFIX)


def predicate_truth(member_texts: list[str], terms: list[str]) -> float | None:
    """Share of ``member_texts`` that mention at least one of ``terms`` (None: no members or terms)."""
    if not member_texts or not terms:
        return None
    wanted = set(terms)
    return sum(1 for t in member_texts if grams(t) & wanted) / len(member_texts)


def choose_terms(member_grams: list[set[str]], pool: list[str], limit: int = MAX_TERMS,
                 target: float = TRUTH_TARGET) -> tuple[list[str], float]:
    """Greedy cover: the pool's terms that the most still-uncovered members mention, until
    ``target`` of the members are covered or ``limit`` terms are chosen; and the share covered."""
    n = len(member_grams)
    uncovered = set(range(n))
    chosen: list[str] = []
    while uncovered and len(chosen) < limit:
        gains = [(sum(1 for i in uncovered if term in member_grams[i]), -rank, term)
                 for rank, term in enumerate(pool) if term not in chosen]
        if not gains:
            break
        gain, _, term = max(gains)
        if gain == 0:
            break
        chosen.append(term)
        uncovered = {i for i in uncovered if term not in member_grams[i]}
        if 1 - len(uncovered) / n >= target:
            break
    return chosen, (1 - len(uncovered) / n) if n else 0.0


def listed(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]


def reword(texts: list[str], members: list[np.ndarray], scores: list[np.ndarray],
           preferred: list[list[str]] | None = None) -> list[dict]:
    """New wording for each group of ``members`` (indices into ``texts``; ``scores`` their
    similarity to the explanation, for choosing quoted examples): ``{"name", "text", "terms",
    "truth"}``, where ``truth`` is the predicate's measured share (None when not a predicate).
    ``preferred``: per group, terms tried first on equal gain (the extractive proposer's, which
    it ordered by closeness to the goal)."""
    labels = np.full(len(texts), -1)
    for j, idx in enumerate(members):
        labels[idx] = j
    # Distinctive terms of each group against everything else (the rest as one group, so a
    # word common to every group is not distinctive).
    rest = len(members)
    pools = scored_terms(texts, np.where(labels < 0, rest, labels), TERM_POOL)
    out = []
    for j, idx in enumerate(members):
        member_texts = [texts[i] for i in idx]
        member_grams = [grams(t) for t in member_texts]
        pool = pools.get(j, ([], None))[0]
        if preferred:
            first = [t for t in preferred[j] if t in pool or any(t in g for g in member_grams)]
            pool = first + [t for t in pool if t not in first]
        terms, share = choose_terms(member_grams, pool)
        if terms and share >= TRUTH_TARGET:
            out.append({"name": " / ".join(terms[:2]), "text": PREDICATE_PREFIX + listed(terms), "terms": terms,
                        "truth": round(share, 4)})
            continue
        order = np.argsort(-np.asarray(scores[j], dtype=float), kind="stable")[:N_EXAMPLES]
        quotes = "; ".join(f"“{_quote(member_texts[i])}”" for i in order)
        words = ", ".join(f"{_mention_share(member_grams, t):.0%} mention {t}" for t in terms[:2])
        text = SIMILAR_PREFIX + quotes + (f" ({words})" if words else "")
        name = " / ".join(terms[:2]) if terms else "unnamed group"
        out.append({"name": name, "text": text, "terms": terms, "truth": None})
    return out


def _mention_share(member_grams: list[set[str]], term: str) -> float:
    return sum(1 for g in member_grams if term in g) / max(1, len(member_grams))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"
