"""Stage 3 — EmbeddingClusterer: k-means, HDBSCAN, reductions, settings, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from textclust.cluster import NOISE, EmbeddingClusterer, centroids, default_min_cluster_size, reduce
from textclust.config import RunConfig
from textclust.errors import SettingsError


def gaussian_blobs(n_per=40, centers=3, dim=8, spread=0.1, seed=0, outliers=0):
    """Well separated blobs (centers 10 apart); optional far-away single outliers."""
    rng = np.random.default_rng(seed)
    means = 10 * np.eye(dim)[:centers]
    X = np.vstack([m + spread * rng.normal(size=(n_per, dim)) for m in means])
    y = np.repeat(np.arange(centers), n_per)
    if outliers:
        far = -50 * np.ones((outliers, dim)) + 30 * np.eye(dim)[:outliers]  # far from the blobs and each other
        X = np.vstack([X, far])
        y = np.concatenate([y, -np.ones(outliers, dtype=int)])
    return X.astype(np.float32), y


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_kmeans_gives_exactly_k_labels(k):
    X, _ = gaussian_blobs()
    labels = EmbeddingClusterer(algorithm="kmeans", k=k, reduction="none").fit(X).labels_
    assert labels.shape == (len(X),)
    assert sorted(set(labels.tolist())) == list(range(k))


def test_kmeans_recovers_blobs_with_the_right_k():
    X, y = gaussian_blobs()
    labels = EmbeddingClusterer(algorithm="kmeans", k=3, reduction="pca", n_components=3).fit(X).labels_
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)


@pytest.mark.parametrize("centers", [3, 5, 7])
def test_kmeans_without_k_chooses_the_number_of_blobs(centers):
    X, y = gaussian_blobs(centers=centers)
    fitted = EmbeddingClusterer(algorithm="kmeans", reduction="none").fit(X)
    assert fitted.k_ == centers
    assert set(fitted.k_scores_) >= {3, 4, 5, 6, 8}  # it tried the alternatives
    assert len(set(fitted.labels_.tolist())) == centers and NOISE not in fitted.labels_
    assert adjusted_rand_score(y, fitted.labels_) == pytest.approx(1.0)


def test_automatic_k_starts_at_three_unless_the_corpus_is_too_small():
    from textclust.cluster import choose_k

    X, _ = gaussian_blobs(centers=2)
    assert choose_k(X, largest=10)[0] == 3  # documented floor: two groups are served by 3
    k, scores = choose_k(X, largest=2)  # too small for 3 clusters of the smallest size
    assert k == 2 and set(scores) == {2}


def test_choose_k_is_bounded_by_the_largest_k_allowed():
    from textclust.cluster import choose_k

    X, _ = gaussian_blobs(centers=6)
    k, scores = choose_k(X, largest=4)
    assert max(scores) == 4 and k <= 4


def test_auto_reduction_skips_umap_only_for_a_given_k():
    assert EmbeddingClusterer(algorithm="kmeans", k=3).resolved_reduction() == "none"
    assert EmbeddingClusterer(algorithm="kmeans").resolved_reduction() == "umap"
    assert EmbeddingClusterer(algorithm="hdbscan").resolved_reduction() == "umap"
    assert EmbeddingClusterer(algorithm="kmeans", k=3, reduction="pca").resolved_reduction() == "pca"


def test_hdbscan_finds_separated_blobs_and_marks_outliers_noise():
    X, y = gaussian_blobs(outliers=3)
    model = EmbeddingClusterer(algorithm="hdbscan", reduction="none").fit(X)
    labels = model.labels_
    assert (labels[y == -1] == -1).all(), "far outliers must be noise"
    inliers = y != -1
    assert len(set(labels[inliers].tolist()) - {-1}) == 3
    assert (labels[inliers] != -1).all()
    assert adjusted_rand_score(y[inliers], labels[inliers]) == pytest.approx(1.0)
    assert model.min_cluster_size_used_ == 10  # default: max(10, 1% of 123)


def test_hdbscan_shrinks_min_cluster_size_for_tiny_inputs():
    # 3 blobs of 6 points: the default size 10 would allow no cluster at all (n < 2 × 10).
    X, y = gaussian_blobs(n_per=6)
    model = EmbeddingClusterer(algorithm="hdbscan", reduction="none").fit(X)
    assert model.min_cluster_size_used_ == max(2, len(X) // 4)
    assert adjusted_rand_score(y, model.labels_) == pytest.approx(1.0)


def test_hdbscan_on_umap_finds_blobs():
    X, y = gaussian_blobs(n_per=30)
    labels = EmbeddingClusterer(algorithm="hdbscan", reduction="umap", n_components=2).fit(X).labels_
    assert len(set(labels.tolist()) - {-1}) == 3
    mask = labels != -1
    assert mask.mean() > 0.9
    assert adjusted_rand_score(y[mask], labels[mask]) == pytest.approx(1.0)


def test_default_min_cluster_size():
    assert default_min_cluster_size(50) == 10
    assert default_min_cluster_size(1000) == 10
    assert default_min_cluster_size(1999) == 19
    assert default_min_cluster_size(5000) == 50


# --- reduction --------------------------------------------------------------------------------


def test_reduction_shapes():
    X, _ = gaussian_blobs(n_per=20)  # 60 × 8
    assert reduce(X, "none", 3) is X
    assert reduce(X, "pca", 3).shape == (60, 3)
    assert reduce(X, "umap", 3).shape == (60, 3)
    # Asking for as many or more dimensions than there are: unchanged.
    assert reduce(X, "pca", 8) is X
    assert reduce(X, "umap", 12) is X


def test_reduction_of_tiny_inputs_falls_back():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 8)).astype(np.float32)
    # UMAP needs more points than neighbours: PCA with at most n-1 dims instead.
    assert reduce(X, "umap", 5).shape == (6, 5)
    assert reduce(X, "pca", 7).shape == (6, 5)
    assert reduce(X[:1], "pca", 3).shape == (1, 8)  # one point: nothing to reduce


def test_clusterer_stores_reduced_matrix():
    X, _ = gaussian_blobs(n_per=20)
    for reduction, dims in [("none", 8), ("pca", 4), ("umap", 4)]:
        model = EmbeddingClusterer(algorithm="kmeans", k=3, reduction=reduction, n_components=4).fit(X)
        assert model.reduced_.shape == (60, dims)


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(algorithm="dbscan"), "unknown clusterer 'dbscan'"),
        (dict(reduction="tsne"), "unknown reduction 'tsne'"),
        (dict(algorithm="kmeans", k=0), "k-means needs k"),
        (dict(algorithm="kmeans", k=-2), "k-means needs k"),
        (dict(algorithm="kmeans", k=61), "asked for 61 clusters but there are only 60 distinct texts"),
    ],
)
def test_bad_settings_raise_settings_error(kwargs, message):
    X, _ = gaussian_blobs(n_per=20)
    with pytest.raises(SettingsError, match=message):
        EmbeddingClusterer(**kwargs).fit(X)


def test_min_cluster_size_one_is_a_settings_error():
    X, _ = gaussian_blobs(n_per=20)
    with pytest.raises(SettingsError):
        EmbeddingClusterer(algorithm="hdbscan", reduction="none", min_cluster_size=1).fit(X)


@pytest.mark.parametrize("reduction", ["umap", "pca"])
def test_non_positive_n_components_is_a_settings_error(reduction):
    X, _ = gaussian_blobs(n_per=20)
    with pytest.raises(SettingsError):
        EmbeddingClusterer(algorithm="kmeans", k=3, reduction=reduction, n_components=0).fit(X)


@pytest.mark.parametrize("kwargs", [dict(min_cluster_size=1), dict(n_components=0)])
def test_settings_validate_rejects_impossible_cluster_settings(kwargs):
    with pytest.raises(SettingsError):
        RunConfig.from_flat(**kwargs).validate(300)


@pytest.mark.parametrize(
    "kwargs, n, message",
    [
        (dict(k=0), 10, "k must be at least 1"),
        (dict(k=11), 10, "asked for 11 clusters but the input has only 10 distinct texts"),
        (dict(clusterer="louvain"), 10, "unknown clusterer 'louvain'"),
        (dict(rounds=0), 10, "rounds must be at least 1"),
        (dict(), 1, "only one distinct text"),
    ],
)
def test_settings_validate(kwargs, n, message):
    with pytest.raises(SettingsError, match=message):
        RunConfig.from_flat(**kwargs).validate(n)


def test_settings_algorithm_and_round_trip():
    assert RunConfig.from_flat().algorithm == "spectral"  # K chosen by silhouette
    assert RunConfig.from_flat(k=4).algorithm == "spectral"
    with_model = {"model": "m", "base_url": "http://127.0.0.1:8080/v1"}
    assert RunConfig.from_flat(model=with_model).algorithm == "kmeans"  # measured: README
    assert RunConfig.from_flat(k=4, clusterer="kmeans").algorithm == "kmeans"
    assert RunConfig.from_flat(k=4, clusterer="hdbscan").algorithm == "hdbscan"
    s = RunConfig.from_flat(k=4, reduction="pca", min_share=0.02)
    assert RunConfig.from_dict({**s.to_dict(), "unknown_future_field": 1}) == s


# --- determinism and helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm, k", [("hdbscan", None), ("kmeans", 3), ("spectral", 3), ("spectral", None)])
def test_same_random_state_same_labels(algorithm, k):
    X, _ = gaussian_blobs(n_per=30, spread=1.5, seed=3)  # overlapping enough for randomness to matter
    first = EmbeddingClusterer(algorithm=algorithm, k=k, reduction="umap", random_state=7).fit(X)
    second = EmbeddingClusterer(algorithm=algorithm, k=k, reduction="umap", random_state=7).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.reduced_, second.reduced_)


def test_centroids_are_unit_length_and_skip_noise():
    X = np.array([[1, 0], [3, 0], [0, 2], [0, 4], [5, 5]], dtype=float)
    labels = np.array([0, 0, 1, 1, -1])
    result = centroids(X, labels)
    assert set(result) == {0, 1}
    np.testing.assert_allclose(result[0], [1, 0])
    np.testing.assert_allclose(result[1], [0, 1])
