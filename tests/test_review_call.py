"""The review call: after a round's proposals, one model call keeps, rejects (off-goal,
catch-all, disjunction) or merges (near-duplicate) the new candidates, before any text is
judged against them, so that bad candidates take no prefilter slot and cannot be selected.
Real HTTP against the scripted models (tests/oracle.py, tests/realistic_oracle.py) on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import hashed_words
from tests.llm_server import ScriptedServer
from tests.realistic_oracle import BROAD, Meaning, Proposed, RealisticOracle
from textclust.config import RunConfig
from textclust.errors import SettingsError
from textclust.explain.explainer import ModelExplainer

GOAL = "Cluster the notes by their hobby."
HOBBIES = ["cooking", "football", "travel", "music", "chess", "fishing"]
DIM = 256


def embed(strings: list[str]) -> np.ndarray:
    return hashed_words(strings, DIM)


class BadProposals(RealisticOracle):
    """Proposes every hobby of the sample, plus one catch-all and one near-duplicate (a second
    wording of the first hobby); judges and reviews without errors (rates 0)."""

    propose_steps = ("paraphrase_labels", "one_broad", "one_duplicate")

    def one_broad(self, ctx, proposals):
        name, text = BROAD[0]  # "The text expresses an opinion": judged true of 70-95% of texts
        return proposals[:1] + [Proposed(name, text, Meaning("broad"), "broad")] + proposals[1:]

    def one_duplicate(self, ctx, proposals):
        first = next(p for p in proposals if p.kind == "label")
        label = first.meaning.labels[0]  # reworded enough to pass the proposer's own merge (cosine 0.9)
        return proposals + [Proposed(f"Hobby {label} pursued", f"Notes in which someone spends spare time on "
                                     f"{label} as a hobby", first.meaning, "dup")]




def corpus(per_hobby: int = 6):
    texts = [f"note {h}-{i}: a weekend of {hobby}" for h, hobby in enumerate(HOBBIES) for i in range(per_hobby)]
    gold = [hobby for hobby in HOBBIES for _ in range(per_hobby)]
    return texts, gold, np.repeat(np.arange(len(HOBBIES)), per_hobby)


def explain(db, oracle_class=BadProposals, review=True, **settings):
    from textclust.llm import LLMClient, LLMConfig

    texts, gold, labels = corpus()
    oracle = oracle_class(texts, gold, error_rate=0.0, broad_rate=0.0, merge_rate=0.0, dup_rate=0.0,
                          quirk_rate=0.0, broken_rate=0.0, review_miss_rate=0.0, review_error_rate=0.0)
    X = embed(texts)
    with ScriptedServer(oracle) as server:
        llm = LLMConfig(model="oracle", base_url=server.base_url, max_retries=0)
        # prefilter 2: a catch-all among a text's two most similar candidates costs it a slot.
        config = RunConfig.from_flat(model=llm, rounds=2, prefilter=2, escalations=0, review=review,
                                     **settings).validate()
        explainer = ModelExplainer(config, LLMClient(llm, db), embed, GOAL)
        result = explainer.explain(X, texts, labels, np.ones(len(texts)))
    return result, oracle, explainer, (X, texts, labels)


def test_catch_all_and_near_duplicate_are_removed_before_judging(llm_db):
    result, oracle, _, _ = explain(llm_db)
    names = [c.name for c in result.candidates]
    broad = BROAD[0][0]
    assert oracle.stats["proposals"]["broad"] >= 1 and oracle.stats["proposals"]["dup"] >= 1
    # The catch-all and the second wording never became candidates: no text was asked about them.
    assert broad not in names
    assert len(names) == len(HOBBIES)
    assert oracle.stats["review"]["right reject"] >= 1 and oracle.stats["review"]["right merge"] >= 1
    # The specific explanations are selected, one per hobby, and cover every note.
    selected = {oracle.label_of_candidate(result.candidates[j].name, result.candidates[j].text)
                for j in result.selected}
    assert selected == set(HOBBIES) and result.selection.coverage == 1.0


def test_review_is_one_call_a_round_within_the_estimate_and_can_be_switched_off(llm_db):
    from textclust.explain.estimate import estimate_llm

    result, oracle, explainer, (X, texts, labels) = explain(llm_db)
    estimate = estimate_llm(explainer, X, texts, labels, np.ones(len(texts)))
    assert result.n_calls["review"] == oracle.requests["review"] == len(result.rounds)
    assert estimate["review"]["calls"] >= result.n_calls["review"]
    assert estimate["total"]["calls"] == sum(estimate[s]["calls"] for s in ("propose", "assign", "review"))

    off, oracle_off, explainer_off, _ = explain(llm_db, review=False)
    assert oracle_off.requests["review"] == 0 and "review" not in off.n_calls
    assert "review" not in estimate_llm(explainer_off, X, texts, labels, np.ones(len(texts)))
    assert BROAD[0][0] in [c.name for c in off.candidates]  # without it the catch-all is judged


def test_answers_that_cannot_be_applied_keep_the_candidates():
    from textclust.explain.review_llm import parse_review

    data = {"decisions": [
        {"candidate": 3, "action": "merge", "into": 3},  # into itself
        {"candidate": "4", "action": "REJECT", "into": 0},  # a string number, upper case: applied
        {"candidate": 5, "action": "merge", "into": 4},  # into a rejected one: kept
        {"candidate": 6, "action": "split", "into": 0},  # unknown action: kept
        {"candidate": 1, "action": "reject", "into": 0},  # not under review (an earlier round's)
        {"candidate": 7, "action": "merge", "into": 2},  # into a kept earlier candidate: applied
        {"candidate": 9, "action": "reject", "into": 0},  # no such candidate
    ]}
    review = parse_review(data, n_existing=2, n_new=5)
    assert review.rejected == [1] and review.merged == {4: 1} and review.removed == {1, 4}


def test_a_review_removing_everything_in_round_one_is_ignored(llm_db):
    class RejectsAll(BadProposals):
        def _review(self, prompt):
            answer = super()._review(prompt)
            return {"decisions": [{**d, "action": "reject"} for d in answer["decisions"]]}

    result, _, _, _ = explain(llm_db, RejectsAll)
    assert len(result.selected) >= len(HOBBIES) and result.selection.coverage == 1.0


def test_the_setting_is_validated():
    with pytest.raises(SettingsError, match="review"):
        RunConfig.from_flat(review="yes").validate()
