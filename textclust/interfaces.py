"""The seams between stages: the data that crosses them and the interfaces behind them.

    ingest → embed → cluster → explain (propose → assign → select, in rounds) → store → report

Each stage is behind one small interface below; everything else in the package is an
implementation of one of them or code that composes them (``pipeline.py``):

============  =====================================  ==========================================
seam          interface                              implementations
============  =====================================  ==========================================
embed         :class:`Embedder` (``encode``)          ``embed.SentenceTransformerEmbedder``
cluster       :class:`Clusterer` (``fit``/labels_)    ``cluster.EmbeddingClusterer``
propose       :class:`Proposer`                       ``explain.extractive.ExtractiveProposer``,
                                                      ``explain.model.ModelProposer``
assign        :class:`Assigner`                       ``explain.similarity.SimilarityAssigner``,
                                                      ``explain.model.ModelAssigner``
model         :class:`ModelClient`                    ``llm.client.LLMClient``
store         :class:`RunStore`                       ``store.Database`` (SQLite)
============  =====================================  ==========================================

One round loop (``explain.loop.RoundLoop``) drives any proposer and assigner. This module
imports nothing of the package but its errors, so every stage may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

NOISE = -1  # the label of a text a clusterer leaves out (HDBSCAN's outliers)


# --- the data that crosses the seams ----------------------------------------------------------


@dataclass
class Candidate:
    """One explanation: a predicate about a text ("the customer was charged twice") and how
    to score texts against it.

    ``vector`` is what texts are compared with (unit length). ``calibration_labels``
    (optional, one entry per text) says which texts are known positives
    (== ``source_cluster``) and known negatives (another label, not -1), from which the
    similarity assigner calibrates this candidate's threshold.
    """

    name: str
    text: str
    vector: np.ndarray
    source: str  # "extractive" offline, "llm" from a language model, "seed" given by the user
    round: int = 1
    source_cluster: int | None = None
    terms: list[str] = field(default_factory=list)
    calibration_labels: np.ndarray | None = None


@dataclass
class Assignment:
    """Which texts fit which candidates (texts × candidates): multi-label, maybe none.

    ``scores`` are what ranks a text's matches (cosine or classifier probability offline;
    1 / 0 / NaN = yes / no / never asked from a language model); ``matches`` is the
    assigner's verdict. ``margin`` (offline): after selection a text fits a selected
    explanation only within this much of its best selected score. ``judged`` marks the
    candidates any text was judged against (only those can be selected); ``failed``
    marks texts whose judgment could not be obtained (a model answer that did not parse).
    ``affinity`` breaks ties of ``scores``. ``home`` (offline, over a partition): per text, the
    candidate proposed for the text's own cluster (-1: none); once the explanations are chosen
    the text keeps it when it is selected, else it takes its most similar selected one.
    """

    scores: np.ndarray
    thresholds: np.ndarray
    matches: np.ndarray
    margin: float | None = None
    judged: np.ndarray | None = None  # per candidate; None = all
    failed: np.ndarray | None = None  # per text; None = none
    reasons: np.ndarray | None = None  # texts × candidates: why a text fits (object), or None
    evidence: dict = field(default_factory=dict)  # (text, candidate) -> the model's quote, found in the text
    unverified: dict = field(default_factory=dict)  # (text, candidate) -> a quote the text does not contain
    # texts × candidates: how well a text fits, for ranking texts whose scores tie (a model's
    # "yes" is 1.0 for every match): cosine of text and explanation embeddings. None = no ties
    # to break (offline scores are similarities already).
    affinity: np.ndarray | None = None
    home: np.ndarray | None = None


@dataclass
class SelectionResult:
    chosen: list[int]  # candidate indices, ascending
    objective: float
    status: str  # "optimal", or why not
    coverage: float  # weighted share of texts covered by ≥1 chosen candidate


@dataclass
class RoundRecord:
    round: int
    labels: np.ndarray  # this round's clustering, over all texts (-1: noise or not in the round)
    n_candidates: int  # new candidates of the round
    selection: SelectionResult


@dataclass
class ExplainResult:
    """What the round loop produces: every candidate, their matches, the chosen ones, and how
    the loop went. ``primary()`` gives each text its one explanation."""

    candidates: list[Candidate]
    assignment: Assignment
    selection: SelectionResult
    rounds: list[RoundRecord] = field(default_factory=list)
    n_user: int = 0  # the first n_user candidates are the user's own: always kept
    stop_reason: str | None = None  # why the loop ended
    incomplete: bool = False  # a budget ran out: the best result so far
    notes: list[str] = field(default_factory=list)  # what the user should know (e.g. fewer candidates than k)
    n_calls: dict = field(default_factory=dict)  # model calls by stage (empty offline)
    children: dict = field(default_factory=dict)  # depth 2: selected index -> ExplainResult of its members
    child_members: dict = field(default_factory=dict)  # depth 2: selected index -> text indices

    @property
    def selected(self) -> list[int]:
        return self.selection.chosen

    @property
    def unparsed(self) -> np.ndarray | None:
        """Per text: no judgment could be obtained and it fits nothing (None when none failed)."""
        failed = self.assignment.failed
        if failed is None:
            return None
        return failed & ~self.assignment.matches.any(axis=1)

    def final_matches(self) -> np.ndarray:
        """Matches once the explanations are chosen: a text fits a selected explanation when it
        reaches that explanation's threshold and, with a ``margin``, is within it of its best
        *selected* proposed score (user candidates have no margin). A text whose judgment
        failed fits nothing."""
        A = self.assignment
        final = np.zeros_like(A.matches)
        sel = np.array(self.selected, dtype=int)
        if len(sel):
            scores = A.scores[:, sel]
            # Without a margin the assigner's verdict stands; with one, thresholds are re-applied
            # and the margin is taken against the best *selected* score.
            fits = A.matches[:, sel].copy() if A.margin is None else scores >= A.thresholds[sel][None, :]
            proposed = sel >= self.n_user
            if A.margin is not None and proposed.any():
                best = scores[:, proposed].max(axis=1, keepdims=True)
                fits[:, proposed] &= scores[:, proposed] >= best - A.margin
            final[:, sel] = fits
            if A.home is not None:  # a partition: a text stays with its own cluster's explanation
                rows = np.flatnonzero(np.isin(A.home, sel))
                final[rows, self.n_user:] = False
                final[rows, A.home[rows]] = True
        unparsed = self.unparsed
        if unparsed is not None:
            final[unparsed] = False
        return final

    def primary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per text: index of its best-scoring matching selected candidate (-1 = uncovered),
        that score (NaN when uncovered), and how many selected candidates it matches. Among
        candidates with the same best score, the one of highest ``affinity`` (when the
        assignment has it), else the first listed."""
        n = self.assignment.scores.shape[0]
        if not self.selected:
            return np.full(n, -1), np.full(n, np.nan), np.zeros(n, dtype=int)
        sel = np.array(self.selected)
        scores = self.assignment.scores[:, sel]
        matches = self.final_matches()[:, sel]
        masked = np.where(matches, scores, -np.inf)
        affinity = self.assignment.affinity
        if affinity is not None:
            tied = matches & (masked == masked.max(axis=1, keepdims=True))
            masked = np.where(tied, affinity[:, sel], -np.inf)
        best = masked.argmax(axis=1)
        covered = matches.any(axis=1)
        index = np.where(covered, sel[best], -1)
        score = np.where(covered, scores[np.arange(n), best], np.nan)
        return index, score, matches.sum(axis=1)


