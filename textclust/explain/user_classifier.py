"""Offline classification of texts into the user's own candidates (open set, no language model).

1. Score: cosine between each text's embedding and each user candidate's explanation
   embedding, centred per candidate (minus its mean score over the corpus), so a candidate
   whose wording is simply "closer to everything" does not win every text.
2. Pseudo-labelled examples: the texts a candidate wins by the widest margin over the
   others (top ``quantile`` of its winners) become its examples (reason "seed match").
3. "None" examples, calibrated on the data: for each candidate, a cosine threshold that
   best separates its own examples from the other candidates' examples (maximum F2, the
   same rule as the extractive explanations' thresholds: a missed member costs more than a
   stray one). A text below every candidate's threshold is no more similar to any of them
   than the texts that are about another one: it is an example of "none of them". When
   the candidates are hard to tell apart in the embedding (e.g. "satisfied" vs
   "dissatisfied"), the thresholds come out low and few texts are "none"; when they are
   distinct topics, texts about a topic no candidate names fall below all of them. Texts
   no closer to any candidate than an unrelated text (best raw cosine <= 0) are "none"
   examples too. With a single candidate there is nothing to calibrate against: its least
   similar texts (bottom ``quantile``) stand for "not this".
4. A logistic regression (``random_state``) on the embeddings learns from these examples
   and scores every text. A text fits each candidate whose probability reaches both the
   "none" probability and 1 / number of classes; its reason is "seed match" when it was one
   of that candidate's examples, else "classifier". A text that fits none is uncovered.

The same texts and candidates always give the same result (no sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .thresholds import calibrate_threshold

REASON_SEED = "seed match"
REASON_CLASSIFIER = "classifier"
MIN_EXAMPLES = 3
NONE_BETA = 2.0  # F-beta of the per-candidate cosine thresholds that define "none" examples


@dataclass
class UserCandidateAssignment:
    scores: np.ndarray  # n_texts × n_candidates probabilities
    matches: np.ndarray  # bool
    thresholds: np.ndarray  # per candidate (probability)
    reasons: np.ndarray  # n_texts × n_candidates object: reason where matched, else None
    cosine_thresholds: np.ndarray | None = None  # per candidate: below all of them, a text is a "none" example
    n_none_examples: int = 0


def cosine_zero_shot(X: np.ndarray, E: np.ndarray) -> np.ndarray:
    """The baseline: index of the user candidate whose explanation is most similar to each text."""
    return (X @ E.T).argmax(axis=1)


def none_thresholds(cos: np.ndarray, pseudo: np.ndarray, beta: float = NONE_BETA) -> np.ndarray:
    """Per candidate j: the cosine cut that best separates j's examples (``pseudo == j``) from the
    other candidates' examples (max F-beta). -inf when j has no examples or there are no others."""
    m = cos.shape[1]
    cuts = np.full(m, -np.inf)
    for j in range(m):
        positive = pseudo == j
        negative = (pseudo >= 0) & ~positive
        if positive.any() and negative.any():
            cuts[j] = calibrate_threshold(cos[:, j], positive, negative, beta)
    return cuts


def classify_user_candidates(X: np.ndarray, E: np.ndarray, quantile: float = 0.5, random_state: int = 0,
                 none_beta: float = NONE_BETA) -> UserCandidateAssignment:
    """Open-set assignment of the rows of ``X`` to the user candidates embedded as rows of ``E``."""
    from sklearn.linear_model import LogisticRegression

    n, m = len(X), len(E)
    cos = (X @ E.T).astype(np.float64)
    centred = cos - cos.mean(axis=0, keepdims=True)
    if m > 1:
        top2 = np.sort(centred, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        winner = centred.argmax(axis=1)
    else:
        margin, winner = centred[:, 0], np.zeros(n, dtype=int)
    pseudo = np.full(n, -2)  # pseudo-labels: -2 unlabelled, -1 "none", j candidate j
    best = cos.max(axis=1)
    far = best <= 0.0  # no closer to any candidate than an unrelated (orthogonal) text
    for j in range(m):
        own = np.flatnonzero((winner == j) & ~far)
        if len(own) == 0:
            continue
        take = max(MIN_EXAMPLES, int(np.ceil(quantile * len(own))))
        chosen = own[np.argsort(-margin[own], kind="stable")[:take]]
        if m == 1:
            chosen = chosen[margin[chosen] > 0]
        pseudo[chosen] = j
    cuts = none_thresholds(cos, pseudo, none_beta)
    below_all = (cos < cuts[None, :]).all(axis=1)  # all False when a candidate has no cut (-inf)
    none = far | (below_all & (pseudo == -2))
    if none.sum() >= MIN_EXAMPLES:
        pseudo[none] = -1
    elif m == 1:  # one candidate: its least similar texts stand for "not this"
        low = np.argsort(margin, kind="stable")[: max(MIN_EXAMPLES, int(quantile * n))]
        pseudo[low[pseudo[low] == -2]] = -1
    labelled = pseudo > -2
    classes = np.unique(pseudo[labelled])
    probs = np.zeros((n, m))
    p_none = np.zeros(n)
    if len(classes) >= 2:
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)
        clf.fit(X[labelled], pseudo[labelled])
        P = clf.predict_proba(X)
        for c_index, c in enumerate(clf.classes_):
            if c == -1:
                p_none = P[:, c_index]
            else:
                probs[:, c] = P[:, c_index]
        threshold = 1.0 / len(classes)
        matches = (probs >= threshold) & (probs >= p_none[:, None])
    else:  # a single class of examples: nothing to learn, fall back to the examples
        for j in range(m):
            probs[pseudo == j, j] = 1.0
        threshold = 1.0
        matches = probs >= threshold
    reasons = np.full((n, m), None, dtype=object)
    for j in range(m):
        reasons[matches[:, j], j] = REASON_CLASSIFIER
        reasons[matches[:, j] & (pseudo == j), j] = REASON_SEED
    return UserCandidateAssignment(
        scores=probs, matches=matches, thresholds=np.full(m, threshold), reasons=reasons,
        cosine_thresholds=cuts, n_none_examples=int((pseudo == -1).sum()),
    )
