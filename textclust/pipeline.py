"""The pipeline: ingest → embed → cluster → explain → store, as one importable object.

The CLI is a thin layer over :class:`Pipeline`; so is :func:`textclust.run`.

With a language model configured (:class:`~textclust.llm.config.LLMConfig`) the explain
stage is the goal-driven :class:`~textclust.explain.llm_explainer.LLMExplainer`; without
one it is the offline explainer, and every output says so.
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
from sqlalchemy import select

from . import __version__
from .cluster import NOISE, EmbeddingClusterer
from .embed import DEFAULT_MODEL, Embedder, embed_texts
from .errors import SettingsError
from .explain import EXPLAINER_SEEDED, OFFLINE_NOTICE, Explanation, OfflineExplainer
from .explain.candidates import Candidate
from .explain.explainer import RoundRecord, join_seeds
from .explain.goal import embed_goal, goal_gap_notice, goal_similarity
from .explain.seeded import assign_seeds
from .explain.select import SelectionResult
from .ingest import Corpus
from .ingest import text_id as make_text_id
from .store import Database
from .store.claims import claim, process_alive
from .store.schema import Run
from .store.write import hierarchy, write_result

DEFAULT_ROUNDS = {"offline": 2, "llm": 3}
LLM_NOTICE_INCOMPLETE = ("The language-model budget ran out before the run finished: this is the best result "
                         "so far ({reason}). Re-run the same command with a larger --max-calls/--max-tokens "
                         "to finish it; answers already paid for come from the cache.")


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
    rounds: int | None = None  # None = 2 offline, 3 with a language model
    min_share: float = 0.005  # automatic K: an explanation must earn ~0.5% of the texts
    lambda_miss: float = 1.0
    lambda_overlap: float = 0.5
    random_state: int = 0
    seeds: list | None = None  # seeded explanations [{"name", "explanation"}], in the reuse key
    only_candidates: bool = False  # open-set classification into the seeds, no proposing
    # The language-model stage (used only when a model is configured).
    llm: dict | None = None  # which model answers: model, server, temperature, seed (never the key)
    examples: list | None = None  # example explanations shown to the proposer (--example)
    depth: int = 1  # 2 = sub-explanations inside each selected explanation
    n_samples: int = 40  # texts the proposer reads per round
    n_explanations: int = 8  # explanations asked for per proposal
    batch_size: int = 10  # texts per assignment call
    prefilter: int = 5  # candidates each text is checked against (by embedding similarity); 0 = all
    escalations: int = 3  # a text with no "yes" is asked about its next `prefilter` candidates, this often
    merge_threshold: float = 0.9  # proposals this similar to an existing candidate are merged into it
    max_candidate_share: float | None = None  # explicit cap on a candidate's share of texts (GoalEx: 0.4); off
    max_chars: int = 1000  # longer texts are cut in prompts

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
        if self.rounds is not None and self.rounds < 1:
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
        self._validate_llm()
        if n_texts < 2:
            raise SettingsError("the input has only one distinct text; clustering needs at least two")

    def _validate_llm(self) -> None:
        checks = [
            (self.depth in (1, 2), f"--depth must be 1 or 2 (got {self.depth})"),
            (self.depth == 1 or self.llm is not None, "--depth 2 needs a language model (--llm-model)"),
            (not self.examples or self.llm is not None, "--example needs a language model (--llm-model)"),
            (self.n_samples >= 1, f"--n-samples must be at least 1 (got {self.n_samples})"),
            (self.n_explanations >= 1, f"--n-explanations must be at least 1 (got {self.n_explanations})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.prefilter >= 0, f"--prefilter must be 0 (off) or more (got {self.prefilter})"),
            (self.escalations >= 0, f"--escalations must be 0 or more (got {self.escalations})"),
            (0 < self.merge_threshold <= 1, f"--merge-threshold must be in (0, 1] (got {self.merge_threshold})"),
            (self.max_candidate_share is None or 0 < self.max_candidate_share <= 1,
             f"--max-candidate-share must be in (0, 1] (got {self.max_candidate_share})"),
            (self.max_chars >= 20, f"--max-chars must be at least 20 (got {self.max_chars})"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @property
    def algorithm(self) -> str:
        if self.clusterer == "auto":
            return "kmeans" if self.k else "hdbscan"
        return self.clusterer

    @property
    def effective_rounds(self) -> int:
        return self.rounds or DEFAULT_ROUNDS["offline" if self.llm is None else "llm"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def llm_identity(config) -> dict:
    """What of an LLMConfig changes the answers (part of the run's settings and reuse key).
    Budgets, concurrency and timeouts do not; the key is never part of it."""
    public = config.public_dict()
    if public.get("gguf"):
        server = f"gguf:{public['gguf']}"
    else:
        server = public.get("base_url") or "default (OPENAI_BASE_URL or api.openai.com)"
    return {"model": public["model"], "server": server, "temperature": public["temperature"],
            "seed": public["seed"], "max_output_tokens": public["max_output_tokens"],
            "api_key_env": public["api_key_env"]}  # the variable's name, so `resume` finds the key


class Pipeline:
    """Runs the whole method over a corpus and stores the result.

    >>> pipeline = Pipeline(Database("textclust.db"), Settings(k=5))
    >>> run_id = pipeline.run(corpus, goal="why the customer is unhappy")

    ``llm`` (an :class:`~textclust.llm.config.LLMConfig`) switches the explain stage to the
    language model. Re-running the same command on the same database resumes an
    unfinished run of it in place (interrupted, failed or stopped by the budget); the
    language-model answers it already paid for come from the response cache.
    """

    def __init__(self, db: Database, settings: Settings | None = None, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, llm=None):
        self.db = db
        self.settings = settings or Settings()
        self.llm = llm
        if llm is not None:
            self.settings.llm = llm_identity(llm)
        self.log = log or (lambda message: None)
        self.progress = progress
        self.timings: dict[str, float] = {}

    @property
    def explainer_name(self) -> str:
        if self.llm is not None:
            return "llm"
        return EXPLAINER_SEEDED if self.settings.only_candidates else OfflineExplainer.name

    def run(self, corpus: Corpus, goal: str) -> int:
        """Run every stage; returns the run id. On failure the run is marked failed."""
        s = self.settings
        s.validate(corpus.n_texts, goal)
        corpus_id = self.db.save_corpus(corpus)
        run_id = self._unfinished_run(corpus_id, goal.strip())
        if run_id is None:
            run_id = self._start(corpus_id, goal.strip())
        else:
            self.log(f"resuming run {run_id} (same input and settings; unfinished)")
        return self._execute(run_id, corpus, goal.strip())

    def resume(self, run_id: int, corpus: Corpus) -> int:
        """Finish ``run_id`` in place (its stored settings; ``corpus`` read back from the database)."""
        run = self.db.get_run(run_id)
        if run.status == "complete":
            self.log(f"run {run_id} is already complete")
            return run_id
        self._claim(run_id, takeover=True)
        return self._execute(run_id, corpus, run.goal)

    def _execute(self, run_id: int, corpus: Corpus, goal: str) -> int:
        self.timings = {}
        try:
            self._run_stages(run_id, corpus, goal)
        except BaseException as err:  # includes KeyboardInterrupt: never leave a run "running"
            self.db.fail_run(run_id, f"{type(err).__name__}: {err}")
            raise
        return run_id

    # --- resuming ------------------------------------------------------------------------------

    def _unfinished_run(self, corpus_id: int, goal: str) -> int | None:
        """Find and claim (in one transaction, so two processes cannot both take it) the newest
        run of exactly this command that did not finish and that no live process is working
        on: 'running' by a dead process (killed), 'failed', or 'incomplete' (budget)."""
        from .store.database import settings_key

        key = settings_key(corpus_id, goal, self.settings.to_dict())
        with self.db.transaction(immediate=True) as session:  # write lock first: find and claim atomically
            runs = session.scalars(select(Run).where(Run.settings_key == key).order_by(Run.id.desc())).all()
            for run in runs:
                if run.status == "complete":
                    return None  # a finished run is newer than any unfinished one: start afresh
                if run.status in ("failed", "incomplete") or (run.status == "running" and not process_alive(run.stats)):
                    claim(run)
                    return run.id
        return None

    def _start(self, corpus_id: int, goal: str) -> int:
        """A new run, claimed by this process from its first moment."""
        from .store.database import settings_key

        with self.db.transaction() as session:
            run = Run(corpus_id=corpus_id, goal=goal, status="running", explainer=self.explainer_name,
                      settings=self.settings.to_dict(),
                      settings_key=settings_key(corpus_id, goal, self.settings.to_dict()),
                      versions=_versions(), timings={}, stats={})
            claim(run)
            session.add(run)
            session.flush()
            return run.id

    def _claim(self, run_id: int, takeover: bool = False) -> None:
        """Mark the run as being worked on by this process (so another one won't resume it)."""
        with self.db.transaction(immediate=True) as session:
            run = session.get(Run, run_id)
            if takeover and run.status == "running" and process_alive(run.stats):
                raise SettingsError(f"run {run_id} is being worked on by process {run.stats.get('pid')}")
            claim(run)

    # --- the stages ----------------------------------------------------------------------------

    def _prepare(self, corpus: Corpus):
        """Texts, weights, embeddings and the seeds' offline assignment."""
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
            if report.truncated:
                self.log(f"{report.truncated} texts are longer than the model's window: only their start was embedded")
            seeded = None
            if s.seeds:
                seed_candidates, E = seed_vectors(self.db, embedder, s.seeds)
                seeded = (seed_candidates, None if self.llm else assign_seeds(X, E, random_state=s.random_state))
        return text_ids, texts, weights, embedder, X, report, seeded

    def _cluster(self, X: np.ndarray):
        s = self.settings
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
            self.log(f"clusters: {n_clusters} found, {int((labels == NOISE).sum())} distinct texts left as noise "
                     f"({s.algorithm}, {s.reduction})")
        if n_clusters == 0:
            raise SettingsError(
                "the clustering found no clusters (every text is noise); try --k N or a smaller --min-cluster-size"
            )
        if s.k is not None and n_clusters < s.k and self.llm is None:
            raise SettingsError(f"asked for {s.k} explanations but the clustering found only {n_clusters} clusters")
        return clusterer, labels

    def _run_stages(self, run_id: int, corpus: Corpus, goal: str) -> None:
        s = self.settings
        text_ids, texts, weights, embedder, X, report, seeded = self._prepare(corpus)
        encode, goal_vector = self._goal_vector(goal, embedder)
        client = None
        if s.only_candidates:  # open-set classification into the seeds: no clustering, no proposing
            labels = np.full(len(text_ids), NOISE)
            with self._timed("assign"):
                if self.llm is not None:
                    client = self._client(run_id)
                    explanation = self._llm_explainer(client, embedder, goal, None, seeded, propose=False).explain(
                        X, texts, labels, weights)
                else:
                    explanation = seeded_only(seeded, weights)
                self.log(f"seeded explanations: {len(seeded[0])}, coverage {explanation.selection.coverage:.1%}")
        else:
            clusterer, labels = self._cluster(X)
            with self._timed("explain"):
                if self.llm is not None:
                    client = self._client(run_id)
                    explainer = self._llm_explainer(client, embedder, goal, clusterer, seeded)
                    explanation = explainer.explain(X, texts, labels, weights)
                else:  # offline, the goal orders the terms and the explanations
                    explainer = OfflineExplainer(
                        rounds=s.effective_rounds, k=s.k, min_share=s.min_share, lambda_miss=s.lambda_miss,
                        lambda_overlap=s.lambda_overlap, clusterer=clusterer, seeds=seeded, embed=encode,
                    )
                    explanation = explainer.explain(X, texts, labels, weights, goal_vector=goal_vector)
                self.log(
                    f"explanations: {len(explanation.selected)} selected of {len(explanation.candidates)} "
                    f"candidates, coverage {explanation.selection.coverage:.1%}"
                )
        incomplete = bool(getattr(explanation, "incomplete", False))
        stats = self._stats(corpus, goal, labels, weights, explanation, report, client)
        similarity = goal_similarity(explanation.candidates, goal_vector) if goal_vector is not None else None
        write_result(self.db, run_id, text_ids=text_ids, labels=labels, weights=weights, explanation=explanation,
                     k=s.k, stats=stats, timings=self.timings, status="incomplete" if incomplete else "complete",
                     error=getattr(explanation, "stop_reason", None) if incomplete else None,
                     goal_similarity=similarity)

    def _goal_vector(self, goal: str, embedder: Embedder):
        """``(encode, goal vector)`` for ranking terms and explanations by the goal; (None, None)
        when the model cannot encode new strings (the tests' fake models exist only as cached
        vectors)."""
        def encode(strings):
            return embedder.encode(list(strings))

        try:
            return encode, embed_goal(goal, encode)
        except SettingsError as err:
            self.log(f"goal ranking skipped: {err}")
            return None, None

    def _client(self, run_id: int):
        from .llm.client import LLMClient

        return LLMClient(self.llm, self.db, run_id=run_id, log=self.log)

    def _llm_explainer(self, client, embedder: Embedder, goal: str, clusterer, seeded, propose: bool = True):
        from .explain.llm_explainer import LLMExplainer

        s = self.settings
        return LLMExplainer(
            client, lambda strings: embedder.encode(list(strings)), goal, rounds=s.effective_rounds, k=s.k,
            min_share=s.min_share, lambda_miss=s.lambda_miss, lambda_overlap=s.lambda_overlap, clusterer=clusterer,
            n_samples=s.n_samples, n_explanations=s.n_explanations, batch_size=s.batch_size,
            prefilter=s.prefilter, merge_threshold=s.merge_threshold, max_candidate_share=s.max_candidate_share,
            examples=s.examples or (), seeds=seeded[0] if seeded else (), depth=s.depth, max_chars=s.max_chars,
            random_state=s.random_state, log=self.log, propose=propose, escalations=s.escalations,
        )

    def estimate(self, corpus: Corpus, goal: str) -> dict:
        """--dry-run: the language-model calls and tokens per stage, before anything is spent.
        Embeds (cached) and clusters, as a run would, to draw the same samples; stores no run."""
        if self.llm is None:
            raise SettingsError("--dry-run estimates language-model calls: configure one with --llm-model")
        s = self.settings
        s.validate(corpus.n_texts, goal)
        self.db.save_corpus(corpus)  # the embedding cache refers to stored texts
        text_ids, texts, weights, embedder, X, _, seeded = self._prepare(corpus)
        clusterer, labels = self._cluster(X)
        # No client: estimate() only counts tokens (about four characters each) and never sends.
        explainer = self._llm_explainer(None, embedder, goal.strip(), clusterer, seeded)
        return explainer.estimate(X, texts, labels, weights)

    def _stats(self, corpus: Corpus, goal: str, labels, weights, explanation, report, client) -> dict:
        s = self.settings
        primary, _, n_matching = explanation.primary()
        covered = primary >= 0
        unparsed = getattr(explanation, "unparsed", None)
        stats = {
            "n_rows": corpus.n_rows,
            "n_texts": corpus.n_texts,
            "n_empty": corpus.n_empty,
            "n_duplicate_rows": corpus.n_duplicate_rows,
            "clusterer": "none" if s.only_candidates else s.algorithm,
            "n_clusters": len(set(labels.tolist()) - {NOISE}),
            "n_unclustered": 0 if s.only_candidates else int(weights[labels == NOISE].sum()),
            "n_candidates": len(explanation.candidates),
            "n_selected": len(explanation.selected),
            "n_uncovered": int(weights[~covered].sum()),
            "n_multi": int(weights[n_matching > 1].sum()),
            "coverage": float(weights[covered].sum() / weights.sum()),
            "objective": explanation.selection.objective,
            "selection_status": explanation.selection.status,
            "rounds_used": len(explanation.rounds),
            "embeddings_computed": report.computed,
            "embeddings_cached": report.cached,
            "embeddings_truncated": report.truncated,
            "n_skipped": corpus.n_skipped,
            "n_seeds": explanation.n_seeds,
        }
        if self.llm is None:
            stats["notice"] = SEEDED_NOTICE if s.only_candidates else OFFLINE_NOTICE
            stats["goal_notice"] = None if s.seeds else goal_gap_notice(goal)
            return stats
        stats["notice"] = (LLM_NOTICE_INCOMPLETE.format(reason=explanation.stop_reason)
                           if explanation.incomplete else None)
        stats["llm"] = self._llm_usage(client)
        stats["llm"]["calls_by_stage"] = dict(explanation.n_calls)
        stats["n_unparsed"] = int(weights[unparsed].sum()) if unparsed is not None else 0
        stats["stop_reason"] = explanation.stop_reason
        stats["llm_notes"] = list(explanation.notes)
        stats["hierarchy"] = hierarchy(explanation, weights)
        return stats

    def _llm_usage(self, client) -> dict:
        """The run's language-model use over every process that worked on it (a resumed run
        includes what the interrupted one paid for), from the call record."""
        from .llm.record import usage_for_run

        usage = client.usage()
        usage["this_process"] = {k: usage[k] for k in ("calls", "cached_calls", "prompt_tokens", "completion_tokens")}
        usage.update(usage_for_run(self.db, client.run_id))
        prices = (self.llm.price_prompt_per_mtok, self.llm.price_completion_per_mtok)
        if any(p is not None for p in prices):
            usage["cost_usd"] = round((usage["prompt_tokens"] * (prices[0] or 0.0)
                                       + usage["completion_tokens"] * (prices[1] or 0.0)) / 1e6, 6)
        return usage

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - start, 3)


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
