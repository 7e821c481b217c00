"""A run's statistics: one typed object, written by the pipeline, read by reports, export,
the CLI and the Python API. Stored as JSON in ``runs.stats``; :meth:`RunStats.from_dict`
also reads what earlier versions stored (missing fields take their defaults, unknown keys
are kept in ``extra`` so nothing stored is lost).

This is the one module that reads or writes stats by their stored key names; everything
else uses the attributes (``tests/test_stats.py`` checks that)."""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


@dataclass
class ModelUsage:
    """The language model's use over every process that worked on the run (from the call
    record), and what this process itself sent. Fields in the order they were always stored."""

    model: str | None = None
    server: str | None = None
    calls: int = 0  # requests sent (answered or failed), cached answers excluded
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: no prices configured
    retries: int = 0
    structured: str | None = None  # the structured-output mode that worked
    this_process: dict = field(default_factory=dict)  # calls, cached_calls, prompt/completion tokens
    calls_by_stage: dict = field(default_factory=dict)  # requests by stage, cached ones included
    extra: dict = field(default_factory=dict)  # keys of other versions, kept as stored

    def to_dict(self) -> dict:
        """The stored JSON (the ``llm`` value of the run's stats)."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict | None) -> "ModelUsage | None":
        """None for a run without a language model (nothing or an empty value stored)."""
        if not data:
            return None
        names = {f.name for f in fields(cls)} - {"extra"}
        usage = cls(**{k: v for k, v in data.items() if k in names},
                    extra={k: v for k, v in data.items() if k not in names})
        usage.this_process = dict(usage.this_process or {})
        usage.calls_by_stage = dict(usage.calls_by_stage or {})
        return usage


@dataclass
class RunStats:
    """Fields in the order the pipeline always stored them (so the stored JSON keeps its shape)."""

    # the input (rows count every input row; texts count distinct non-empty texts)
    n_rows: int = 0
    n_texts: int = 0
    n_empty: int = 0
    n_duplicate_rows: int = 0
    # clustering
    clusterer: str | None = None  # the algorithm used; "none" when nothing was clustered
    n_clusters: int = 0
    n_unclustered: int = 0  # rows whose text the clustering left as noise
    # explaining (rows, weighted by duplicates)
    n_candidates: int = 0
    n_selected: int = 0
    n_uncovered: int = 0
    n_multi: int = 0
    coverage: float = 0.0
    objective: float | None = None
    selection_status: str | None = None
    rounds_used: int = 0
    # embedding
    embeddings_computed: int = 0
    embeddings_cached: int = 0
    embeddings_truncated: int = 0
    # rows skipped while reading the input; the user's own candidates
    n_skipped: int = 0
    n_user_candidates: int = 0  # stored as "n_seeds"
    # what the user should read
    notice: str | None = None  # how explanations were made, or why the result is partial
    goal_notice: str | None = None  # a part of the goal the offline explainer cannot serve
    # the language model (stored as "llm"; None: no language model)
    model: ModelUsage | None = None
    n_unparsed: int = 0  # rows whose model answer could not be used
    stop_reason: str | None = None  # why the model stage stopped early (the budget), if it did
    notes: list[str] = field(default_factory=list)  # stored as "llm_notes"
    hierarchy: list[dict] | None = None  # depth 2: [{"name", "explanation", "size", "children"}]
    extra: dict = field(default_factory=dict)  # keys of other versions, kept as stored

    # Keys earlier versions stored under other names.
    _RENAMED = {"n_seeds": "n_user_candidates", "llm": "model", "llm_notes": "notes"}
    _STORED_AS = {new: old for old, new in _RENAMED.items()}
    # Stored only for a run with a language model / only for one without (unless set), as the
    # pipeline always stored them.
    _MODEL_ONLY = ("model", "n_unparsed", "stop_reason", "notes", "hierarchy")
    _OFFLINE_ONLY = ("goal_notice",)

    def to_dict(self) -> dict:
        """The stored JSON: keys as earlier versions wrote them (so older readers keep working),
        the language-model fields only for a run with a model, ``goal_notice`` only for one
        without (a field set to something other than its default is always written)."""
        unused = self._MODEL_ONLY if self.model is None else self._OFFLINE_ONLY
        stored = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in unused and value == _default(f):
                continue
            value = value.to_dict() if isinstance(value, ModelUsage) else _plain(value)
            stored[self._STORED_AS.get(f.name, f.name)] = value
        return {**self.extra, **stored}

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunStats":
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        extra = {}
        for key, value in data.items():
            name = cls._RENAMED.get(key, key)
            if name in names and name != "extra":
                values[name] = value
            else:
                extra[key] = value
        values["model"] = ModelUsage.from_dict(values.get("model"))
        values["notes"] = list(values.get("notes") or [])
        return cls(**values, extra=extra)


def _plain(value):
    """A copy of a stored value (lists and dicts are not shared with the object)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _default(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default
