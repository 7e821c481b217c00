"""The pipeline: ingest → embed → cluster → explain → store, as one importable object.

The CLI is a thin layer over :class:`Pipeline`; so is :func:`textclust.run`. Each stage is
a component behind an interface of :mod:`textclust.interfaces`, and any of them can be
handed in (an embedder, a clusterer, a model client); the explain stage is whatever
:func:`~textclust.explain.build_explainer` builds for the configuration (offline, or with a
language model), so nothing here depends on which.
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import contextmanager
from typing import Callable

import numpy as np

from ._version import __version__
from .config import RunConfig, clean_goal
from .corpus import Corpus
from .errors import SettingsError, TextclustError
from .explain import build_explainer, explainer_name
from .explain.goal import embed_goal, goal_similarity
from .explain.hierarchy import tree
from .interfaces import NOISE, Candidate, Clusterer, Embedder, ExplainResult, ModelClient, RunStore
from .llm.errors import LLMError, TransientError
from .progress import bar_safe, working
from .stats import RunStats
from .store.database import settings_key



class Pipeline:
    """Runs the whole method over a corpus and stores the result.

    >>> pipeline = Pipeline(Database("textclust.db"), RunConfig.from_flat(k=5))
    >>> run_id = pipeline.run(corpus, goal="why the customer is unhappy")

    ``config.model`` (an :class:`~textclust.llm.config.LLMConfig`) switches the explain stage
    to the language model. Re-running the same command on the same database resumes an
    unfinished run of it in place (interrupted, failed or stopped by the budget); the
    language-model answers it already paid for come from the response cache.

    ``embedder``, ``clusterer`` and ``client`` replace the components the configuration
    would build (tests use a small fake embedder; a caller may bring its own clusterer).
    """

    def __init__(self, db: RunStore, config: RunConfig | None = None, *, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, embedder: Embedder | None = None, clusterer: Clusterer | None = None,
                 client: ModelClient | None = None):
        self.db = db
        self.config = config or RunConfig()
        self.log = bar_safe(log or (lambda message: None))
        self.progress = progress
        self.embedder = embedder
        self.clusterer = clusterer
        self.client = client
        self.timings: dict[str, float] = {}

    # --- entry points ------------------------------------------------------------------------

    def run(self, corpus: Corpus, goal: str) -> int:
        """Run every stage; returns the run id. On failure the run is marked failed."""
        goal = clean_goal(goal) if isinstance(goal, str) else goal
        self.config.validate(corpus.n_texts, goal)
        self._check_model_server()
        corpus_id, key = self._run_key(corpus, goal)
        run_id = self.db.claim_unfinished_run(key)
        if run_id is None:
            run_id = self.db.start_run(corpus_id, goal, explainer_name(self.config), self.config.to_dict(), key,
                                       versions())
        else:
            self.log(f"resuming run {run_id} (same input and settings; unfinished)")
        return self._execute(run_id, corpus, goal)

    def run_or_reuse(self, corpus: Corpus, goal: str, *, hint: str = "") -> tuple[int, bool]:
        """The newest complete identical run (:meth:`identical_run`; said in the log, with ``hint``
        after it) or else a new run; and whether it was reused. What `run`, `eval` and
        `summarize` do by default."""
        run_id = self.identical_run(corpus, goal)
        if run_id is not None:
            self.log(reuse_line(run_id) + hint)
            return run_id, True
        return self.run(corpus, goal), False

    def identical_run(self, corpus: Corpus, goal: str, *, reuse: bool = True) -> int | None:
        """The newest complete run of this corpus with this goal and the same result-affecting
        settings (:meth:`RunConfig.result_key`), or None. With ``reuse`` the run is marked as
        used now, so that ``latest`` names it; the corpus is stored (once) either way.
        What `textclust run` and `textclust eval` reuse instead of computing again."""
        _, key = self._run_key(corpus, clean_goal(goal) if isinstance(goal, str) else goal)
        return self.db.reuse_complete_run(key) if reuse else self.db.find_complete_run_by_key(key)

    def _run_key(self, corpus: Corpus, goal: str) -> tuple[int, str]:
        """The stored corpus's id (stored once) and the key of a run of it for ``goal`` with
        these settings: what finds an identical run, finished or not."""
        corpus_id = self.db.save_corpus(corpus)
        return corpus_id, settings_key(corpus_id, goal, self.config.result_key())

    def resume(self, run_id: int, *, api_key_env: str | None = None, max_calls: int | None = None,
               max_tokens: int | None = None, concurrency: int | None = None) -> int:
        """Finish ``run_id`` in place with its stored configuration and corpus. The model's key
        comes from the environment now (``api_key_env``, else the variable the run named); the
        budget applies to this process only, as on the first attempt."""
        run = self.db.get_run(run_id)
        if run.status == "complete":
            self.log(f"run {run_id} is already complete; nothing to do")
            self.db.mark_used(run_id)  # the user's last run all the same (``latest``)
            return run_id
        self.config = RunConfig.from_dict(run.settings).for_resume(
            self.db.recorded_structured_mode(run_id), api_key_env=api_key_env, max_calls=max_calls,
            max_tokens=max_tokens, concurrency=concurrency)
        self._check_model_server()  # before the run is claimed, re-embedded and re-clustered
        self.log(f"resuming run {run_id} ({run.status}): {self.config.explained_by}")
        corpus = self.db.load_corpus(run.corpus_id)
        self.db.claim_run(run_id, takeover=True)
        return self._execute(run_id, corpus, run.goal)

    def estimate(self, corpus: Corpus, goal: str) -> dict:
        """The dry run: the language-model calls and tokens per stage, before anything is spent.
        From the corpus and the settings alone: nothing is embedded, clustered, stored or sent
        (the database is not touched; ``db`` may be None)."""
        goal = clean_goal(goal)
        explainer = self._explainer(goal, run_id=None, send=False)
        explainer.check_estimate()  # offline: nothing to estimate, say so before any work
        self.config.validate(corpus.n_texts, goal)
        texts = [corpus.texts[t] for t in corpus.text_ids]
        # The counts depend on the number of texts, the batch size and the settings; only the
        # proposer's sample (tokens, not calls) depends on the clusters, so one group stands in.
        user = [Candidate(name=c["name"], text=c["explanation"], vector=None, source="seed")
                for c in self.config.explaining.user_candidates or []]
        result = explainer.estimate(None, texts, np.zeros(len(texts), dtype=int), _weights(corpus), user)
        result["note"] += (" The proposer's sample is drawn at random here (a run draws it across the clusters): "
                           "the dry run embeds and clusters nothing.")
        return result

    def _check_model_server(self) -> None:
        """Before anything is embedded or clustered (minutes on a large corpus), make sure the
        model server answers and takes the key: a typo in --llm-base-url fails in a second,
        and leaves no failed run behind. An injected client (tests, the Python API) is trusted."""
        model = self.config.model
        if model is None or model.gguf or self.client is not None:
            return
        check = getattr(model.make_transport(), "check", None)  # a missing OpenAI key fails here
        if check is None:
            return
        tries = min(3, model.max_retries + 1)  # a server still starting up gets a few seconds
        for attempt in range(tries):
            try:
                check(timeout=min(model.timeout, 10.0))
                return
            except TransientError as err:
                if attempt == tries - 1:
                    raise LLMError(f"{err} (is the language model server running? Checked before any work: "
                                   "nothing was stored)") from None
                time.sleep(1.0 + attempt)

    # --- the stages --------------------------------------------------------------------------

    def _execute(self, run_id: int, corpus: Corpus, goal: str) -> int:
        self.timings = {}
        try:
            self._run_stages(run_id, corpus, goal)
        except BaseException as err:  # includes KeyboardInterrupt: never leave a run "running"
            # A library error keeps its settings named ({k}), so each reader spells them its way.
            message = err.template if isinstance(err, TextclustError) else str(err)
            self.db.fail_run(run_id, f"{type(err).__name__}: {message}")
            raise
        return run_id

    def _run_stages(self, run_id: int, corpus: Corpus, goal: str) -> None:
        data = self._embed(corpus)
        goal_vector = self._goal_vector(goal)
        labels = self._cluster(data.X)
        explainer = self._explainer(goal, run_id=run_id, send=True)
        with self._timed(explainer.stage), working("explaining", _explaining_plan(self.config, len(data.texts)),
                                                   self.log, self.progress, status=_calls_so_far(explainer)):
            result = explainer.explain(data.X, data.texts, labels, data.weights,
                                       user_candidates=data.user_candidates, goal_vector=goal_vector)
        stats = self._stats(corpus, goal, labels, data, result, explainer, run_id)
        # The summary's figure (rows covered by a final match), not the program's own estimate.
        self.log(f"explanations: {len(result.selected)} selected of {len(result.candidates)} candidates, "
                 f"coverage {stats.coverage:.1%} of non-empty rows")
        similarity = goal_similarity(result.candidates, goal_vector) if goal_vector is not None else None
        self.db.write_result(run_id, text_ids=data.text_ids, labels=labels, weights=data.weights, result=result,
                             k=self.config.explaining.k, stats=stats, timings=self.timings,
                             status="incomplete" if result.incomplete else "complete",
                             error=result.stop_reason if result.incomplete else None, goal_similarity=similarity)

    def _embed(self, corpus: Corpus) -> "_Embedded":
        """Texts, weights and embeddings (from the cache where stored), and the user's candidates."""
        from .embed import SentenceTransformerEmbedder, cached_or_encoded, embed_texts

        text_ids = corpus.text_ids
        texts = [corpus.texts[t] for t in text_ids]
        weights = _weights(corpus)
        model = self.config.embedding.model
        with self._timed("embed"):
            if self.embedder is None:
                self.embedder = SentenceTransformerEmbedder(model, progress=self.progress)
            X, report = embed_texts(self.db, self.embedder, text_ids, texts, progress=self.progress)
            self.log(f"embeddings: {report.computed} computed, {report.cached} from cache ({self.embedder.model})")
            if report.truncated:
                self.log(f"{report.truncated} texts are longer than the model's window: only their start was embedded")
            given = self.config.explaining.user_candidates or []
            user = []
            if given:
                E = cached_or_encoded(self.db, self.embedder, [c["explanation"] for c in given])
                user = [Candidate(name=c["name"], text=c["explanation"], vector=E[j], source="seed")
                        for j, c in enumerate(given)]
        return _Embedded(text_ids, texts, weights, X, report, user)

    def _cluster(self, X: np.ndarray) -> np.ndarray:
        """The clustering's labels; all noise when only the user's candidates are judged."""
        if not self._clusters:
            return np.full(len(X), NOISE)
        config = self.config
        clusterer = self._clusterer()
        with self._timed("cluster"):
            with working("clustering", _clustering_plan(clusterer, len(X)), self.log, self.progress):
                fitted = clusterer.fit(X)
            labels = np.asarray(fitted.labels_)
            n_clusters = len(set(labels.tolist()) - {NOISE})
            reduction = getattr(fitted, "reduction_", config.clustering.reduction)
            chosen = " (K chosen by silhouette)" if getattr(fitted, "k_scores_", None) else ""
            noise = int((labels == NOISE).sum())
            self.log(f"clusters: {n_clusters} found{chosen}"
                     + (f", {noise} distinct texts left as noise" if noise else "")
                     + f" ({config.algorithm}, reduction {reduction})")
        if n_clusters == 0:
            raise SettingsError(
                "the clustering found no clusters (every text is noise); try {k} N or a smaller {min_cluster_size}"
            )
        return labels

    @property
    def _clusters(self) -> bool:
        return not self.config.explaining.only_candidates

    def _explainer(self, goal: str, run_id: int | None, send: bool):
        return build_explainer(self.config, goal=goal, embed=self._encode, store=self.db if send else None,
                               run_id=run_id, client=self.client if send else None, clusterer=self._clusterer(),
                               log=self.log)

    def _clusterer(self):
        # The explainer re-clusters leftovers with the same settings; build it now if not given.
        if self.clusterer is None and self._clusters:
            from .cluster import EmbeddingClusterer

            c = self.config.clustering
            self.clusterer = EmbeddingClusterer(
                algorithm=self.config.algorithm, k=self.config.explaining.k, reduction=c.reduction,
                n_components=c.n_components, min_cluster_size=c.min_cluster_size, min_samples=c.min_samples,
                max_cluster_share=c.max_cluster_share, random_state=self.config.random_state)
        return self.clusterer

    def _encode(self, strings) -> np.ndarray:
        """Vectors of strings that are no corpus text, through the database's string cache."""
        from .embed import cached_or_encoded

        return cached_or_encoded(self.db, self.embedder, list(strings))

    def _goal_vector(self, goal: str):
        """The goal's vector for ranking terms and explanations; None when the embedder cannot
        encode new strings (a model known only by its cached vectors)."""
        try:
            return embed_goal(goal, self._encode)
        except SettingsError as err:
            self.log(f"goal ranking skipped: {err}")
            return None

    def _stats(self, corpus: Corpus, goal: str, labels, data: "_Embedded", result: ExplainResult, explainer,
               run_id: int) -> RunStats:
        weights = data.weights
        primary, _, n_matching = result.primary()
        covered = primary >= 0
        unparsed = result.unparsed
        clustered = self._clusters
        return RunStats(
            n_rows=corpus.n_rows, n_texts=corpus.n_texts, n_empty=corpus.n_empty,
            n_duplicate_rows=corpus.n_duplicate_rows, n_skipped=corpus.n_skipped,
            clusterer=self.config.algorithm if clustered else "none",
            n_clusters=len(set(labels.tolist()) - {NOISE}),
            n_unclustered=int(weights[labels == NOISE].sum()) if clustered else 0,
            n_candidates=len(result.candidates), n_selected=len(result.selected), n_user_candidates=result.n_user,
            n_uncovered=int(weights[~covered].sum()), n_multi=int(weights[n_matching > 1].sum()),
            n_unparsed=int(weights[unparsed].sum()) if unparsed is not None else 0,
            coverage=float(weights[covered].sum() / weights.sum()),
            objective=result.selection.objective, selection_status=result.selection.status,
            rounds_used=len(result.rounds), stop_reason=result.stop_reason,
            embeddings_computed=data.report.computed, embeddings_cached=data.report.cached,
            embeddings_truncated=data.report.truncated,
            notice=explainer.notice(result), goal_notice=explainer.goal_notice(goal), notes=list(result.notes),
            model=explainer.usage(self.db, run_id), hierarchy=tree(result, weights),
        )

    @contextmanager
    def _timed(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - start, 3)


