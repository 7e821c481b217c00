"""Stage 3 — cluster: group the embeddings (optionally after PCA/UMAP reduction).

The clusters steer which texts the explainer looks at, and are a result of their own.

* **spectral** (the default): spectral clustering of a k-nearest-neighbour cosine graph of the
  *centred* embeddings (:func:`spectral_partition`). Without ``k`` the number is the one whose
  k-means partition of the centred embeddings has the highest cosine silhouette over
  :data:`SILHOUETTE_GRID` (:func:`choose_k_centred`).
* **kmeans**: exactly ``k`` clusters; without ``k`` the number by the silhouette of k-means
  partitions of the UMAP space over :data:`K_GRID` (:func:`choose_k`): the previous default.
* **hdbscan** finds the number itself and leaves outliers as noise (label -1, "unclustered"),
  but on the shared corpora it over-split 2–10× (measured: see README).

Why spectral on centred vectors (``bench/clusterer_study.py``, ``bench/results/clusterer_study.md``):
MiniLM's vectors share a common direction, so raw cosines are all fairly high; removing the
corpus mean spreads them. A neighbour graph follows groups that are not round, which k-means
cannot. With K = the gold number, over the 7 ``label`` fields of the shared corpora, it scored
mean ACC / NMI 0.628 / 0.585 against k-means' 0.591 / 0.545 at 1,000 rows (better ACC on 7 of 7),
0.632 / 0.573 against 0.601 / 0.536 at 3,000, and as well leave-one-corpus-out. The silhouette
of the centred k-means partitions put K within 2× of the gold number on 11 of 13 fields,
where the UMAP route put it there on 10, with a mean ACC of 0.616 against 0.489.

Follows scikit-learn's conventions: settings in ``__init__``, learned state (``labels_``,
``k_``, ``k_scores_``) after ``fit``.
"""

from __future__ import annotations

import warnings

import numpy as np

from .config import REDUCTIONS, validate_clustering
from .errors import SettingsError
from .interfaces import NOISE

ALGORITHMS = ("hdbscan", "kmeans", "spectral")
__all__ = ["ALGORITHMS", "K_GRID", "NOISE", "REDUCTIONS", "SILHOUETTE_GRID", "EmbeddingClusterer", "centred",
           "centroids", "choose_k", "choose_k_centred", "default_min_cluster_size", "graph_neighbours", "reduce",
           "spectral_partition"]

# Numbers of clusters tried when K is chosen: every K from 3 to 15, then coarser steps (a
# corpus with 37 intents is served by 30 or 40; telling 37 from 38 is beyond a silhouette).
# It starts at 3: on the UMAP space a first split into two islands often has the highest
# silhouette (the shipped sample: 0.86 for 2 against 0.55 for 8, with 6 kinds of complaint),
# and two groups rarely answer a goal; for a corpus of two real groups 3 is within 2×.
# Measured on the shared corpora (README): starting at 3 raised the mean ACC and NMI over
# the label fields (0.517 → 0.532, 0.526 → 0.558) and kept 10 of 13 fields within 2×.
# A corpus too small for 3 clusters of min_cluster_size falls back to 2; --k 2 asks for 2.
K_GRID = tuple(range(3, 16)) + (20, 25, 30, 40, 50, 60, 80)
K_SAMPLE = 4000  # K is chosen on at most this many texts (silhouette is quadratic)

# Numbers of clusters tried by :func:`choose_k_centred` (at most ``largest``): finer where a
# step changes much. It starts at 2: on the centred vectors (unlike the UMAP space) two groups
# win only where two groups are there (measured: amazon's 4 domains gave 4, polarity too is 2).
SILHOUETTE_GRID = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 50, 60, 70, 80, 90, 100,
                   120, 150)
SILHOUETTE_SAMPLE = 3000  # the centred silhouette is computed on at most this many texts
# The neighbour graph is built on at most this many texts (its exact search is quadratic);
# the others join the cluster whose centroid is closest.
SPECTRAL_MAX = 10_000


