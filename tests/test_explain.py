"""Stages 4–5 — propose (offline), assign, and the whole offline explainer loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from textclust.cluster import EmbeddingClusterer
from textclust.config import RunConfig
from textclust.explain import OFFLINE_NOTICE, Candidate, OfflineExplainer, assign, calibrate_threshold
from textclust.explain.extractive import distinctive_terms, phrase_explanation, propose_extractive
from textclust.explain.similarity import DEFAULT_THRESHOLD
from textclust.interfaces import Assignment, ExplainResult, SelectionResult


def unit(*values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


# --- calibrate_threshold ------------------------------------------------------------------


def test_calibrate_threshold_accepts_one_false_positive_when_f1_says_so():
    # positives 0.9 0.8 0.7 0.3, negatives 0.6 0.2 0.1 (index 7 is neither: ignored).
    # cut 0.3: tp 4, fp 1 (0.6), fn 0 -> F1 = 8/9  = 0.889  <- best
    # cut 0.7: tp 3, fp 0,       fn 1 -> F1 = 6/7  = 0.857
    # cut 0.8: tp 2 -> 4/6 ; cut 0.9: tp 1 -> 2/5
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.95])
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    negative = np.array([0, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert calibrate_threshold(scores, positive, negative) == pytest.approx(0.3)


def test_calibrate_threshold_excludes_negatives_when_they_are_many():
    # positives 0.9 0.8 0.7 0.3, negatives 0.6 0.5 0.4.
    # cut 0.3: tp 4, fp 3 -> 8/11 = 0.727 ; cut 0.7: tp 3, fp 0, fn 1 -> 6/7 = 0.857 <- best
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.5, 0.4])
    positive = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)
    assert calibrate_threshold(scores, positive, ~positive) == pytest.approx(0.7)


def test_calibrate_threshold_perfect_separation_keeps_every_positive():
    # All positives above all negatives: the lowest positive keeps F1 = 1.
    scores = np.array([0.2, 0.1, 0.75, 0.8, 0.9])
    positive = np.array([0, 0, 1, 1, 1], dtype=bool)
    assert calibrate_threshold(scores, positive, ~positive) == pytest.approx(0.75)


def test_calibrate_threshold_edge_cases():
    scores = np.array([0.3, 0.6, 0.9])
    none = np.zeros(3, dtype=bool)
    # no positives: the default threshold
    assert calibrate_threshold(scores, none, ~none) == DEFAULT_THRESHOLD
    # no negatives: every positive matches
    assert calibrate_threshold(scores, np.array([0, 1, 1], dtype=bool), none) == pytest.approx(0.6)


# --- assign -------------------------------------------------------------------------------------


def test_assign_is_multi_label_and_allows_no_match():
    # Two candidates along e1 and e2, no calibration data -> threshold 0.5 each.
    c1 = Candidate("one", "mentions one", unit(1, 0, 0), "extractive")
    c2 = Candidate("two", "mentions two", unit(0, 1, 0), "extractive")
    X = np.vstack([
        unit(1, 1, 0),    # cos 0.707 with both      -> matches both
        unit(0, 0, 1),    # cos 0 with both          -> matches none
        unit(1, 0, 0.2),  # cos 0.98 / 0             -> only "one"
        unit(0.1, 1, 0),  # cos 0.1 / 0.995          -> only "two"
    ])
    result = assign(X, [c1, c2])
    assert result.scores.shape == (4, 2)
    np.testing.assert_allclose(result.thresholds, [DEFAULT_THRESHOLD, DEFAULT_THRESHOLD])
    expected = np.array([[True, True], [False, False], [True, False], [False, True]])
    np.testing.assert_array_equal(result.matches, expected)
    np.testing.assert_allclose(result.scores[0], [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-5)


def test_assign_calibrates_each_candidate_on_its_source_cluster():
    # Texts along e1 with decreasing similarity; labels say which are the cluster's own.
    angles = np.array([0.0, 0.3, 0.6, 0.9, 1.2, 1.4])
    X = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, -1])  # the -1 text is neither positive nor negative
    cand = Candidate("c", "mentions c", unit(1, 0, 0), "extractive", source_cluster=0, calibration_labels=labels)
    result = assign(X, [cand])
    scores = np.cos(angles)
    expected = calibrate_threshold(scores, labels == 0, (labels != 0) & (labels != -1))
    # By hand: positives cos(0), cos(.3), cos(.6) are all above the negatives -> cut = cos(0.6).
    assert expected == pytest.approx(np.cos(0.6), rel=1e-6)
    assert result.thresholds[0] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(result.matches[:, 0], [True, True, True, False, False, False])


# --- proposing: distinctive terms and wording ----------------------------------------------------


def test_distinctive_terms_pick_the_words_that_distinguish_two_clusters():
    texts = [
        "where is my refund money", "refund money still missing", "my refund money and the order",
        "password reset broken", "password reset email is missing", "cannot reset my password for the order",
        "hello world",
    ]
    labels = np.array([0, 0, 0, 1, 1, 1, -1])
    terms = distinctive_terms(texts, labels)
    assert set(terms) == {0, 1}  # noise gets no terms
    words0 = {w for term in terms[0] for w in term.split()}
    words1 = {w for term in terms[1] for w in term.split()}
    assert {"refund", "money"} <= words0
    assert {"password", "reset"} <= words1
    assert not words0 & {"password", "reset"}
    assert not words1 & {"refund", "money"}
    # 'missing' and 'order' appear once per cluster: a phrase seen once says nothing.
    assert "missing" not in words0 | words1
    assert "order" not in words0 | words1
    # stop words never show up
    assert not (words0 | words1) & {"my", "is", "the", "where", "and", "for", "cannot"}


def test_distinctive_terms_rank_cluster_words_above_shared_words():
    # 'order' occurs twice in both clusters, 'refund'/'login' three times in one cluster only.
    texts = ["refund order", "refund order", "refund late", "login order", "login order", "login failed"]
    labels = np.array([0, 0, 0, 1, 1, 1])
    terms = distinctive_terms(texts, labels)
    assert terms[0][0] == "refund"
    assert terms[1][0] == "login"


def test_no_cluster_is_named_by_reporting_words_contractions_or_markup_residue():
    # Issue 25: "said" named news clusters, "i'm" a complaint cluster, "gt" came from "&gt;".
    texts = ["he said the bank fee rose &gt; 5", "mr smith said the bank fee doubled", "i'm angry the bank fee rose",
             "i'm told the train was late again", "she said the train was late", "gt the train late gt"]
    labels = np.array([0, 0, 0, 1, 1, 1])
    terms = distinctive_terms(texts, labels)
    words = {w for t in terms.values() for term in t for w in term.split()}
    assert {"bank", "train"} <= words
    assert not words & {"said", "mr", "i'm", "gt", "told"}


def test_distinctive_terms_with_only_stop_words():
    assert distinctive_terms(["the and", "of the", "is it"], np.array([0, 0, 1])) == {0: [], 1: []}


@pytest.mark.parametrize(
    "terms, name, text",
    [
        ([], "unnamed group", "is similar to the other texts of this group (no distinctive words found)"),
        (["refund"], "refund", "mentions refund"),
        (["refund", "money"], "refund / money", "mentions refund or money"),
        (["refund", "money", "bank"], "refund / money", "mentions refund, money or bank"),
        (["a", "b", "c", "d", "e", "f"], "a / b", "mentions a, b, c or d"),
    ],
)
def test_phrase_explanation_wording(terms, name, text):
    assert phrase_explanation(terms) == (name, text)


def test_propose_extractive_one_candidate_per_cluster(blobs):
    labels = blobs.groups.copy()
    labels[0] = -1  # one noise text
    candidates = propose_extractive(blobs.X, blobs.texts, labels, round=2)
    assert [c.source_cluster for c in candidates] == [0, 1, 2]
    for cand in candidates:
        assert cand.source == "extractive" and cand.round == 2
        assert np.linalg.norm(cand.vector) == pytest.approx(1.0, rel=1e-5)
        assert cand.text.startswith("mentions ")
        np.testing.assert_array_equal(cand.calibration_labels, labels)
        # The centroid is closest to its own blob.
        own = blobs.X[blobs.groups == cand.source_cluster] @ cand.vector
        other = blobs.X[blobs.groups != cand.source_cluster] @ cand.vector
        assert own.min() > other.max()


# --- ExplainResult.primary --------------------------------------------------------------------


def test_primary_is_the_best_scoring_matching_selected_candidate():
    scores = np.array([
        [0.9, 0.8, 0.95],  # matches 0 and 1 (2 is not selected) -> 0 (0.9 > 0.8)
        [0.6, 0.7, 0.1],   # matches 0 and 1 -> 1
        [0.1, 0.2, 0.9],   # matches only the unselected 2 -> uncovered
    ])
    matches = scores >= 0.55
    explanation = ExplainResult(
        candidates=[], assignment=Assignment(scores, np.full(3, 0.55), matches),
        selection=SelectionResult(chosen=[0, 1], objective=0.0, status="optimal", coverage=2 / 3),
    )
    index, score, count = explanation.primary()
    np.testing.assert_array_equal(index, [0, 1, -1])
    np.testing.assert_allclose(score[:2], [0.9, 0.7])
    assert np.isnan(score[2])
    np.testing.assert_array_equal(count, [2, 2, 0])


# --- the whole offline explainer -------------------------------------------------------------------


def _explain_blobs(blobs, **kwargs):
    clusterer = EmbeddingClusterer(algorithm="hdbscan", reduction="none")
    labels = clusterer.fit(blobs.X).labels_
    explainer = OfflineExplainer(RunConfig.from_flat(**kwargs), clusterer=clusterer)
    weights = np.ones(len(blobs.texts))
    return labels, explainer.explain(blobs.X, blobs.texts, labels, weights)


def test_offline_explainer_recovers_three_blobs(blobs):
    labels, result = _explain_blobs(blobs)
    assert adjusted_rand_score(blobs.groups, labels) == pytest.approx(1.0)
    assert len(result.selected) == 3
    index, _, count = result.primary()
    assert (index >= 0).all(), "every text of a clean blob is explained"
    assert (count == 1).all(), "well-separated blobs: no text matches two explanations"
    assert adjusted_rand_score(blobs.groups, index) == pytest.approx(1.0)
    assert result.selection.coverage == pytest.approx(1.0)
    # Each explanation is named after words of its own topic only, and is true of its members.
    from conftest import TOPICS

    for j in result.selected:
        cand = result.candidates[j]
        topic = blobs.topics[int(np.bincount(blobs.groups[index == j]).argmax())]
        words = {w for term in cand.terms for w in term.split()}
        others = {w for t, template in TOPICS.items() if t != topic for w in template.split()}
        assert words and words <= set(TOPICS[topic].split()) - others, (topic, cand.terms)
        assert cand.text.startswith("mentions ")
    assert len(result.rounds) == 1  # nothing left uncovered, so no second round


def test_offline_explainer_fixed_k(blobs):
    clusterer = EmbeddingClusterer(algorithm="kmeans", k=3, reduction="none")
    labels = clusterer.fit(blobs.X).labels_
    result = OfflineExplainer(RunConfig.from_flat(k=3), clusterer=clusterer).explain(
        blobs.X, blobs.texts, labels, np.ones(len(labels)))
    assert len(result.selected) == 3
    index, _, _ = result.primary()
    assert adjusted_rand_score(blobs.groups, index) == pytest.approx(1.0)


def test_offline_notice_says_extractive_and_no_language_model():
    assert "No language model was configured" in OFFLINE_NOTICE
    assert "grouped by embedding similarity" in OFFLINE_NOTICE and "90%" in OFFLINE_NOTICE


# --- the goal steers the offline wording and order (issue #6, item 3) -----------------------------

from textclust.explain import EXPLAINER_OFFLINE, EXPLAINER_SEEDED  # noqa: E402
from textclust.explain.goal import embed_goal, goal_focus, goal_similarity  # noqa: E402
from textclust.explain.extractive import goal_term_order  # noqa: E402


def test_goal_term_order_blends_distinctiveness_and_goal_similarity():
    terms = ["red", "cracked", "mug"]
    scores = np.array([5.0, 4.0, 1.0])  # distinctiveness 1.0, 0.8, 0.2
    vectors = np.vstack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    # goal along "cracked": 0.8 + 1.0 beats 1.0 + 0
    assert goal_term_order(terms, scores, vectors, unit(0, 1, 0)) == ["cracked", "red", "mug"]
    # goal along "mug": 0.2 + 1.0 beats 1.0 + 0 and 0.8 + 0
    assert goal_term_order(terms, scores, vectors, unit(0, 0, 1)) == ["mug", "red", "cracked"]
    # a goal equally similar to every term keeps the distinctiveness order; weight 0 too
    assert goal_term_order(terms, scores, vectors, unit(1, 1, 1)) == terms
    assert goal_term_order(terms, scores, vectors, unit(0, 0, 1), weight=0.0) == terms


def test_goal_focus_drops_the_instruction():
    assert goal_focus("Cluster the complaints by why the customer is unhappy.") == "why the customer is unhappy"
    assert goal_focus("Cluster the customer messages by what the customer wants the bank to do or explain.") \
        == "what the customer wants the bank to do or explain"
    assert goal_focus("Group these reviews according to the product") == "the product"
    assert goal_focus("  the reviewer's   sentiment ") == "the reviewer's sentiment"
    assert goal_focus("cluster") == "cluster"


def test_proposals_are_ordered_by_similarity_to_the_goal(blobs):
    # Blob g lies along the g-th axis; a goal along axis 2 puts blob 2's candidate first.
    goal = unit(0.1, 0.3, 1, 0, 0, 0, 0, 0)
    plain = propose_extractive(blobs.X, blobs.texts, blobs.groups)
    steered = propose_extractive(blobs.X, blobs.texts, blobs.groups, goal_vector=goal)
    assert [c.source_cluster for c in plain] == [0, 1, 2]
    assert [c.source_cluster for c in steered] == [2, 1, 0]
    similarity = goal_similarity(steered, goal)
    assert np.all(np.diff(similarity) <= 0)
    np.testing.assert_allclose(similarity, [c.vector @ goal for c in steered], rtol=1e-5)
    # Same candidates otherwise: same terms (no embed given), same vectors.
    by_cluster = {c.source_cluster: c for c in plain}
    for c in steered:
        assert c.terms == by_cluster[c.source_cluster].terms
        np.testing.assert_array_equal(c.vector, by_cluster[c.source_cluster].vector)
    with pytest.raises(ValueError, match="same model"):
        propose_extractive(blobs.X, blobs.texts, blobs.groups, goal_vector=np.ones(3))


def test_goal_does_not_change_which_texts_are_explained(blobs):
    goal = unit(0.1, 0.3, 1, 0, 0, 0, 0, 0)
    words = {}

    def embed(terms):  # a fake word model: a fixed random unit vector per word
        rng = np.random.default_rng(0)
        for t in terms:
            words.setdefault(t, unit(*rng.normal(size=8)))
        return np.vstack([words[t] for t in terms])

    clusterer = EmbeddingClusterer(algorithm="kmeans", k=3, reduction="none")
    labels = clusterer.fit(blobs.X).labels_
    weights = np.ones(len(labels))
    plain = OfflineExplainer(RunConfig.from_flat(k=3), clusterer=clusterer).explain(
        blobs.X, blobs.texts, labels, weights)
    steered = OfflineExplainer(RunConfig.from_flat(k=3), clusterer=clusterer, embed=embed).explain(
        blobs.X, blobs.texts, labels, weights, goal_vector=goal)
    assert words, "the explainer embedded the candidate terms"

    def groups(result):
        index, _, _ = result.primary()
        return {frozenset(np.flatnonzero(index == j)) for j in result.selected}

    assert groups(plain) == groups(steered)
    assert steered.candidates[0].source_cluster == int(np.argmax([(blobs.X[labels == c].mean(0)) @ goal
                                                                 for c in range(3)]))


@pytest.fixture(scope="module")
def real_embed():
    from textclust.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(progress=False).encode


def test_a_goal_about_x_puts_x_words_first(real_embed):
    """Real model. By counts alone 'red' leads cluster 0 (5 mentions vs 4 for 'cracked'); a goal
    about damage must put 'cracked' first, a goal about colour must keep 'red' first."""
    texts = ["red kettle cracked", "red mug cracked", "red lamp cracked", "red plate cracked", "red vase",
             "blue parcel late", "blue chair late", "blue sofa late", "blue desk late", "blue rug"]
    labels = np.array([0] * 5 + [1] * 5)
    assert distinctive_terms(texts, labels)[0][:2] == ["red", "cracked"]
    damage = embed_goal("Cluster the orders by what arrived damaged or broken.", real_embed)
    colour = embed_goal("Cluster the orders by the colour of the product.", real_embed)
    assert distinctive_terms(texts, labels, goal_vector=damage, embed=real_embed)[0][:2] == ["cracked", "red"]
    assert distinctive_terms(texts, labels, goal_vector=colour, embed=real_embed)[0][:2] == ["red", "cracked"]
    # Without embed, a goal cannot rank words: counts decide.
    assert distinctive_terms(texts, labels, goal_vector=damage)[0][:2] == ["red", "cracked"]
    # And the candidate's wording follows: "cracked / red", "mentions cracked or red".
    X = np.vstack(real_embed(texts))
    steered = propose_extractive(X, texts, labels, goal_vector=damage, embed=real_embed)
    named = {c.source_cluster: c for c in steered}
    assert named[0].name == "cracked / red" and named[0].text == "mentions cracked or red"


def test_explainer_names():
    assert EXPLAINER_OFFLINE == "offline-extractive"
    assert EXPLAINER_SEEDED == "offline-seeded"