@dataclass
class RoundContext:
    """What a proposer sees in one round (all arrays over the distinct texts)."""

    round: int
    X: np.ndarray
    texts: list[str]
    labels: np.ndarray  # the clustering of the texts
    weights: np.ndarray  # how many input rows each text stands for
    pool: np.ndarray | None  # round > 1: the texts no selected explanation covers; None = all
    candidates: list[Candidate]  # every candidate so far
    result: ExplainResult | None  # the loop's result so far (None in round 1)


@dataclass
class RoundProposal:
    """A proposer's answer: new candidates, and this round's clustering for the record."""

    candidates: list[Candidate]
    labels: np.ndarray
    n_merged: int = 0  # proposals dropped as near-duplicates of existing candidates
    stop_reason: str | None = None  # set when nothing (more) can be proposed
    error: str | None = None  # why proposing failed (a model call that gave no usable answer)


# --- the interfaces --------------------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors. ``model`` names the vectors' space: it
    keys the embedding cache, so two embedders with one name must give the same vectors."""

    model: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class Clusterer(Protocol):
    """scikit-learn style: settings in ``__init__``, ``labels_`` (NOISE for outliers) after
    ``fit``. ``subset_clusterer(min_cluster_size)`` gives the clusterer later rounds use on
    the texts still uncovered."""

    labels_: np.ndarray

    def fit(self, X: np.ndarray) -> "Clusterer": ...

    def subset_clusterer(self, min_cluster_size: int) -> "Clusterer": ...


class Proposer(Protocol):
    """Writes candidate explanations for one round."""

    def propose(self, context: RoundContext) -> RoundProposal: ...


class Assigner(Protocol):
    """Judges texts against candidates. ``assign`` does whatever judging the candidates still
    need and returns the assignment over all of them; ``current`` returns it without new work
    (what the loop keeps when a budget runs out mid-round)."""

    def assign(self, candidates: list[Candidate]) -> Assignment: ...

    def current(self, candidates: list[Candidate]) -> Assignment: ...

    def describe_work(self) -> str:
        """What the last ``assign`` cost, for the round's log line ("" when nothing worth saying)."""
        ...


