"""textclust — goal-driven, explainable text clustering.

Quick use from Python::

    import textclust
    result = textclust.run("data/complaints.csv", goal="why the customer is unhappy")
    for cluster in result.clusters:
        print(cluster.name, cluster.size, cluster.explanation)
    frame = result.to_dataframe()

    # with a language model (any OpenAI-compatible server):
    result = textclust.run("data/complaints.csv", goal="…", llm={"model": "gpt-4o-mini"})
"""

__version__ = "0.1.0"

from .api import run, run_texts  # noqa: E402
from .errors import TextclustError  # noqa: E402
from .llm.config import LLMConfig  # noqa: E402
from .pipeline import Pipeline, Settings  # noqa: E402
from .results import ClusterSummary, RunResult, load_run  # noqa: E402
from .store import Database  # noqa: E402

__all__ = [
    "ClusterSummary",
    "Database",
    "LLMConfig",
    "Pipeline",
    "RunResult",
    "Settings",
    "TextclustError",
    "load_run",
    "run",
    "run_texts",
    "__version__",
]
