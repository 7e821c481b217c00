"""Evaluation: Hungarian accuracy, NMI, ARI and coverage on hand-made labellings."""

from __future__ import annotations

import numpy as np
import pytest

from textclust.evaluate import Scores, hungarian_accuracy, score_partition

GOLD = np.array(["a", "a", "b", "b", "c", "c"])


def test_permuted_labelling_scores_one():
    assert hungarian_accuracy(GOLD, np.array([2, 2, 0, 0, 1, 1])) == 1.0


def test_unassigned_counts_as_wrong():
    # One text of class b has no cluster: 5 of 6 right.
    assert hungarian_accuracy(GOLD, np.array([2, 2, 0, -1, 1, 1])) == pytest.approx(5 / 6)
    assert hungarian_accuracy(GOLD, np.full(6, -1)) == 0.0


def test_unassigned_bucket_is_never_matched_to_a_class():
    # If -1 were an ordinary cluster it would match 'a' (3 texts) and score 1.0.
    gold = np.array(["a", "a", "a", "b"])
    assert hungarian_accuracy(gold, np.array([-1, -1, -1, 0])) == pytest.approx(1 / 4)


def test_merged_clusters_match_one_class_each():
    # Cluster 0 holds a and b (2 + 2), cluster 1 holds c: best one-to-one = 0->a (2) + 1->c (2) = 4/6.
    assert hungarian_accuracy(GOLD, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)


def test_split_class_only_one_part_counts():
    # Class a split over clusters 0 and 3: only one of them can be matched to a -> 5/6.
    assert hungarian_accuracy(GOLD, np.array([0, 3, 1, 1, 2, 2])) == pytest.approx(5 / 6)


def test_score_partition_fields_on_a_perfect_permutation():
    scores = score_partition(list(GOLD), [2, 2, 0, 0, 1, 1])
    assert isinstance(scores, Scores)
    assert scores.acc == 1.0
    assert scores.nmi == pytest.approx(1.0)
    assert scores.ari == pytest.approx(1.0)
    assert scores.coverage == 1.0
    assert scores.n == 6
    assert scores.n_clusters == 3
    assert set(scores.to_dict()) == {"acc", "nmi", "ari", "coverage", "n", "n_clusters"}


def test_score_partition_noise_is_its_own_cluster_for_nmi_and_ari():
    # Gold a a b b, predicted -1 -1 0 0: the same partition, so NMI = ARI = 1, but the
    # unassigned half is wrong for accuracy and uncovered.
    scores = score_partition(["a", "a", "b", "b"], [-1, -1, 0, 0])
    assert scores.nmi == pytest.approx(1.0)
    assert scores.ari == pytest.approx(1.0)
    assert scores.acc == pytest.approx(0.5)
    assert scores.coverage == pytest.approx(0.5)
    assert scores.n_clusters == 1


def test_score_partition_one_cluster_has_no_information():
    scores = score_partition(list(GOLD), [7] * 6)
    assert scores.nmi == pytest.approx(0.0, abs=1e-9)
    assert scores.ari == pytest.approx(0.0, abs=1e-9)
    assert scores.acc == pytest.approx(2 / 6, abs=1e-4)  # scores are rounded to 4 places
    assert scores.n_clusters == 1


def test_score_partition_accepts_non_string_gold_labels():
    scores = score_partition([1, 1, 2, 2], [5, 5, 6, 6])
    assert scores.acc == 1.0 and scores.n == 4


@pytest.mark.parametrize("gold, predicted", [([], []), (["a", "b"], [0])])
def test_score_partition_rejects_bad_lengths(gold, predicted):
    with pytest.raises(ValueError):
        score_partition(gold, predicted)