class ModelClient(Protocol):
    """A language model behind a response cache and a call record (``llm.client.LLMClient``)."""

    run_id: int | None

    def complete_json(self, stage: str, messages: list[dict], schema: dict, schema_name: str,
                      validate: Any = None) -> Any: ...

    def complete_many(self, stage: str, requests: list, schema: dict, schema_name: str,
                      validate: Any = None) -> list: ...

    def usage(self) -> dict: ...


class RunStore(Protocol):
    """Where corpora, embeddings, runs, results and model calls are recorded. Every query of
    the package lives behind this interface (``textclust.store``); a second database only has
    to implement it. ``store.database.Database`` (SQLite) documents what each method promises."""

    # corpora and embeddings
    def save_corpus(self, corpus) -> int: ...

    def load_corpus(self, corpus_id: int): ...

    def load_embeddings(self, model: str, text_ids: list[str]) -> tuple[np.ndarray | None, np.ndarray]: ...

    def store_embeddings(self, model: str, text_ids: list[str], vectors: np.ndarray) -> None: ...

    def cached_strings(self, model: str, keys: list[str]) -> dict[str, np.ndarray]: ...

    def store_strings(self, model: str, keys: list[str], vectors: np.ndarray) -> None: ...

    # runs: started, claimed by one process at a time, failed or written whole
    def start_run(self, corpus_id: int, goal: str, explainer: str, settings: dict, settings_key: str,
                  versions: dict) -> int: ...

    def claim_unfinished_run(self, settings_key: str) -> int | None: ...

    def claim_run(self, run_id: int, takeover: bool = False) -> None: ...

    def reuse_complete_run(self, settings_key: str) -> int | None: ...

    def find_complete_run_by_key(self, key: str) -> int | None: ...

    def mark_used(self, run_id: int) -> None: ...

    # deleting runs (`textclust runs --delete`, `prune`)
    def plan_delete(self, run_ids: list[int]) -> list: ...

    def plan_prune(self) -> list: ...

    def delete_runs(self, run_ids: list[int]) -> dict: ...

    def fail_run(self, run_id: int, error: str) -> None: ...

    def get_run(self, run_id: int): ...

    def write_result(self, run_id: int, *, text_ids: list[str], labels: np.ndarray, weights: np.ndarray,
                     result: ExplainResult, k: int | None, stats, timings: dict, status: str = "complete",
                     goal_similarity: np.ndarray | None = None, error: str | None = None) -> None: ...

    def read_run(self, run_id: int): ...

    def list_runs(self) -> list: ...

    # the language model's record: cache, call log, usage
    def cached_response(self, key: str) -> dict | None: ...

    def log_call(self, call: dict, answer: dict | None = None) -> int: ...

    def usage_for_run(self, run_id: int) -> dict: ...

    def recorded_structured_mode(self, run_id: int) -> str | None: ...
