"""textclust — goal-driven, explainable text clustering.

Quick use from Python::

    import textclust
    result = textclust.run("data/complaints.csv", goal="why the customer is unhappy")
    for cluster in result.clusters:
        print(cluster.name, cluster.size, cluster.explanation)
    frame = result.to_dataframe()

    # with a language model (any OpenAI-compatible server):
    result = textclust.run("data/complaints.csv", goal="…", llm={"model": "gpt-4o-mini"})

    # the whole configuration as one tree (defaults written once, in textclust.config):
    config = textclust.RunConfig.from_flat(k=5, clusterer="kmeans")

The names below are imported on first use, so that importing one part of the package
(``textclust.config``, ``textclust.cli``) does not import every stage.
"""

from importlib import import_module

from ._version import __version__

# public name -> the module defining it
_WHERE = {
    "ClusterSummary": "results",
    "Database": "store",
    "LLMConfig": "llm.config",
    "Pipeline": "pipeline",
    "RunConfig": "config",
    "RunResult": "results",
    "Settings": "config",
    "TextclustError": "errors",
    "evaluate_file": "api",
    "open_store": "store",
    "load_run": "results",
    "run": "api",
    "run_texts": "api",
    "summarize": "api",
}

__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
