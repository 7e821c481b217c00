"""Stage 4, offline fallback — propose extractive explanations from cluster terms.

With no language model, an explanation is a predicate built from the words that
distinguish a cluster from the others (class-based TF-IDF, as in BERTopic):
"mentions refund, charged or billing error". The candidate is scored by similarity
to its cluster's centroid, so the words summarise the texts it matches. These
explanations are extractive: they describe, they do not reason about the goal.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

from ..cluster import NOISE, centroids
from .candidates import Candidate

TOKEN_PATTERN = r"(?u)\b[^\W\d_][\w'-]*[^\W_]\b"  # words of 2+ chars, no pure numbers


def distinctive_terms(texts: list[str], labels: np.ndarray, top_n: int = 8) -> dict[int, list[str]]:
    """Top c-TF-IDF terms (1–2 word phrases) per non-noise cluster label."""
    cluster_ids = sorted(set(labels.tolist()))
    documents = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in cluster_ids]
    vectorizer = CountVectorizer(
        stop_words="english",
        ngram_range=(1, 2),
        token_pattern=TOKEN_PATTERN,
        min_df=1,
        lowercase=True,
    )
    try:
        counts = vectorizer.fit_transform(documents).astype(np.float64)
    except ValueError:  # only stop words / no tokens at all
        return {c: [] for c in cluster_ids if c != NOISE}
    vocabulary = np.array(vectorizer.get_feature_names_out())
    counts = counts.toarray()
    # Terms must recur: a phrase seen once says nothing about a cluster.
    counts[counts < 2] = 0
    class_sizes = counts.sum(axis=1, keepdims=True)
    tf = counts / np.maximum(class_sizes, 1)
    average_words = class_sizes.mean()
    idf = np.log(1 + average_words / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    result = {}
    for row, c in enumerate(cluster_ids):
        if c == NOISE:
            continue
        order = np.argsort(-scores[row])
        result[c] = _distinct_phrases([vocabulary[j] for j in order[: top_n * 3] if scores[row, j] > 0], top_n)
    return result


def _distinct_phrases(terms: list[str], limit: int) -> list[str]:
    """Drop terms that repeat a kept phrase ("refund" after "refund request", and vice versa)."""
    kept: list[str] = []
    for term in terms:
        words = set(term.split())
        if any(words <= set(k.split()) or set(k.split()) <= words for k in kept):
            continue
        kept.append(term)
        if len(kept) == limit:
            break
    return kept


def phrase_explanation(terms: list[str]) -> tuple[str, str]:
    """(short name, predicate) from distinctive terms."""
    if not terms:
        return "unnamed group", "is similar to the other texts of this group (no distinctive words found)"
    shown = terms[:4]
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return " / ".join(terms[:2]), f"mentions {listed}"


def propose_extractive(
    X: np.ndarray,
    texts: list[str],
    labels: np.ndarray,
    round: int = 1,
    calibration_labels: np.ndarray | None = None,
) -> list[Candidate]:
    """One extractive candidate per non-noise cluster in ``labels`` (aligned with ``texts``)."""
    terms = distinctive_terms(texts, labels)
    calib = labels if calibration_labels is None else calibration_labels
    candidates = []
    for label, vector in centroids(X, labels).items():
        name, text = phrase_explanation(terms.get(label, []))
        candidates.append(
            Candidate(
                name=name,
                text=text,
                vector=vector.astype(np.float32),
                source="extractive",
                round=round,
                source_cluster=label,
                terms=terms.get(label, []),
                calibration_labels=calib,
            )
        )
    return candidates
