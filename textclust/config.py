"""The one configuration tree of a run: what changes its result, with defaults written once.

    RunConfig
    ├── embedding   EmbeddingConfig   which sentence-transformers model embeds the texts
    ├── clustering  ClusteringConfig  reduction and clustering of the embeddings
    ├── explaining  ExplainConfig     propose → assign → select: rounds, K, the user's candidates
    ├── model       LLMConfig | None  the language model (its budget included); None = offline
    └── random_state

Every setting also has a *flat name*, the Python keyword of :func:`textclust.run`
(``k``, ``clusterer``, ``embedding_model``…); :data:`FLAT` maps each to its place in the
tree. :meth:`RunConfig.from_flat` builds the tree from those keywords (the CLI builds the
same keywords from its flags), :meth:`RunConfig.validate` checks every value once, and
:meth:`RunConfig.to_dict` / :meth:`RunConfig.from_dict` store and read the whole tree with
a run. Errors name settings as ``{flat_name}`` (see :class:`textclust.errors.SettingsError`),
so the CLI can show its flags and Python its keywords.

Where the storage lives (the database path or URL) is not part of a run's result and is
given to :class:`textclust.store.Database` directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import SettingsError, register_settings
from .llm.config import LLMConfig

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
CLUSTERERS = ("auto", "hdbscan", "kmeans", "spectral")
REDUCTIONS = ("auto", "umap", "pca", "none")
DEFAULT_ROUNDS = {"offline": 2, "model": 3}
# Shown as the server of a model configured without a base URL (the OpenAI client's default).
DEFAULT_SERVER = "default (OPENAI_BASE_URL or api.openai.com)"


@dataclass
class EmbeddingConfig:
    model: str = DEFAULT_EMBEDDING_MODEL  # sentence-transformers name or local folder


@dataclass
class ClusteringConfig:
    algorithm: str = "auto"  # auto = spectral offline, k-means with a language model (measured: README)
    reduction: str = "auto"  # auto = none for spectral and for k-means with k given, else umap (measured: README)
    n_components: int = 10
    min_cluster_size: int | None = None  # None = max(10, 1% of texts)
    min_samples: int | None = 5
    max_cluster_share: float | None = 0.5  # HDBSCAN may not call more than half the texts one cluster


@dataclass
class ExplainConfig:
    k: int | None = None  # fixed number of explanations; None = automatic
    rounds: int | None = None  # None = 2 offline, 3 with a language model
    min_share: float = 0.005  # automatic K: an explanation must earn ~0.5% of the texts
    lambda_miss: float = 1.0
    lambda_overlap: float = 0.5
    # The user's own explanations [{"name", "explanation"}]: always kept.
    user_candidates: list[dict] | None = None
    only_candidates: bool = False  # open-set classification into the user's candidates, no proposing
    # The language-model stage (used only when a model is configured).
    examples: list[str] | None = None  # example explanations shown to the proposer
    depth: int = 1  # 2 = sub-explanations inside each selected explanation
    n_samples: int = 40  # texts the proposer reads per propose call (a round makes one, or more: explain/model.py)
    n_explanations: int = 8  # explanations asked for per proposal
    batch_size: int = 10  # texts per assignment call
    prefilter: int = 5  # candidates each text is checked against (by embedding similarity); 0 = all
    escalations: int = 3  # a text with no "yes" is asked about its next `prefilter` candidates, this often
    merge_threshold: float = 0.9  # proposals this similar to an existing candidate are merged into it
    review: bool = False  # one model call a round keeps, rejects or merges the new candidates (explain/review_llm.py)
    max_candidate_share: float | None = None  # explicit cap on a candidate's share of texts (GoalEx: 0.4); off
    max_chars: int = 1000  # longer texts are cut in prompts


# flat name -> (node, field). The flat names are the Python keywords and the names errors use.
FLAT: dict[str, tuple[str, str]] = {
    "embedding_model": ("embedding", "model"),
    "clusterer": ("clustering", "algorithm"),
    **{f.name: ("clustering", f.name) for f in fields(ClusteringConfig) if f.name != "algorithm"},
    "candidates": ("explaining", "user_candidates"),
    **{f.name: ("explaining", f.name) for f in fields(ExplainConfig) if f.name != "user_candidates"},
    "random_state": ("", "random_state"),
}
# Earlier keyword names still accepted from Python callers.
ALIASES = {"seeds": "candidates"}
register_settings(FLAT)


def clean_goal(goal) -> str:
    """The goal as every part of textclust reads, keys and stores it: whitespace collapsed and
    trimmed. The one place a goal is cleaned."""
    return " ".join(str(goal).split())


@dataclass
class RunConfig:
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    explaining: ExplainConfig = field(default_factory=ExplainConfig)
    model: LLMConfig | None = None
    random_state: int = 0

    # --- building --------------------------------------------------------------------------

    @classmethod
    def from_flat(cls, model: LLMConfig | dict | None = None, **values: Any) -> "RunConfig":
        """The tree from flat keywords (``k=5, clusterer="kmeans"``); unknown keywords are refused."""
        config = cls(model=LLMConfig(**model) if isinstance(model, dict) else model)
        for name, value in values.items():
            config.set(name, value)
        if config.model is not None:
            # The model's seed is the run's seed, given or not (one number repeats a run; it
            # overrides a seed in a config file). A copy: the caller's LLMConfig stays as it was.
            config.model = replace(config.model, seed=config.random_state)
        return config

    def set(self, name: str, value: Any) -> None:
        """Set one setting by its flat name."""
        name = ALIASES.get(name, name)
        if name not in FLAT:
            raise SettingsError(f"unknown setting '{name}' (known: {', '.join(sorted(FLAT))})")
        node, attribute = FLAT[name]
        if name == "candidates" and value is not None:
            value = [_candidate_dict(c) for c in value] or None
        if name == "examples" and value is not None:
            value = [str(e) for e in value] or None
        setattr(getattr(self, node) if node else self, attribute, value)

    def get(self, name: str) -> Any:
        node, attribute = FLAT[ALIASES.get(name, name)]
        return getattr(getattr(self, node) if node else self, attribute)

    def flat(self) -> dict:
        """Every setting by its flat name (the model aside). ``review`` only when on: runs stored
        before it existed ran without it, and keep their key and their settings line."""
        return {name: self.get(name) for name in FLAT if name != "review" or self.get(name)}

    # --- derived -----------------------------------------------------------------------------

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def algorithm(self) -> str:
        """The clustering algorithm actually used."""
        if self.clustering.algorithm == "auto":
            # With a model the clusters only choose which texts it reads: k-means on UMAP gave
            # the realistic scripted model more accurate explanations than spectral clusters
            # (bench/llm_cost.py --quick, mean ACC at seeds 0/1/2: 0.758/0.752/0.739 against
            # 0.725/0.745/0.719); offline the clusters are the result, and spectral wins.
            return "kmeans" if self.has_model else "spectral"
        return self.clustering.algorithm

    @property
    def rounds(self) -> int:
        return self.explaining.rounds or DEFAULT_ROUNDS["model" if self.has_model else "offline"]

    # --- checking ----------------------------------------------------------------------------

    def validate(self, n_texts: int | None = None, goal: str | None = None) -> "RunConfig":
        """Reject impossible settings before anything is stored (the one place they are checked)."""
        if goal is not None and not str(goal).strip():
            raise SettingsError("{goal} must not be empty")
        e, c = self.explaining, self.clustering
        if e.k is not None:
            if e.k < 1:
                raise SettingsError(f"{{k}} must be at least 1 (got {e.k})")
            if n_texts is not None and e.k > n_texts:
                raise SettingsError(f"asked for {e.k} clusters but the input has only {n_texts} distinct texts")
        validate_clustering(c.algorithm, e.k, c.reduction, c.n_components, c.min_cluster_size, c.max_cluster_share,
                            choices=CLUSTERERS)
        if e.rounds is not None and e.rounds < 1:
            raise SettingsError("{rounds} must be at least 1")
        if not 0 <= e.min_share < 1:
            raise SettingsError(f"{{min_share}} must be between 0 and 1 (got {e.min_share})")
        for candidate in e.user_candidates or []:
            if not (isinstance(candidate, dict) and all(isinstance(candidate.get(key), str) and candidate[key].strip()
                                                        for key in ("name", "explanation"))):
                raise SettingsError(f"a user candidate needs a non-empty name and explanation (got {candidate!r:.80})")
        n_user = len(e.user_candidates or [])
        if e.only_candidates and not n_user:
            raise SettingsError("{only_candidates} needs {candidates}")
        if e.k is not None and e.k < n_user:
            raise SettingsError(f"{{k}} {e.k} is less than the {n_user} seeded explanations, which are always kept")
        checks = [
            (e.depth in (1, 2), f"{{depth}} must be 1 or 2 (got {e.depth})"),
            (e.depth == 1 or self.has_model, "{depth} 2 needs a language model ({model})"),
            (not e.examples or self.has_model, "{examples} needs a language model ({model})"),
            (e.n_samples >= 1, f"{{n_samples}} must be at least 1 (got {e.n_samples})"),
            (e.n_explanations >= 1, f"{{n_explanations}} must be at least 1 (got {e.n_explanations})"),
            (e.batch_size >= 1, f"{{batch_size}} must be at least 1 (got {e.batch_size})"),
            (e.prefilter >= 0, f"{{prefilter}} must be 0 (off) or more (got {e.prefilter})"),
            (e.escalations >= 0, f"{{escalations}} must be 0 or more (got {e.escalations})"),
            (0 < e.merge_threshold <= 1, f"{{merge_threshold}} must be in (0, 1] (got {e.merge_threshold})"),
            (isinstance(e.review, bool), f"{{review}} must be true or false (got {e.review!r})"),
            (e.max_candidate_share is None or 0 < e.max_candidate_share <= 1,
             f"{{max_candidate_share}} must be in (0, 1] (got {e.max_candidate_share})"),
            (e.max_chars >= 20, f"{{max_chars}} must be at least 20 (got {e.max_chars})"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        if n_texts is not None and n_texts < 2:
            raise SettingsError("the input has only one distinct text; clustering needs at least two")
        return self

    # --- storing -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The whole tree as JSON-able data, as stored with a run (never an API key: the model
        node holds only the name of the variable that holds it, and masks URL credentials)."""
        return {
            "version": CONFIG_VERSION,
            "embedding": asdict(self.embedding),
            "clustering": asdict(self.clustering),
            "explaining": asdict(self.explaining),
            "model": None if self.model is None else self.model.public_dict(),
            "random_state": self.random_state,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """Read back what :meth:`to_dict` stored (unknown keys of newer versions are ignored)."""
        def node(kind, values):
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (values or {}).items() if k in names})

        model = data.get("model")
        if model is not None:
            model = LLMConfig.from_stored(model)
        return cls(embedding=node(EmbeddingConfig, data.get("embedding")),
                   clustering=node(ClusteringConfig, data.get("clustering")),
                   # Runs stored before the review call existed ran without it (resumed as they began).
                   explaining=node(ExplainConfig, {"review": False, **(data.get("explaining") or {})}),
                   model=model, random_state=int(data.get("random_state", 0)))

    def result_key(self) -> dict:
        """What identifies a run's result: every setting but the model's budget, concurrency and
        timeouts, in the flat shape runs were keyed by before the tree existed (so that a run
        stored then is still found: resumed or reused by an identical command)."""
        flat = self.flat()
        flat["seeds"] = flat.pop("candidates")
        flat["llm"] = model_identity(self.model) if self.model is not None else None
        return flat

    def with_model(self, model: LLMConfig | None) -> "RunConfig":
        return replace(self, model=model)

    @property
    def explained_by(self) -> str:
        return "offline" if self.model is None else f"language model {self.model.model}"

    def for_resume(self, structured: str | None = None, *, api_key_env: str | None = None,
                   max_calls: int | None = None, max_tokens: int | None = None,
                   concurrency: int | None = None) -> "RunConfig":
        """This stored configuration, ready to finish its run: the model's requests keep the
        structured-output mode they used (part of every answer's cache key, so nothing is paid
        for twice), the key comes from ``api_key_env`` (else the variable the run named), and the
        budget is this process's alone, as on the first attempt."""
        if self.model is None:
            return self
        model = self.model
        if model.base_url and "***" in model.base_url:
            raise SettingsError("the run's server URL held credentials, which were not stored; "
                                "re-run the original command instead of resume")
        changes: dict[str, Any] = {"max_calls": max_calls, "max_tokens": max_tokens}
        if structured:
            changes["structured"] = structured
        if api_key_env:
            changes["api_key_env"] = api_key_env
        if concurrency is not None:
            changes["concurrency"] = concurrency
        return replace(self, model=replace(model, **changes))


