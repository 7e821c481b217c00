"""The pipeline: ingest → embed → cluster → explain → store, as one importable object.

The CLI is a thin layer over :class:`Pipeline`; so is :func:`textclust.run`.
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from . import __version__
from .cluster import NOISE, EmbeddingClusterer
from .embed import DEFAULT_MODEL, Embedder, embed_texts
from .errors import SettingsError
from .explain import OFFLINE_NOTICE, Explanation, OfflineExplainer
from .explain.candidates import Candidate
from .explain.explainer import RoundRecord, join_seeds
from .explain.goal import goal_gap_notice
from .explain.seeded import assign_seeds
from .explain.select import SelectionResult
from .ingest import text_id as make_text_id
from .ingest import Corpus
from .store import Database
from .store.schema import (
    Cluster,
    ClusterMember,
    Explanation as ExplanationRow,
    Run,
    Selection,
    TextResult,
    utcnow,
)
from .store.schema import Assignment as AssignmentRow


@dataclass
class Settings:
    """Everything that changes a run's result (stored with the run)."""

    k: int | None = None  # fixed number of explanations; None = automatic
    clusterer: str = "auto"  # auto = k-means when k is given, else hdbscan
    reduction: str = "umap"
    n_components: int = 10
    min_cluster_size: int | None = None  # None = max(10, 1% of texts)
    min_samples: int | None = 5
    max_cluster_share: float | None = 0.5  # HDBSCAN may not call more than half the texts one cluster
    embedding_model: str = DEFAULT_MODEL
    rounds: int = 2
    min_share: float = 0.005  # automatic K: an explanation must earn ~0.5% of the texts
    lambda_miss: float = 1.0
    lambda_overlap: float = 0.5
    random_state: int = 0
    seeds: list | None = None  # seeded explanations [{"name", "explanation"}], in the reuse key
    only_candidates: bool = False  # open-set classification into the seeds, no proposing

    def validate(self, n_texts: int, goal: str | None = None) -> None:
        """Reject impossible settings before anything is stored."""
        if goal is not None and not goal.strip():
            raise SettingsError("--goal must not be empty")
        if self.k is not None:
            if self.k < 1:
                raise SettingsError(f"--k must be at least 1 (got {self.k})")
            if self.k > n_texts:
                raise SettingsError(f"asked for {self.k} clusters but the input has only {n_texts} distinct texts")
        if self.clusterer not in ("auto", "hdbscan", "kmeans"):
            raise SettingsError(f"unknown clusterer '{self.clusterer}'; choose auto, hdbscan or kmeans")
        if self.clusterer == "kmeans" and self.k is None:
            raise SettingsError("--clusterer kmeans needs --k")
        if self.rounds < 1:
            raise SettingsError("--rounds must be at least 1")
        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise SettingsError(f"--min-cluster-size must be at least 2 (got {self.min_cluster_size})")
        if self.n_components < 1:
            raise SettingsError(f"--n-components must be at least 1 (got {self.n_components})")
        if self.max_cluster_share is not None and not 0 < self.max_cluster_share <= 1:
            raise SettingsError(f"--max-cluster-share must be in (0, 1] (got {self.max_cluster_share})")
        if not 0 <= self.min_share < 1:
            raise SettingsError(f"--min-share must be between 0 and 1 (got {self.min_share})")
        for seed in self.seeds or []:
            if not (isinstance(seed, dict) and all(isinstance(seed.get(key), str) and seed[key].strip()
                                                   for key in ("name", "explanation"))):
                raise SettingsError(f"a seeded explanation needs a non-empty name and explanation (got {seed!r:.80})")
        if self.only_candidates and not self.seeds:
            raise SettingsError("--only-candidates needs --candidate or --candidates")
        if n_texts < 2:
            raise SettingsError("the input has only one distinct text; clustering needs at least two")

    @property
    def algorithm(self) -> str:
        if self.clusterer == "auto":
            return "kmeans" if self.k else "hdbscan"
        return self.clusterer

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class Pipeline:
    """Runs the whole method over a corpus and stores the result.

    >>> pipeline = Pipeline(Database("textclust.db"), Settings(k=5))
    >>> run_id = pipeline.run(corpus, goal="why the customer is unhappy")
    """

    def __init__(self, db: Database, settings: Settings | None = None, log: Callable[[str], None] | None = None,
                 progress: bool | None = None):
        self.db = db
        self.settings = settings or Settings()
        self.log = log or (lambda message: None)
        self.progress = progress
        self.timings: dict[str, float] = {}

    def run(self, corpus: Corpus, goal: str) -> int:
        """Run every stage; returns the run id. On failure the run is marked failed."""
        s = self.settings
        s.validate(corpus.n_texts, goal)
        self.timings = {}
        corpus_id = self.db.save_corpus(corpus)
        run_id = self.db.start_run(corpus_id, goal.strip(), OfflineExplainer.name, s.to_dict(), _versions())
        try:
            self._run_stages(run_id, corpus)
        except BaseException as err:  # includes KeyboardInterrupt: never leave a run "running"
            self.db.fail_run(run_id, f"{type(err).__name__}: {err}")
            raise
        return run_id

    def _run_stages(self, run_id: int, corpus: Corpus) -> None:
        s = self.settings
        text_ids = corpus.text_ids
        texts = [corpus.texts[t] for t in text_ids]
        # Each distinct text counts as many times as it appears in the input.
        position = {t: i for i, t in enumerate(text_ids)}
        weights = np.bincount([position[t] for t in corpus.row_text_ids if t is not None], minlength=len(text_ids))
        weights = weights.astype(float)

        with self._timed("embed"):
            embedder = Embedder(s.embedding_model, progress=self.progress)
            X, report = embed_texts(self.db, embedder, text_ids, texts)
            self.log(f"embeddings: {report.computed} computed, {report.cached} from cache ({s.embedding_model})")
            seeded = None
            if s.seeds:
                seed_candidates, E = seed_vectors(self.db, embedder, s.seeds)
                seeded = (seed_candidates, assign_seeds(X, E, random_state=s.random_state))

        if s.only_candidates:
            with self._timed("assign"):
                explanation = seeded_only(seeded, weights)
                self.log(f"seeded explanations: {len(seeded[0])}, coverage {explanation.selection.coverage:.1%}")
            # No clustering ran: every text's cluster is "none" (-1), and stats say no clusterer.
            self._store(run_id, corpus, text_ids, explanation.rounds[0].labels, weights, explanation, report)
            return

        clusterer = EmbeddingClusterer(
            algorithm=s.algorithm,
            k=s.k,
            reduction=s.reduction,
            n_components=s.n_components,
            min_cluster_size=s.min_cluster_size,
            min_samples=s.min_samples,
            max_cluster_share=s.max_cluster_share,
            random_state=s.random_state,
        )
        with self._timed("cluster"):
            labels = clusterer.fit(X).labels_
            n_clusters = len(set(labels.tolist()) - {NOISE})
            self.log(f"clusters: {n_clusters} found, {int((labels == NOISE).sum())} distinct texts left as noise ({s.algorithm}, {s.reduction})")
        if n_clusters == 0:
            raise SettingsError(
                "the clustering found no clusters (every text is noise); try --k N or a smaller --min-cluster-size"
            )
        if s.k is not None and n_clusters < s.k:
            raise SettingsError(f"asked for {s.k} explanations but the clustering found only {n_clusters} clusters")

        with self._timed("explain"):
            explainer = OfflineExplainer(
                rounds=s.rounds,
                k=s.k,
                min_share=s.min_share,
                lambda_miss=s.lambda_miss,
                lambda_overlap=s.lambda_overlap,
                clusterer=clusterer,
                seeds=seeded,
            )
            explanation = explainer.explain(X, texts, labels, weights)
            self.log(
                f"explanations: {len(explanation.selected)} selected of {len(explanation.candidates)} candidates, "
                f"coverage {explanation.selection.coverage:.1%}"
            )

        self._store(run_id, corpus, text_ids, labels, weights, explanation, report)

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - start, 3)

    def _store(self, run_id, corpus: Corpus, text_ids, labels, weights, explanation: Explanation, report) -> None:
        primary, primary_score, n_matching = explanation.primary()
        selected = set(explanation.selected)
        matches = explanation.assignment.matches
        scores = explanation.assignment.scores
        total = weights.sum()
        terms = {(c.round, c.source_cluster): c.terms for c in explanation.candidates}
        with self.db.transaction() as session:
            for record in explanation.rounds:
                in_round = record.labels != NOISE if record.round > 1 else np.ones(len(text_ids), dtype=bool)
                for label in sorted(set(record.labels[in_round].tolist())):
                    session.add(Cluster(run_id=run_id, round=record.round, label=label,
                                        size=int((record.labels == label).sum()),
                                        terms=terms.get((record.round, label), [])))
                session.execute(
                    ClusterMember.__table__.insert(),
                    [{"run_id": run_id, "round": record.round, "text_id": text_ids[i], "label": int(record.labels[i])}
                     for i in np.flatnonzero(in_round)],
                )
                session.add(Selection(
                    run_id=run_id, round=record.round,
                    explanation_ids=[],  # filled below once explanation rows have ids
                    k=self.settings.k, objective=record.selection.objective,
                    coverage=record.selection.coverage, status=record.selection.status,
                ))
            rows = []
            for j, cand in enumerate(explanation.candidates):
                row = ExplanationRow(
                    run_id=run_id, round=cand.round, position=j, name=cand.name, text=cand.text,
                    source=cand.source, source_cluster=cand.source_cluster, terms=cand.terms,
                    threshold=float(explanation.assignment.thresholds[j]),
                    n_matched=int(weights[matches[:, j]].sum()), selected=j in selected,
                )
                session.add(row)
                rows.append(row)
            session.flush()
            ids = [r.id for r in rows]
            for sel in session.query(Selection).filter_by(run_id=run_id):
                record = next(r for r in explanation.rounds if r.round == sel.round)
                sel.explanation_ids = [ids[j] for j in record.selection.chosen]
            reasons = explanation.reasons
            pairs = np.argwhere(matches)
            session.execute(
                AssignmentRow.__table__.insert(),
                [{"explanation_id": ids[j], "text_id": text_ids[i], "run_id": run_id, "score": float(scores[i, j])}
                 for i, j in pairs],
            )
            session.execute(
                TextResult.__table__.insert(),
                [{"run_id": run_id, "text_id": t, "cluster": int(labels[i]),
                  "explanation_id": ids[primary[i]] if primary[i] >= 0 else None,
                  "score": None if primary[i] < 0 else float(primary_score[i]),
                  "n_explanations": int(n_matching[i]),
                  "reason": None if primary[i] < 0 else (
                      (reasons[i, primary[i]] if reasons is not None else None) or "similarity")}
                 for i, t in enumerate(text_ids)],
            )
            run = session.get(Run, run_id)
            covered = primary >= 0
            run.stats = {
                "n_rows": corpus.n_rows,
                "n_texts": corpus.n_texts,
                "n_empty": corpus.n_empty,
                "n_duplicate_rows": corpus.n_duplicate_rows,
                "clusterer": "none" if self.settings.only_candidates else self.settings.algorithm,
                "n_clusters": len(set(labels.tolist()) - {NOISE}),
                "n_unclustered": 0 if self.settings.only_candidates else int(weights[labels == NOISE].sum()),
                "n_candidates": len(explanation.candidates),
                "n_selected": len(selected),
                "n_uncovered": int(weights[~covered].sum()),
                "n_multi": int(weights[n_matching > 1].sum()),
                "coverage": float(weights[covered].sum() / total),
                "objective": explanation.selection.objective,
                "selection_status": explanation.selection.status,
                "rounds_used": len(explanation.rounds),
                "embeddings_computed": report.computed,
                "embeddings_cached": report.cached,
                "notice": OFFLINE_NOTICE if not self.settings.only_candidates else SEEDED_NOTICE,
                "n_seeds": explanation.n_seeds,
                "goal_notice": None if self.settings.seeds else goal_gap_notice(run.goal),
            }
            run.timings = dict(self.timings)
            run.status = "complete"
            run.finished_at = utcnow()


