"""The default clusterer (issue 23): spectral clustering of the centred embeddings, K chosen by
the cosine silhouette of centred k-means, and the offline explainer keeping the partition.

The figures that chose it are a benchmark's (bench/results/clusterer_study.md); these tests pin
the behaviour on small synthetic corpora where the difference is plain."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from textclust.cluster import (
    EmbeddingClusterer,
    centred,
    choose_k_centred,
    graph_neighbours,
    spectral_partition,
)
from textclust.interfaces import Candidate, ExplainResult, SelectionResult
from textclust.explain.similarity import SimilarityAssigner


def two_arcs(n_per=200, gap=0.15, noise=0.01, seed=0, dim=8):
    """Two parallel half-circle arcs on the unit sphere, ``2 * gap`` apart: each arc is longer
    than the distance between them, so round cells (k-means) cut across both arcs."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, np.pi, size=(2, n_per))
    rows = []
    for side, sign in enumerate((1.0, -1.0)):
        X = np.zeros((n_per, dim))
        X[:, 0], X[:, 1], X[:, 2] = np.cos(theta[side]), np.sin(theta[side]), sign * gap
        rows.append(X + noise * rng.normal(size=X.shape))
    X = np.vstack(rows)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), np.repeat([0, 1], n_per)


def blobs_on_sphere(centers, n_per=60, dim=16, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    means = np.eye(dim)[:centers] + 0.5  # a shared direction, as sentence embeddings have
    X = np.vstack([m + spread * rng.normal(size=(n_per, dim)) for m in means])
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(centers), n_per)


def test_spectral_follows_the_arcs_where_kmeans_cuts_across_them():
    X, y = two_arcs()
    spectral = EmbeddingClusterer(k=2).fit(X)  # the default clusterer
    kmeans = EmbeddingClusterer(algorithm="kmeans", k=2).fit(X)
    assert spectral.algorithm == "spectral" and spectral.resolved_reduction() == "none"
    assert adjusted_rand_score(y, spectral.labels_) == pytest.approx(1.0)
    assert adjusted_rand_score(y, kmeans.labels_) < 0.2


@pytest.mark.parametrize("centers", [2, 4, 7])
def test_the_number_of_clusters_is_chosen_by_the_centred_silhouette(centers):
    X, y = blobs_on_sphere(centers)
    fitted = EmbeddingClusterer().fit(X)
    assert fitted.k_ == centers
    assert set(fitted.k_scores_) >= {2, 3, 4, 5, 8}  # it tried the alternatives
    assert adjusted_rand_score(y, fitted.labels_) == pytest.approx(1.0)


def test_choose_k_is_bounded_by_the_largest_k_allowed():
    X, _ = blobs_on_sphere(7)
    k, scores = choose_k_centred(centred(X), largest=5)
    assert k <= 5 and max(scores) <= 5


def test_centred_vectors_are_unit_length_and_lose_the_shared_direction():
    X, _ = blobs_on_sphere(3)
    C = centred(X)
    assert np.allclose(np.linalg.norm(C, axis=1), 1.0)
    assert np.linalg.norm(C.mean(axis=0)) < np.linalg.norm(X.mean(axis=0)) / 5


def test_the_neighbour_count_grows_with_the_corpus_within_bounds():
    assert [graph_neighbours(n) for n in (10, 100, 1000, 3000, 100_000)] == [5, 5, 16, 27, 50]


def test_tiny_inputs_and_one_cluster():
    X, _ = blobs_on_sphere(2, n_per=5)
    assert sorted(set(spectral_partition(X, 2).tolist())) == [0, 1]  # too few for a graph: k-means
    assert set(spectral_partition(X, 1).tolist()) == {0}


def test_past_the_graph_limit_a_sample_is_clustered_and_the_rest_join_the_closest_centroid(monkeypatch):
    import textclust.cluster as cluster

    X, y = blobs_on_sphere(3, n_per=100)
    monkeypatch.setattr(cluster, "SPECTRAL_MAX", 120)
    labels = spectral_partition(centred(X), 3)
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    assert len(X) > cluster.SPECTRAL_MAX  # the sampled path was the one taken


def test_same_seed_same_labels_and_another_seed_still_finds_the_arcs():
    X, y = two_arcs(seed=3)
    first = spectral_partition(centred(X), 2, random_state=0)
    assert np.array_equal(first, spectral_partition(centred(X), 2, random_state=0))
    assert adjusted_rand_score(y, spectral_partition(centred(X), 2, random_state=1)) == pytest.approx(1.0)


# --- the offline explainer keeps the partition ----------------------------------------------


def _candidates(X, labels):
    out = []
    for label in sorted(set(labels.tolist())):
        mean = X[labels == label].mean(axis=0)
        out.append(Candidate(name=f"c{label}", text=f"c{label}", vector=(mean / np.linalg.norm(mean)).astype(np.float32),
                             source="extractive", source_cluster=label, calibration_labels=labels))
    return out


def _result(assignment, chosen):
    return ExplainResult(candidates=[], assignment=assignment, selection=SelectionResult(chosen, 0.0, "optimal", 1.0))


def test_a_text_keeps_its_own_clusters_explanation_even_when_another_centroid_is_closer():
    # Cluster 0 is a long arc, cluster 1 a tight blob: the arc's far end is closer to the blob's
    # centroid than to its own, yet it belongs to the arc.
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2.5, 60)
    arc = np.c_[np.cos(t), np.sin(t), np.zeros_like(t)]
    blob = np.array([np.cos(2.9), np.sin(2.9), 0.0]) + 0.01 * rng.normal(size=(20, 3))
    X = np.vstack([arc, blob])
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat([0, 1], [60, 20])
    A = SimilarityAssigner(X, partition=True).assign(_candidates(X, labels))
    nearest = A.scores.argmax(axis=1)
    assert (nearest[:60] == 1).any()  # the premise: nearest-centroid would move arc texts
    primary, _, n_matching = _result(A, [0, 1]).primary()
    assert np.array_equal(primary, labels) and (n_matching == 1).all()
    # Its own explanation not selected: the text takes the most similar selected one.
    primary, _, _ = _result(A, [1]).primary()
    assert (primary == 1).all()
