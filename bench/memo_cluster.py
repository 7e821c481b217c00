"""A clusterer that remembers its fits, for benchmarks that cluster the same corpus many times.

A bench run clusters each corpus once per label field, oracle seed and mode, with the same
embeddings and the same settings; the result cannot differ (the clustering is seeded and does
not see the goal or the model), but with automatic K it costs seconds each time (UMAP and the
silhouette search over K). :class:`MemoClusterer` answers a repeated ``fit`` from memory:
same labels, same reduced space, same chosen K, as the first fit computed. It is a bench tool
only: the product clusters every run afresh.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np

from textclust.cluster import EmbeddingClusterer
from textclust.pipeline import Pipeline

# What a fit leaves behind (scikit-learn style: attributes ending in "_").
FITTED = ("labels_", "reduced_", "reduction_", "k_", "k_scores_")


class MemoClusterer(EmbeddingClusterer):
    """An :class:`EmbeddingClusterer` whose ``fit`` is memoised on (the embeddings, the settings)."""

    memory: dict[tuple, dict] = {}  # shared by every instance of a bench process

    @classmethod
    def for_config(cls, db, config) -> "MemoClusterer":
        """The clusterer the pipeline would build for ``config``, memoised."""
        return cls.like(Pipeline(db, config)._clusterer())

    @classmethod
    def like(cls, clusterer: EmbeddingClusterer) -> "MemoClusterer":
        """The same clusterer (same settings), memoised."""
        memo = cls.__new__(cls)
        memo.__dict__.update({k: v for k, v in vars(clusterer).items() if not k.endswith("_")})
        return memo

    def fit(self, X: np.ndarray) -> "MemoClusterer":
        X = np.ascontiguousarray(X)
        settings = tuple(sorted((k, repr(v)) for k, v in vars(self).items() if not k.endswith("_")))
        key = (hashlib.sha1(X.tobytes()).hexdigest(), X.shape, settings)
        if key not in self.memory:
            super().fit(X)
            self.memory[key] = {name: getattr(self, name) for name in FITTED if hasattr(self, name)}
        for name, value in self.memory[key].items():
            setattr(self, name, copy.deepcopy(value))  # a caller may change the labels it is given
        return self

    def subset_clusterer(self, min_cluster_size: int) -> "MemoClusterer":
        """Later rounds' clusterer for the leftovers, memoised too."""
        return MemoClusterer.like(super().subset_clusterer(min_cluster_size))

    @classmethod
    def forget(cls) -> None:
        """Drop every remembered fit (e.g. between corpora: nothing more to share)."""
        cls.memory.clear()