SEEDED_NOTICE = (
    "Open-set classification into the given explanations (--only-candidates): no language model; "
    "each text gets the seeded explanations a classifier trained on their closest texts says it fits, or none."
)


def seed_vectors(db, embedder: Embedder, seeds: list[dict]) -> tuple[list[Candidate], np.ndarray]:
    """Seed candidates and their explanation embeddings (from the cache when there, else computed)."""
    texts = [seed["explanation"] for seed in seeds]
    ids = [make_text_id(t) for t in texts]
    cached = db.cached_embeddings(embedder.model, ids)
    missing = [i for i, t in enumerate(ids) if t not in cached]
    if missing:
        cached.update(zip([ids[i] for i in missing], embedder.encode([texts[i] for i in missing])))
    E = np.vstack([cached[t] for t in ids]).astype(np.float32)
    candidates = [Candidate(name=seed["name"], text=seed["explanation"], vector=E[j], source="seed")
                  for j, seed in enumerate(seeds)]
    return candidates, E


def seeded_only(seeded, weights: np.ndarray) -> Explanation:
    """--only-candidates: every seed is kept; each text fits the seeds its assignment says, or none."""
    candidates, assignment = seeded
    joined, reasons = join_seeds(assignment, None)
    covered = joined.matches.any(axis=1)
    selection = SelectionResult(chosen=list(range(len(candidates))), objective=float(weights[~covered].sum()),
                                status="seeded (no selection)", coverage=float(weights[covered].sum() / weights.sum()))
    labels = np.full(len(covered), NOISE)  # no clustering in this mode
    return Explanation(candidates=candidates, assignment=joined, selection=selection,
                       rounds=[RoundRecord(1, labels, len(candidates), selection)], n_seeds=len(candidates),
                       reasons=reasons)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    result = {"textclust": __version__, "python": platform.python_version()}
    for package in ("sentence-transformers", "torch", "scikit-learn", "hdbscan", "umap-learn", "scipy", "sqlalchemy"):
        try:
            result[package] = version(package)
        except PackageNotFoundError:
            result[package] = None
    return result