CONFIG_VERSION = 2  # 1 = the flat settings of schema versions ≤ 3 (upgraded by store migration 4)


def model_identity(model: LLMConfig) -> dict:
    """What of an LLMConfig changes the answers (part of the result key). Budgets, concurrency
    and timeouts do not; the key is never part of it."""
    public = model.public_dict()
    server = f"gguf:{public['gguf']}" if public.get("gguf") else (public.get("base_url") or DEFAULT_SERVER)
    return {"model": public["model"], "server": server, "temperature": public["temperature"],
            "seed": public["seed"], "max_output_tokens": public["max_output_tokens"],
            "api_key_env": public["api_key_env"]}


def validate_clustering(algorithm: str, k: int | None, reduction: str, n_components: int,
                        min_cluster_size: int | None, max_cluster_share: float | None,
                        choices=("hdbscan", "kmeans", "spectral")) -> None:
    """The clustering settings' checks (used by :meth:`RunConfig.validate` and by the clusterer's
    ``fit``, so that a clusterer used on its own is checked the same way)."""
    if algorithm not in choices:
        raise SettingsError(f"unknown {{clusterer}} '{algorithm}'; choose {', '.join(choices[:-1])} or {choices[-1]}")
    if reduction not in REDUCTIONS:
        raise SettingsError(f"unknown {{reduction}} '{reduction}'; choose one of {', '.join(REDUCTIONS)}")
    if n_components < 1:
        raise SettingsError(f"{{n_components}} must be at least 1 (got {n_components})")
    if min_cluster_size is not None and min_cluster_size < 2:
        raise SettingsError(f"{{min_cluster_size}} must be at least 2 (got {min_cluster_size})")
    if max_cluster_share is not None and not 0 < max_cluster_share <= 1:
        raise SettingsError(f"{{max_cluster_share}} must be in (0, 1] (got {max_cluster_share})")