def default_min_cluster_size(n: int) -> int:
    """HDBSCAN's smallest cluster: 1% of the texts, at least 10 (measured, see README)."""
    return max(10, n // 100)


class EmbeddingClusterer:
    """Reduce (optional) and cluster a matrix of embeddings.

    Parameters
    ----------
    algorithm: "spectral" (``k`` clusters; ``k`` None: chosen by :func:`choose_k_centred`),
        "kmeans" (``k`` clusters; ``k`` None: chosen by :func:`choose_k`) or "hdbscan" (its own
        number of clusters, noise allowed).
    k: number of clusters for spectral clustering and k-means.
    min_cluster_size: HDBSCAN's smallest cluster; for k-means with ``k`` None, the largest K
        tried leaves clusters of at least this size on average.
    reduction: "umap", "pca" or "none", applied before clustering; "auto": none for spectral
        clustering and for k-means with ``k`` given (UMAP merged neighbouring topics: ag_news
        ACC 0.916 without it, 0.683 with it), else UMAP (the UMAP silhouette and HDBSCAN need
        its denser space).
    n_components: dimensions after reduction.
    min_cluster_size, min_samples, cluster_selection_method: HDBSCAN settings
        (min_cluster_size None → :func:`default_min_cluster_size`).
    max_cluster_share: HDBSCAN's "excess of mass" selection may not return a cluster
        holding more than this share of the texts. Without it, EOM often keeps the
        root split (one topic versus "everything else"): on the sample corpus it
        found 2 clusters for 6 reasons; with 0.5 it finds 8 (see README).
    random_state: seed for UMAP, PCA and k-means.
    """

    def __init__(
        self,
        algorithm: str = "spectral",
        k: int | None = None,
        reduction: str = "auto",
        n_components: int = 10,
        min_cluster_size: int | None = None,
        min_samples: int | None = 5,
        cluster_selection_method: str = "eom",
        max_cluster_share: float | None = 0.5,
        umap_neighbors: int = 15,
        random_state: int = 0,
    ):
        self.algorithm = algorithm
        self.k = k
        self.reduction = reduction
        self.n_components = n_components
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.max_cluster_share = max_cluster_share
        self.umap_neighbors = umap_neighbors
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> "EmbeddingClusterer":
        validate_clustering(self.algorithm, self.k, self.reduction, self.n_components, self.min_cluster_size,
                            self.max_cluster_share, choices=ALGORITHMS)
        n = X.shape[0]
        if self.algorithm in ("kmeans", "spectral") and self.k is not None:
            if self.k < 1:
                raise SettingsError("k-means needs {k} (a number of clusters of at least 1)")
            if self.k > n:
                raise SettingsError(f"asked for {self.k} clusters but there are only {n} distinct texts")
        self.reduction_ = self.resolved_reduction()
        self.reduced_ = reduce(X, self.reduction_, self.n_components, self.random_state, self.umap_neighbors)
        if self.algorithm == "hdbscan":
            self.labels_ = self._hdbscan(self.reduced_)
            return self
        self.k_, self.k_scores_ = self.k, {}
        largest = max(2, n // (self.min_cluster_size or default_min_cluster_size(n)))
        if self.algorithm == "kmeans":
            if self.k is None:
                self.k_, self.k_scores_ = choose_k(self.reduced_, largest, self.random_state)
            self.labels_ = _kmeans(self.reduced_, self.k_, self.random_state)
            return self
        # Spectral: on the embeddings themselves, centred; a reduced space is used as it is.
        Z = centred(self.reduced_) if self.reduction_ == "none" else self.reduced_
        if self.k is None:
            self.k_, self.k_scores_ = choose_k_centred(Z, largest, self.random_state)
        self.labels_ = spectral_partition(Z, self.k_, self.random_state)
        return self

    def resolved_reduction(self) -> str:
        if self.reduction != "auto":
            return self.reduction
        return "none" if self.algorithm == "spectral" or (self.algorithm == "kmeans" and self.k is not None) else "umap"

    @property
    def is_partition(self) -> bool:
        """Every text is in a cluster (spectral, k-means): nothing is left as noise."""
        return self.algorithm in ("kmeans", "spectral")

    def subset_clusterer(self, min_cluster_size: int) -> "EmbeddingClusterer":
        """The clusterer for a later round's leftovers: HDBSCAN (whatever groups are left, however
        many) with this one's reduction and the given smallest cluster."""
        settings = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        settings.update(algorithm="hdbscan", k=None, min_cluster_size=min_cluster_size)
        return EmbeddingClusterer(**settings)

    def _hdbscan(self, Z: np.ndarray) -> np.ndarray:
        import hdbscan

        n = Z.shape[0]
        size = self.min_cluster_size or default_min_cluster_size(n)
        if n < 2 * size:  # too few texts for two clusters of that size
            size = max(2, n // 4)
        model = hdbscan.HDBSCAN(
            min_cluster_size=size,
            min_samples=min(self.min_samples, size) if self.min_samples else None,
            cluster_selection_method=self.cluster_selection_method,
            max_cluster_size=int(self.max_cluster_share * n) if self.max_cluster_share else 0,
            core_dist_n_jobs=1,
        )
        labels = model.fit_predict(Z.astype(np.float64))
        self.min_cluster_size_used_ = size
        return labels.astype(int)


def reduce(X: np.ndarray, method: str, n_components: int, random_state: int = 0, neighbors: int = 15) -> np.ndarray:
    """Reduce to ``n_components`` dimensions; tiny inputs fall back to fewer dims or none."""
    n, d = X.shape
    if method == "none" or n_components >= d:
        return X
    if method == "pca" or n <= neighbors + 2:  # UMAP needs more points than neighbours
        from sklearn.decomposition import PCA

        dims = min(n_components, n - 1, d)
        if dims < 1:
            return X
        return PCA(n_components=dims, random_state=random_state).fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables parallelism: intended
        import umap

        reducer = umap.UMAP(
            n_components=min(n_components, n - 2),
            n_neighbors=neighbors,
            min_dist=0.0,
            metric="cosine",
            random_state=random_state,
        )
        return reducer.fit_transform(X)


def _kmeans(X: np.ndarray, k: int, random_state: int, n_init: int = 10) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(X).astype(int)


def choose_k(Z: np.ndarray, largest: int, random_state: int = 0, grid=K_GRID) -> tuple[int, dict[int, float]]:
    """The K of :data:`K_GRID` (at most ``largest``) whose k-means partition of ``Z`` has the
    highest mean silhouette, and every K's silhouette.

    Measured on the shared corpora (README, "Choosing the number of clusters"): on the UMAP
    space this puts K within 2× of the gold count far more often than HDBSCAN. Scored on a
    seeded sample of :data:`K_SAMPLE` texts: the silhouette costs O(n²).
    """
    return _best_silhouette(Z, largest, random_state, grid, K_SAMPLE, "euclidean")


def centred(X: np.ndarray) -> np.ndarray:
    """The vectors less their mean, back to unit length (the corpus's common direction removed)."""
    X = np.asarray(X, dtype=np.float64)
    return _unit_rows(X - X.mean(axis=0))


def _unit_rows(M: np.ndarray) -> np.ndarray:
    return M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)


def graph_neighbours(n: int) -> int:
    """Neighbours per text in the spectral graph: about sqrt(n) / 2, between 5 and 50. Chosen
    leave-one-corpus-out (bench/results/clusterer_study.md): held out, each corpus picked this
    rule from the others at 1,000 rows; 30–50 did as well at 3,000 rows, hence the cap."""
    return int(min(50, max(5, round(np.sqrt(n) / 2))))


def spectral_partition(Z: np.ndarray, k: int, random_state: int = 0) -> np.ndarray:
    """``k`` clusters of the rows of ``Z`` by normalised spectral clustering of their symmetric
    k-nearest-neighbour cosine graph: the top ``k`` eigenvectors of D^-1/2 A D^-1/2, rows to unit
    length, then k-means. Past :data:`SPECTRAL_MAX` rows the graph is built on a seeded sample
    and every other row joins the cluster of the closest centroid. Too few rows for a graph
    (or ``k`` near their number): k-means."""
    n = len(Z)
    if k <= 1:
        return np.zeros(n, dtype=int)
    if n <= max(3 * k, 30):
        return _kmeans(Z, k, random_state)
    if n > SPECTRAL_MAX:
        sample = np.sort(np.random.default_rng(random_state).choice(n, SPECTRAL_MAX, replace=False))
        labels_sample = spectral_partition(Z[sample], k, random_state)
        C = np.vstack([v for v in centroids(Z[sample], labels_sample).values()])
        kept = sorted(set(labels_sample.tolist()))
        nearest = np.asarray(kept)[np.argmax(Z @ C.T, axis=1)]
        nearest[sample] = labels_sample
        return nearest.astype(int)
    from sklearn.manifold import spectral_embedding
    from sklearn.neighbors import kneighbors_graph

    A = kneighbors_graph(Z, n_neighbors=min(graph_neighbours(n), n - 1), metric="cosine", include_self=False)
    A = (0.5 * (A + A.T)).tocsr()
    # scikit-learn's solver (shift-invert ARPACK, seeded) finds repeated eigenvalues, as a graph of
    # separate components has; a plain top-k eigsh missed some. Its vectors are those of the
    # normalised adjacency up to a per-row scale, which the rows' normalisation removes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "graph is not fully connected": separate groups are fine here
        U = spectral_embedding(A, n_components=min(k, n - 2), eigen_solver="arpack", random_state=random_state,
                               drop_first=False)
    return _kmeans(_unit_rows(U), k, random_state)


def choose_k_centred(C: np.ndarray, largest: int, random_state: int = 0,
                     grid=SILHOUETTE_GRID) -> tuple[int, dict[int, float]]:
    """The K of :data:`SILHOUETTE_GRID` (at most ``largest``) whose k-means partition (3 starts)
    of the centred vectors ``C`` has the highest cosine silhouette, and every K's silhouette.
    Scored on a seeded sample of :data:`SILHOUETTE_SAMPLE` texts (the silhouette is quadratic)."""
    return _best_silhouette(C, largest, random_state, grid, SILHOUETTE_SAMPLE, "cosine")


def _best_silhouette(Z: np.ndarray, largest: int, random_state: int, grid, sample_size: int,
                     metric: str) -> tuple[int, dict[int, float]]:
    """The K of ``grid`` (at most ``largest``) whose k-means partition (3 starts) of a seeded
    sample of at most ``sample_size`` rows of ``Z`` has the highest mean silhouette under
    ``metric`` (ties: the smaller K), and every K's silhouette; (1, {}) when none can be scored."""
    from sklearn.metrics import silhouette_score

    n = len(Z)
    if n < 3:
        return 1, {}
    sample = Z
    if n > sample_size:
        sample = Z[np.random.default_rng(random_state).choice(n, sample_size, replace=False)]
    ks = [k for k in grid if k <= min(largest, len(sample) - 1)] or [2]
    # The sample's distances once, not once per K (the silhouette is quadratic: at 3,000 texts
    # recomputing them for each of ~24 K was most of the time a cached re-run spends).
    from sklearn.metrics import pairwise_distances

    distances = pairwise_distances(sample, metric=metric)
    scores = {}
    for k in ks:
        labels = _kmeans(sample, k, random_state, n_init=3)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(distances, labels, metric="precomputed"))
    if not scores:
        return 1, {}
    return max(scores, key=lambda k: (scores[k], -k)), scores


def centroids(X: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Unit-length mean vector of each non-noise cluster."""
    result = {}
    for label in sorted(set(labels.tolist()) - {NOISE}):
        mean = X[labels == label].mean(axis=0)
        result[label] = mean / (np.linalg.norm(mean) or 1.0)
    return result
