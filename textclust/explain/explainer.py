"""Propose → assign → select, repeated on what is left uncovered.

This loop is the GoalEx method's skeleton; the proposer is pluggable. Offline, it
proposes extractive explanations from clusters; round r > 1 re-clusters only the
texts no selected explanation covers, proposes for those, and re-selects among all
candidates. It stops when the rounds run out or coverage stops improving.

Given the goal's embedding (``explain(..., goal_vector=...)``) and a function that embeds
words with the same model (``OfflineExplainer(embed=...)``), each round's candidates are
ordered by their similarity to the goal and each candidate's words are goal-ranked
(see ``propose_offline``); which texts an explanation matches does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..cluster import NOISE, EmbeddingClusterer, default_min_cluster_size
from .assign import Assignment, assign
from .candidates import Candidate
from .propose_offline import propose_extractive
from .select import SelectionResult, select_explanations
from .seeded import SeedAssignment


def join_seeds(seeded: SeedAssignment, proposed: Assignment | None) -> tuple[Assignment, np.ndarray]:
    """Seed columns first, then the proposed candidates' columns. A seed's score is its
    classifier probability where the text fits it, -1 elsewhere (so score >= threshold
    is exactly "fits")."""
    seed_scores = np.where(seeded.matches, seeded.scores, -1.0)
    n = len(seed_scores)
    reasons = seeded.reasons
    if proposed is None:
        return Assignment(seed_scores, seeded.thresholds.astype(np.float64), seeded.matches.copy()), reasons
    extra = np.full((n, proposed.scores.shape[1]), None, dtype=object)
    return Assignment(
        scores=np.hstack([seed_scores, proposed.scores]),
        thresholds=np.concatenate([seeded.thresholds, proposed.thresholds]),
        matches=np.hstack([seeded.matches, proposed.matches]),
    ), np.hstack([reasons, extra])

EXPLAINER_OFFLINE = "offline-extractive"
# --only-candidates: no proposing, texts classified into the seeded explanations (seeded.py).
EXPLAINER_SEEDED = "offline-seeded"
OFFLINE_NOTICE = (
    "No language model was configured: explanations are extractive (distinctive words of each "
    "cluster, those closest in meaning to the goal first) and texts are assigned by embedding "
    "similarity; the goal orders words and explanations but does not change which texts are grouped."
)
# Coverage must rise by at least this much for another round to be kept.
MIN_COVERAGE_GAIN = 0.005


@dataclass
class RoundRecord:
    round: int
    labels: np.ndarray  # clustering of this round, over all texts (-1: noise or not clustered)
    n_candidates: int
    selection: SelectionResult


@dataclass
class Explanation:
    """Outcome of the loop: all candidates, their matches, and the chosen ones."""

    candidates: list[Candidate]
    assignment: Assignment
    selection: SelectionResult
    rounds: list[RoundRecord] = field(default_factory=list)

    margin: float | None = None
    n_seeds: int = 0  # the first n_seeds candidates are seeded: no margin, always kept
    reasons: np.ndarray | None = None  # texts × candidates: why a text matches (seeds only)

    @property
    def selected(self) -> list[int]:
        return self.selection.chosen

    def final_matches(self) -> np.ndarray:
        """Matches once the explanations are chosen: a text fits a selected explanation when it
        reaches that explanation's threshold and is within ``margin`` of its best *selected*
        score. (During selection the margin is relative to all candidates; a text whose best
        candidate was not chosen is then judged against the chosen ones.)"""
        A = self.assignment
        final = np.zeros_like(A.matches)
        sel = np.array(self.selected, dtype=int)
        if len(sel) == 0:
            return final
        scores = A.scores[:, sel]
        fits = scores >= A.thresholds[sel][None, :]
        proposed = sel >= self.n_seeds
        if self.margin is not None and proposed.any():
            best = scores[:, proposed].max(axis=1, keepdims=True)
            fits[:, proposed] &= scores[:, proposed] >= best - self.margin
        final[:, sel] = fits
        return final

    def primary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per text: index of its best-scoring matching selected candidate (-1 = uncovered),
        that score (NaN when uncovered), and how many selected candidates it matches."""
        n = self.assignment.scores.shape[0]
        if not self.selected:
            return np.full(n, -1), np.full(n, np.nan), np.zeros(n, dtype=int)
        sel = np.array(self.selected)
        scores = self.assignment.scores[:, sel]
        matches = self.final_matches()[:, sel]
        masked = np.where(matches, scores, -np.inf)
        best = masked.argmax(axis=1)
        covered = matches.any(axis=1)
        index = np.where(covered, sel[best], -1)
        score = np.where(covered, scores[np.arange(n), best], np.nan)
        return index, score, matches.sum(axis=1)