def _candidate_dict(candidate) -> dict:
    """A user candidate as stored: ``{"name", "explanation"}`` (from a dict or an object with
    ``to_dict``, e.g. :class:`textclust.explain.user_candidates.UserCandidate`)."""
    if hasattr(candidate, "to_dict"):
        return candidate.to_dict()
    return dict(candidate) if isinstance(candidate, dict) else candidate


# --- reading settings stored before the tree (schema ≤ 3) -----------------------------------------


def upgrade_flat_settings(flat: dict) -> dict:
    """The stored form (:meth:`RunConfig.to_dict`) of a run's flat settings as schema ≤ 3 stored
    them. Used once per run by store migration 4; nothing else reads the old shape."""
    config = RunConfig()
    for name in FLAT:
        legacy = "seeds" if name == "candidates" else name
        if legacy in flat:
            config.set(name, flat[legacy])
    data = config.to_dict()
    identity = flat.get("llm")
    if identity:
        server = identity.get("server") or ""
        model = {k: identity[k] for k in ("model", "temperature", "seed", "max_output_tokens", "api_key_env")
                 if k in identity}
        model.update(base_url=None, gguf=None)
        if server.startswith("gguf:"):
            model["gguf"] = server[len("gguf:"):]
        elif server != DEFAULT_SERVER and not server.startswith("default"):
            model["base_url"] = server
        data["model"] = {**{f.name: f.default for f in fields(LLMConfig) if f.name != "model"}, **model}
    return data


# --- helpers for callers (the CLI, the Python API) -------------------------------------------------


def default_of(name: str) -> Any:
    """The default of a setting, by its flat name, as the dataclasses above write it (the CLI
    shows it in ``--help`` instead of repeating it)."""
    return RunConfig().get(name)


def Settings(**flat: Any) -> RunConfig:  # noqa: N802  (the name of the class it replaces)
    """Deprecated spelling of :meth:`RunConfig.from_flat`, kept for callers of the former
    ``textclust.pipeline.Settings``: ``Settings(k=5)`` is ``RunConfig.from_flat(k=5)``."""
    return RunConfig.from_flat(**flat)