class _Embedded:
    """The corpus as the later stages see it."""

    def __init__(self, text_ids, texts, weights, X, report, user_candidates):
        self.text_ids = text_ids
        self.texts = texts
        self.weights = weights
        self.X = X
        self.report = report
        self.user_candidates = user_candidates


def reuse_line(run_id: int) -> str:
    """What `run` and `eval` say when they reuse a complete run instead of computing it again."""
    return f"reusing complete run {run_id} (same input, goal and settings)"


def _weights(corpus: Corpus) -> np.ndarray:
    """Each distinct text (in ``corpus.text_ids`` order) counts as many times as it appears in the input."""
    position = {t: i for i, t in enumerate(corpus.text_ids)}
    return np.bincount([position[t] for t in corpus.row_text_ids if t is not None],
                       minlength=len(position)).astype(float)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    result = {"textclust": __version__, "python": platform.python_version()}
    for package in ("sentence-transformers", "torch", "scikit-learn", "hdbscan", "umap-learn", "scipy", "sqlalchemy"):
        try:
            result[package] = version(package)
        except PackageNotFoundError:
            result[package] = None
    return result


def _clustering_plan(clusterer, n: int) -> str:
    """What the clustering step is about to do (it can take a while: say so before, not after)."""
    resolve = getattr(clusterer, "resolved_reduction", None)
    reduction = resolve() if resolve else getattr(clusterer, "reduction", "")
    algorithm = getattr(clusterer, "algorithm", type(clusterer).__name__)
    steps = [f"reducing {n} texts with {reduction.upper()}"] if reduction and reduction != "none" else []
    if algorithm in ("kmeans", "spectral") and getattr(clusterer, "k", None) is None:
        steps.append("choosing the number of clusters by silhouette")
    steps.append(f"clustering with {algorithm}")
    return "clustering: " + ", then ".join(steps) + "…"


def _explaining_plan(config: RunConfig, n: int) -> str:
    """What the explain stage is about to do (seconds offline, minutes with a model)."""
    e = config.explaining
    by = f"the language model {config.model.model}" if config.model else "words and embeddings (offline)"
    if e.only_candidates:
        return f"explaining: judging {n} distinct texts against the given explanations with {by}…"
    plan = f"explaining: up to {config.rounds} rounds of propose, assign, select over {n} distinct texts with {by}"
    if config.model:
        plan += f" (each round asks about every text, {e.batch_size} a call: about {math.ceil(n / e.batch_size)} calls a round)"
    return plan + "…"


def _calls_so_far(explainer):
    """The model's calls so far, for the explain step's ticker (None offline)."""
    usage = getattr(getattr(explainer, "client", None), "usage", None)
    if usage is None:
        return None
    return lambda: "{calls} model calls, {cached_calls} from cache".format(**usage())