class OfflineExplainer:
    """Runs the loop with the extractive proposer (no language model)."""

    name = EXPLAINER_OFFLINE

    def __init__(
        self,
        rounds: int = 2,
        k: int | None = None,
        min_share: float = 0.005,
        lambda_miss: float = 1.0,
        lambda_overlap: float = 0.5,
        clusterer: EmbeddingClusterer | None = None,
        beta: float = 2.0,
        margin: float | None = 0.05,
        seeds: tuple[list[Candidate], "SeedAssignment"] | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ):
        # Embeds words with the texts' model (unit vectors); used only with a goal vector.
        self.embed = embed
        self.seeds = seeds  # (seed candidates, their offline assignment): joined to every round
        self.beta = beta
        self.margin = margin
        self.rounds = rounds
        self.k = k
        self.min_share = min_share
        self.lambda_miss = lambda_miss
        self.lambda_overlap = lambda_overlap
        self.clusterer = clusterer or EmbeddingClusterer()

    def explain(self, X: np.ndarray, texts: list[str], labels: np.ndarray, weights: np.ndarray, *,
                goal_vector: np.ndarray | None = None) -> Explanation:
        """Run the rounds. ``goal_vector``: the goal's unit embedding (same model as ``X``), or None."""
        seed_candidates = self.seeds[0] if self.seeds else []
        embed = _Memo(self.embed) if self.embed is not None and goal_vector is not None else None

        def propose(round_labels, round_number, calibration=None):
            return propose_extractive(X, texts, round_labels, round=round_number, calibration_labels=calibration,
                                      goal_vector=goal_vector, embed=embed)

        candidates = seed_candidates + propose(labels, 1)
        result = self._assign_and_select(X, candidates, weights)
        result.rounds.append(RoundRecord(1, labels, len(candidates), result.selection))
        for round_number in range(2, self.rounds + 1):
            uncovered = ~result.final_matches().any(axis=1)
            round_labels = self._recluster(X, uncovered)
            if round_labels is None:
                break
            # Known negatives for calibration: texts already explained, by their explanation.
            primary, _, _ = result.primary()
            calibration = np.where(uncovered, round_labels, np.where(primary >= 0, 1_000_000 + primary, NOISE))
            new = propose(round_labels, round_number, calibration)
            if not new:
                break
            attempt = self._assign_and_select(X, candidates + new, weights)
            if attempt.selection.coverage < result.selection.coverage + MIN_COVERAGE_GAIN:
                break
            candidates = candidates + new
            attempt.rounds = result.rounds + [RoundRecord(round_number, round_labels, len(new), attempt.selection)]
            result = attempt
        return result

    def _assign_and_select(self, X, candidates: list[Candidate], weights) -> Explanation:
        n_seeds = len(self.seeds[0]) if self.seeds else 0
        assignment = assign(X, candidates[n_seeds:], self.beta, self.margin) if len(candidates) > n_seeds else None
        reasons = None
        if n_seeds:
            assignment, reasons = join_seeds(self.seeds[1], assignment)
        selection = select_explanations(
            assignment.matches,
            forced=list(range(n_seeds)),
            k=self.k,
            cost=None if self.k else self.min_share * weights.sum() * self.lambda_miss,
            weights=weights,
            lambda_miss=self.lambda_miss,
            lambda_overlap=self.lambda_overlap,
        )
        return Explanation(candidates=candidates, assignment=assignment, selection=selection, margin=self.margin,
                           n_seeds=n_seeds, reasons=reasons)

    def _recluster(self, X: np.ndarray, subset: np.ndarray) -> np.ndarray | None:
        """HDBSCAN on the ``subset`` texts alone; labels over all texts (-1 outside the subset).

        Later rounds always use HDBSCAN (they look for whatever groups are left, however
        many) with the first round's reduction, and keep the whole corpus's minimum
        cluster size so that leftovers are not split into crumbs.
        """
        size = self.clusterer.min_cluster_size or default_min_cluster_size(len(X))
        if subset.sum() < 2 * size:
            return None
        settings = {k: v for k, v in vars(self.clusterer).items() if not k.endswith("_")}
        settings.update(algorithm="hdbscan", k=None, min_cluster_size=size)
        fitted = EmbeddingClusterer(**settings).fit(X[subset])
        if not (fitted.labels_ != NOISE).any():
            return None
        labels = np.full(len(X), NOISE)
        labels[subset] = fitted.labels_
        return labels


class _Memo:
    """Embeds each distinct word once per explain() call (rounds share most words)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]):
        self.embed = embed
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(w for w in words if w not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, np.asarray(self.embed(missing))))
        return np.vstack([self.vectors[w] for w in words]) if words else np.zeros((0, 0))
