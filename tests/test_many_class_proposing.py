"""Many-class corpora: when a round's propose call names as many explanations as asked
(``n_explanations``) and the clustering has more clusters than that, the round proposes
again once per group of clusters, so every cluster gets an explanation; a goal with few
kinds keeps one call a round, however many clusters. Real HTTP against the scripted oracle
(tests/oracle.py) on 127.0.0.1."""

from __future__ import annotations

import numpy as np

from tests.fakes import hashed_words
from tests.llm_server import ScriptedServer
from tests.oracle import Oracle
from textclust.config import RunConfig
from textclust.explain.estimate import estimate_llm
from textclust.explain.explainer import ModelExplainer
from textclust.explain.model import MAX_PROPOSE_CALLS
from textclust.explain.sampling import proposal_groups

GOAL = "Cluster the notes by their hobby."
HOBBIES = ["cooking", "football", "travel", "music", "banking", "gardening", "chess", "painting", "fishing",
           "cycling", "knitting", "hiking", "baking", "surfing", "pottery", "archery", "rowing", "juggling",
           "origami", "climbing", "sailing", "skating", "birding", "camping"]
KINDS = ["outdoor pastime", "indoor pastime", "water pastime", "group pastime"]
DIM = 256


def embed(strings: list[str]) -> np.ndarray:
    return hashed_words(strings, DIM)


def corpus(n_hobbies: int, per_hobby: int = 6):
    texts, gold = [], []
    for h, hobby in enumerate(HOBBIES[:n_hobbies]):
        for i in range(per_hobby):
            texts.append(f"note {h}-{i}: a weekend of {hobby}")
            gold.append(hobby)
    return texts, gold, np.repeat(np.arange(n_hobbies), per_hobby)




def explain(db, n_hobbies: int, rounds: int, kinds: int | None = None):
    """``kinds``: the goal's gold labels are that many groups of hobbies (else one per hobby)."""
    from textclust.llm import LLMClient, LLMConfig

    texts, gold, labels = corpus(n_hobbies)
    if kinds is not None:
        gold = [KINDS[HOBBIES.index(hobby) % kinds] for hobby in gold]
    X = embed(texts)
    with ScriptedServer(Oracle(texts, gold)) as server:
        llm = LLMConfig(model="oracle", base_url=server.base_url, max_retries=0)
        # Settings at the defaults (n_explanations 8, n_samples 40): nothing tells the run the gold count.
        config = RunConfig.from_flat(model=llm, rounds=rounds).validate()
        explainer = ModelExplainer(config, LLMClient(llm, db), embed, GOAL)
        estimate = estimate_llm(explainer, X, texts, labels, np.ones(len(texts)))
        result = explainer.explain(X, texts, labels, np.ones(len(texts)))
    return result, estimate, gold


def test_many_clusters_get_one_propose_call_per_group_and_every_cluster_an_explanation(llm_db):
    # 24 clusters, 8 explanations a call: one call over all of them names 8 hobbies at most
    # (before this mechanism: 8 selected, a third of the notes covered). It names 8, so three
    # more calls follow, one per group of 8 clusters.
    result, estimate, gold = explain(llm_db, 24, rounds=1)
    assert result.n_calls["propose"] == 4 <= estimate["propose"]["calls"]
    assert {result.candidates[j].name for j in result.selected} == set(HOBBIES[:24])
    assert result.selection.coverage == 1.0


def test_few_clusters_keep_one_propose_call_a_round(llm_db):
    result, estimate, _ = explain(llm_db, 6, rounds=2)
    assert result.n_calls["propose"] == 1  # round 1 covered everything: no round 2
    assert estimate["propose"]["calls"] == 2  # one a round
    assert len(result.selected) == 6 and result.selection.coverage == 1.0


def test_many_clusters_but_few_kinds_keep_one_propose_call(llm_db):
    # The same 24 clusters, but the goal has 4 kinds: the first call names 4 of the 8 asked.
    result, estimate, _ = explain(llm_db, 24, rounds=1, kinds=4)
    assert result.n_calls["propose"] == 1
    assert len(result.selected) == 4 and result.selection.coverage == 1.0


def test_groups_share_out_the_pool_and_are_bounded():
    texts, _, labels = corpus(24, per_hobby=3)
    X = embed(texts)
    groups = proposal_groups(X, labels, None, 8, MAX_PROPOSE_CALLS)
    assert len(groups) == 3 and (np.sum(groups, axis=0) == 1).all()  # a partition of every text
    assert all(len(set(labels[g].tolist())) == 8 for g in groups)  # whole clusters, 8 a group
    assert len(proposal_groups(X, labels, None, 2, MAX_PROPOSE_CALLS)) == MAX_PROPOSE_CALLS
    # Later rounds: only clusters mostly uncovered count; a few stray texts elsewhere do not
    # call for more calls, and they stay in the one group.
    pool = np.isin(labels, range(6)) | (np.arange(len(labels)) % 9 == 0)
    (only,) = proposal_groups(X, labels, pool, 8, MAX_PROPOSE_CALLS)
    assert (only == pool).all()
    pool = np.isin(labels, range(18))
    groups = proposal_groups(X, labels, pool, 8, MAX_PROPOSE_CALLS)
    assert len(groups) == 3 and (np.sum(groups, axis=0) == pool).all()
