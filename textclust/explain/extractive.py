"""Propose offline: extractive explanations from cluster terms (no language model).

With no language model, an explanation is a predicate built from the words that
distinguish a cluster from the others (class-based TF-IDF, as in BERTopic):
"mentions refund, charged or billing error". The candidate is scored by similarity
to its cluster's centroid, so the words summarise the texts it matches. These
explanations are extractive: they describe, they do not reason about the goal.

The goal still steers the wording and the order, when its embedding is given
(``goal_vector``, and ``embed`` to embed the terms with the same model):

* each cluster's terms are ordered by ``distinctiveness + GOAL_WEIGHT × cosine(term, goal)``,
  where distinctiveness is the term's c-TF-IDF divided by the cluster's highest
  (1 for the most distinctive term). The candidate terms are the cluster's
  ``TERM_POOL × top_n`` most distinctive ones, so a goal-related word must still be
  distinctive to be shown; it only moves ahead of less goal-related ones.
* the candidates of a round are ordered by the cosine between their cluster centroid and
  the goal (most goal-related first; see :func:`textclust.explain.goal.goal_similarity`).

Which texts a candidate matches does not depend on the goal: it is still scored by its
centroid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..cluster import centroids, default_min_cluster_size
from ..errors import SettingsError
from ..interfaces import NOISE, Candidate, Clusterer, RoundContext, RoundProposal

TOKEN_PATTERN = r"(?u)\b[^\W\d_][\w'-]*[^\W_]\b"  # words of 2+ chars, no pure numbers
GOAL_WEIGHT = 1.0  # weight of a term's cosine to the goal against its relative distinctiveness (0..1)
TERM_POOL = 3  # terms considered per cluster: TERM_POOL × top_n most distinctive

Embed = Callable[[list[str]], np.ndarray]

# Words that name no group (issue 25: "said" named 5 of 19 news clusters, "i'm" a complaint
# cluster, "gt" was left over from "&gt;"): reporting verbs and titles, contractions of stop
# words, and HTML entity names. Added to scikit-learn's English list.
_REPORTING = ("said", "says", "say", "told", "mr", "mrs", "ms", "dr", "just", "really")
_ENTITIES = ("gt", "lt", "amp", "quot", "apos", "nbsp")
_NEGATIONS = ("don't", "doesn't", "didn't", "can't", "cannot", "won't", "isn't", "aren't", "wasn't", "weren't",
              "haven't", "hasn't", "hadn't", "wouldn't", "shouldn't", "couldn't", "mustn't", "needn't", "ain't")


def stop_words() -> list[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    contractions = {f"{w}{tail}" for w in ENGLISH_STOP_WORDS | {"i", "you", "we", "they", "he", "she", "it"}
                    for tail in ("'s", "'m", "'re", "'ve", "'d", "'ll")}
    return sorted(ENGLISH_STOP_WORDS | contractions | set(_REPORTING) | set(_ENTITIES) | set(_NEGATIONS))


def scored_terms(texts: list[str], labels: np.ndarray, pool: int) -> dict[int, tuple[list[str], np.ndarray]]:
    """Per non-noise cluster: its ``pool`` most distinctive terms (1–2 word phrases, c-TF-IDF > 0),
    best first, and their c-TF-IDF scores."""
    from scipy.sparse import csr_matrix

    cluster_ids = sorted(set(labels.tolist()))
    from sklearn.feature_extraction.text import CountVectorizer  # imported when first needed: it is slow

    vectorizer = CountVectorizer(
        stop_words=stop_words(),
        ngram_range=(1, 2),
        token_pattern=TOKEN_PATTERN,
        min_df=1,
        lowercase=True,
    )
    try:
        per_text = vectorizer.fit_transform(texts).astype(np.float64)
    except ValueError:  # only stop words / no tokens at all
        return {c: ([], np.zeros(0)) for c in cluster_ids if c != NOISE}
    vocabulary = np.array(vectorizer.get_feature_names_out())
    # Counted per text, then summed per cluster: a two-word phrase never spans two texts.
    row_of = {c: r for r, c in enumerate(cluster_ids)}
    membership = csr_matrix((np.ones(len(texts)), ([row_of[c] for c in labels.tolist()], np.arange(len(texts)))),
                            shape=(len(cluster_ids), len(texts)))
    counts = (membership @ per_text).toarray()
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
        order = [j for j in np.argsort(-scores[row])[:pool] if scores[row, j] > 0]
        result[c] = ([str(vocabulary[j]) for j in order], scores[row, order])
    return result


def goal_term_order(terms: list[str], scores: np.ndarray, term_vectors: np.ndarray, goal_vector: np.ndarray,
                    weight: float = GOAL_WEIGHT) -> list[str]:
    """``terms`` reordered by distinctiveness (score / best score) + ``weight`` × cosine to the goal.
    Ties keep the distinctiveness order."""
    if not terms:
        return []
    distinctiveness = scores / scores.max()
    relevance = term_vectors @ goal_vector
    order = np.argsort(-(distinctiveness + weight * relevance), kind="stable")
    return [terms[i] for i in order]


def distinctive_terms(
    texts: list[str],
    labels: np.ndarray,
    top_n: int = 8,
    goal_vector: np.ndarray | None = None,
    embed: Embed | None = None,
    goal_weight: float = GOAL_WEIGHT,
) -> dict[int, list[str]]:
    """Top c-TF-IDF terms (1–2 word phrases) per non-noise cluster label; with ``goal_vector``
    and ``embed``, the most goal-related of the distinctive terms first (see module docstring)."""
    pools = scored_terms(texts, labels, TERM_POOL * top_n)
    steer = goal_vector is not None and embed is not None
    vectors: dict[str, np.ndarray] = {}
    if steer:
        vocabulary = sorted({t for terms, _ in pools.values() for t in terms})
        if vocabulary:
            vectors = dict(zip(vocabulary, _unit(np.asarray(embed(vocabulary), dtype=np.float64))))
        goal = _unit(np.asarray(goal_vector, dtype=np.float64))
    result = {}
    for c, (terms, scores) in pools.items():
        if steer and terms:
            terms = goal_term_order(terms, scores, np.vstack([vectors[t] for t in terms]), goal, goal_weight)
        result[c] = _distinct_phrases(terms, top_n)
    return result


def _unit(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=-1, keepdims=True)
    return M / np.where(norms == 0, 1.0, norms)


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
    goal_vector: np.ndarray | None = None,
    embed: Embed | None = None,
) -> list[Candidate]:
    """One extractive candidate per non-noise cluster in ``labels`` (aligned with ``texts``).

    Without ``goal_vector`` the candidates come in cluster-label order and their terms in
    c-TF-IDF order. With it, the candidates are ordered by their centroid's cosine to the
    goal (most related first) and, when ``embed`` is given too, their terms are goal-ranked.
    """
    if goal_vector is not None and np.shape(goal_vector) != (X.shape[1],):
        raise ValueError(f"goal_vector has shape {np.shape(goal_vector)}; the texts' vectors have {X.shape[1]} "
                         "dimensions (embed the goal with the same model as the texts)")
    terms = distinctive_terms(texts, labels, goal_vector=goal_vector, embed=embed)
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
    if goal_vector is not None and candidates:
        from .goal import goal_similarity

        order = np.argsort(-goal_similarity(candidates, goal_vector), kind="stable")
        candidates = [candidates[i] for i in order]
    return candidates


class ExtractiveProposer:
    """The offline :class:`~textclust.interfaces.Proposer`: one extractive candidate per cluster.

    Round 1 proposes for the clusters of the whole corpus. Round r > 1 re-clusters only the
    texts no selected explanation covers (``clusterer.subset_clusterer``: HDBSCAN with the
    corpus's minimum cluster size, so leftovers are not split into crumbs) and proposes for
    those clusters; the texts already explained are known negatives for calibration.
    ``goal_vector`` and ``embed`` (the texts' model) order candidates and words by the goal.
    """

    def __init__(self, clusterer: Clusterer, k: int | None = None, goal_vector: np.ndarray | None = None,
                 embed: Embed | None = None):
        self.clusterer = clusterer
        self.k = k
        self.goal_vector = goal_vector
        self.embed = _Memo(embed) if embed is not None and goal_vector is not None else None

    def propose(self, context: RoundContext) -> RoundProposal:
        if context.round == 1:
            n_clusters = len(set(context.labels.tolist()) - {NOISE})
            if self.k is not None and n_clusters < self.k:
                raise SettingsError(f"asked for {self.k} explanations but the clustering found only {n_clusters} "
                                    "clusters")
            return RoundProposal(self._candidates(context, context.labels, 1), context.labels)
        X, uncovered = context.X, context.pool
        size = getattr(self.clusterer, "min_cluster_size", None) or default_min_cluster_size(len(X))
        if uncovered.sum() < 2 * size:
            return RoundProposal([], context.labels, stop_reason="too few uncovered texts to cluster again")
        fitted = self.clusterer.subset_clusterer(size).fit(X[uncovered])
        if not (fitted.labels_ != NOISE).any():
            return RoundProposal([], context.labels, stop_reason="the uncovered texts form no cluster")
        labels = np.full(len(X), NOISE)
        labels[uncovered] = fitted.labels_
        # Known negatives for calibration: texts already explained, by their explanation.
        primary, _, _ = context.result.primary()
        calibration = np.where(uncovered, labels, np.where(primary >= 0, 1_000_000 + primary, NOISE))
        new = self._candidates(context, labels, context.round, calibration)
        if not new:
            return RoundProposal([], labels, stop_reason="no new candidates")
        return RoundProposal(new, labels)

    def _candidates(self, context: RoundContext, labels, round_number, calibration=None) -> list[Candidate]:
        return propose_extractive(context.X, context.texts, labels, round=round_number,
                                  calibration_labels=calibration, goal_vector=self.goal_vector, embed=self.embed)


class _Memo:
    """Embeds each distinct word once per explain call (rounds share most words)."""

    def __init__(self, embed: Embed):
        self.embed = embed
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(w for w in words if w not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, np.asarray(self.embed(missing))))
        return np.vstack([self.vectors[w] for w in words]) if words else np.zeros((0, 0))
