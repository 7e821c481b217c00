"""Offline classification of texts into the user's own candidates (open set, no language model).

Which candidate (issue 23, measured in bench/seeded.py): :func:`seeded_partition` — centred
vectors, start at each text's most similar seed, guarded seeded k-means (:func:`seeded_kmeans`);
plain cosine argmax when the guard keeps no step. Whether any ("none"): the detector below
(:func:`open_set_none`), kept only when :func:`none_earns_its_place`. The detector:

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
SEED_WEIGHT = 0.5
SEEDED_ITERATIONS = 3
RETENTION = 0.7
NONE_RATIO = 0.25


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


def unit_rows(A: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(norms > 0, norms, 1.0)


def centre(X: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texts and seeds less the corpus mean, back to unit length (MiniLM's vectors share a
    common direction; a seed's wording that leans on it is "closer to everything")."""
    mu = X.mean(axis=0, keepdims=True)
    return unit_rows(X - mu), unit_rows(E - mu)


def seed_alignment(Xc: np.ndarray, Ec: np.ndarray, winner: np.ndarray) -> float:
    """How clearly each candidate's texts point at its own seed: over the candidates with texts,
    the mean of (cosine of the mean direction of j's texts to seed j − the highest to another seed)."""
    m = len(Ec)
    if m < 2:
        return 1.0
    margins = []
    for j in range(m):
        own = winner == j
        if own.any():
            c = unit_rows(Xc[own].sum(axis=0, keepdims=True))[0] @ Ec.T
            margins.append(c[j] - np.delete(c, j).max())
    return float(np.mean(margins)) if margins else 0.0


def seeded_kmeans(Xc: np.ndarray, Ec: np.ndarray, iterations: int = SEEDED_ITERATIONS,
                  seed_weight: float = SEED_WEIGHT, retention: float | None = RETENTION,
                  start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """From ``start`` (default: each text's most similar seed), k-means steps whose prototype j is
    ``seed_weight`` × seed j + (1 − ``seed_weight``) × the mean direction of j's texts (both unit
    length). A step is kept only while the partition still points at the seeds: its
    :func:`seed_alignment` at least ``retention`` × the start's (None: no guard). Returns each
    text's candidate, its similarity to every final prototype, and the number of steps kept."""
    S = Xc @ Ec.T
    winner = S.argmax(axis=1) if start is None else np.asarray(start)
    floor = None if retention is None else retention * seed_alignment(Xc, Ec, winner)
    steps = 0
    for _ in range(iterations):
        P = Ec.astype(np.float64).copy()
        for j in range(len(Ec)):
            own = winner == j
            if own.any():
                P[j] = seed_weight * Ec[j] + (1 - seed_weight) * unit_rows(Xc[own].sum(axis=0, keepdims=True))[0]
        S_new = Xc @ unit_rows(P).T
        new = S_new.argmax(axis=1)
        if floor is not None and seed_alignment(Xc, Ec, new) < floor:
            break
        S, steps = S_new, steps + 1
        if np.array_equal(new, winner):
            break
        winner = new
    return winner, S, steps


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


def seeded_partition(X: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-set choice among the seeds: guarded seeded k-means on the centred vectors; when no
    step passes the guard, plain cosine argmax (centring alone is not reliably better).
    Returns each text's candidate, its similarity to every prototype, and the start (argmax)."""
    raw = cosine_zero_shot(X, E)
    Xc, Ec = centre(X, E)
    winner, S, steps = seeded_kmeans(Xc, Ec)
    if steps == 0:
        return raw, (X @ E.T).astype(np.float64), raw
    return winner, S, (Xc @ Ec.T).argmax(axis=1)


def none_earns_its_place(X: np.ndarray, E: np.ndarray, winner: np.ndarray, none: np.ndarray,
                         ratio: float = NONE_RATIO) -> bool:
    """Keep "none" only when its texts stand apart: in the centred space, their mean cosine to the
    closest seed group (mean direction of a candidate's covered texts) is below ``ratio`` × the
    covered texts' mean cosine to their closest group. Measured: complaints with 3 of 6 reasons
    seeded 0.07; 13 closed-set fields of the shared corpora 0.36 to 0.60."""
    if not none.any() or none.all():
        return bool(none.any())
    Xc, _ = centre(X, E)
    groups = [j for j in range(len(E)) if ((winner == j) & ~none).any()]
    C = unit_rows(np.vstack([Xc[(winner == j) & ~none].sum(axis=0) for j in groups]))
    T = Xc @ C.T
    best = T.max(axis=1)
    return bool(best[none].mean() < ratio * best[~none].mean())


def classify_user_candidates(X: np.ndarray, E: np.ndarray, quantile: float = 0.5, random_state: int = 0,
                 none_beta: float = NONE_BETA) -> UserCandidateAssignment:
    """Open-set assignment of the rows of ``X`` to the user candidates embedded as rows of ``E``:
    the seeded partition (:func:`seeded_partition`) decides which candidate, the "none" detector
    (:func:`open_set_none`) whether any, when :func:`none_earns_its_place`."""
    X = np.asarray(X, dtype=np.float64)
    E = np.asarray(E, dtype=np.float64)
    n, m = len(X), len(E)
    detected, cuts, n_none = open_set_none(X, E, quantile, random_state, none_beta)
    if m == 1:  # nothing to choose between: the detector decides alone
        none = detected
        winner, S, start = np.zeros(n, dtype=int), (X @ E.T), np.zeros(n, dtype=int)
    else:
        winner, S, start = seeded_partition(X, E)
        none = detected if none_earns_its_place(X, E, winner, detected) else np.zeros(n, dtype=bool)
    matches = np.zeros((n, m), dtype=bool)
    matches[np.arange(n), winner] = True
    matches[none] = False
    half = (1.0 + np.clip(S, -1.0, 1.0)) / 2.0
    scores = np.where(matches, 0.5 + half / 2.0, half / 2.0)  # a match scores >= 0.5, anything else < 0.5
    reasons = np.full((n, m), None, dtype=object)
    for j in range(m):
        reasons[matches[:, j], j] = REASON_CLASSIFIER
        reasons[matches[:, j] & (start == j), j] = REASON_SEED
    return UserCandidateAssignment(
        scores=scores, matches=matches, thresholds=np.full(m, 0.5), reasons=reasons,
        cosine_thresholds=cuts, n_none_examples=n_none,
    )


def open_set_none(X: np.ndarray, E: np.ndarray, quantile: float = 0.5, random_state: int = 0,
                  none_beta: float = NONE_BETA) -> tuple[np.ndarray, np.ndarray, int]:
    """The "none" detector (steps 1-4 of the module's description): texts that fit no candidate,
    the per-candidate cosine cuts, and the number of "none" examples."""
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
    return ~matches.any(axis=1), cuts, int((pseudo == -1).sum())
