"""Offline explanations are true of their members (issue 15, item 1): a "mentions …"
explanation holds for at least 90% of the texts assigned to it, or the explanation does not
claim a predicate at all ("similar in meaning to …")."""

from __future__ import annotations

import re

import numpy as np
import pytest

from textclust.explain.truthful import (
    PREDICATE_PREFIX,
    SIMILAR_PREFIX,
    TRUTH_TARGET,
    choose_terms,
    grams,
    is_predicate,
    predicate_truth,
    reword,
)


def literally_true(text: str, terms: list[str]) -> bool:
    """The predicate read the way a person reads it: the text contains one of the words or
    phrases as whole words (checked here independently of the module's own tokenizer)."""
    lowered = " ".join(re.findall(r"[\w'-]+", text.lower()))
    return any(re.search(rf"(?<![\w'-]){re.escape(term)}(?![\w'-])", lowered) for term in terms)


REFUNDS = [f"the refund for my {p} never arrived" for p in ("kettle", "lamp", "sofa", "desk", "rug", "watch",
                                                              "camera", "jacket", "printer")]
REFUNDS.append("still waiting for my money back")  # 1 of 10 without the word: 90% mention "refund"
PASSWORDS = [f"cannot log in, the password reset for {p} fails" for p in ("mail", "shop", "app", "site")]
MIXED = ["Give it a try and enjoy.", "A must try!", "I agree.", "Lovely evening overall.", "Not for me, sorry.",
         "Five stars from us.", "Would come back.", "Meh."]


def _reword(groups: list[list[str]]):
    texts = [t for g in groups for t in g]
    members, start = [], 0
    for g in groups:
        members.append(np.arange(start, start + len(g)))
        start += len(g)
    scores = [np.linspace(1.0, 0.5, len(g)) for g in groups]
    return texts, members, reword(texts, members, scores)


def test_a_predicate_is_only_claimed_when_it_holds_for_90_percent():
    texts, members, out = _reword([REFUNDS, PASSWORDS, MIXED])
    refund, password, mixed = out
    for wording, idx in ((refund, members[0]), (password, members[1])):
        assert is_predicate(wording["text"]), wording
        holds = [literally_true(texts[i], wording["terms"]) for i in idx]
        assert np.mean(holds) >= TRUTH_TARGET
        assert wording["truth"] == pytest.approx(np.mean(holds))  # the share shown is the share measured
    # Words all (or 9 in 10) members share; never a product name only one member has.
    assert set(refund["terms"]) <= {"refund", "arrived", "never arrived"}, refund
    assert set(password["terms"]) <= {"password", "password reset", "reset", "log", "fails", "reset fails"}, password
    # Eight short texts with no word in common: no predicate is claimed.
    assert not is_predicate(mixed["text"]) and mixed["text"].startswith(SIMILAR_PREFIX)
    assert mixed["truth"] is None
    assert "Give it a try and enjoy." in mixed["text"]  # quotes its most typical member


def test_a_similar_in_meaning_explanation_states_the_real_shares_of_its_words():
    groups = [MIXED + ["A must try, honestly."], REFUNDS]
    texts, members, out = _reword(groups)
    wording = out[0]
    assert not is_predicate(wording["text"])
    for share, term in re.findall(r"(\d+)% mention ([\w' -]+?)(?:,|\))", wording["text"]):
        measured = np.mean([literally_true(t, [term]) for t in groups[0]])
        assert int(share) == round(100 * measured), (term, share, measured)


def test_choose_terms_is_a_greedy_cover_and_stops_at_the_target():
    member_grams = [{"a"}, {"a"}, {"b"}, {"b", "a"}, {"c"}]
    terms, share = choose_terms(member_grams, ["c", "b", "a"], limit=5, target=0.9)
    assert terms[0] == "a" and set(terms) == {"a", "b", "c"} and share == 1.0
    terms, share = choose_terms(member_grams, ["c", "b", "a"], limit=1, target=0.9)
    assert terms == ["a"] and share == pytest.approx(0.6)


def test_predicate_truth_reads_whole_words_and_phrases():
    assert predicate_truth(["refunds are slow", "my refund"], ["refund"]) == 0.5  # "refunds" is another word
    assert predicate_truth(["the password reset fails"], ["password reset"]) == 1.0
    assert predicate_truth([], ["x"]) is None and predicate_truth(["x"], []) is None
    assert "password reset" in grams("The Password reset fails")


def test_offline_runs_keep_every_predicate_true_of_its_members(blobs):
    """Through the explainer, on final members (after assignment), not on the clusters."""
    from textclust.cluster import EmbeddingClusterer
    from textclust.config import RunConfig
    from textclust.explain.explainer import OfflineExplainer

    clusterer = EmbeddingClusterer(algorithm="kmeans", reduction="none")
    labels = clusterer.fit(blobs.X).labels_
    result = OfflineExplainer(RunConfig.from_flat(), clusterer=clusterer).explain(
        blobs.X, blobs.texts, labels, np.ones(len(labels)))
    final = result.final_matches()
    assert result.selected
    for j in result.selected:
        cand = result.candidates[j]
        members = [blobs.texts[i] for i in np.flatnonzero(final[:, j])]
        if cand.text.startswith(PREDICATE_PREFIX):
            assert np.mean([literally_true(t, cand.terms) for t in members]) >= TRUTH_TARGET, cand
        else:
            assert cand.text.startswith(SIMILAR_PREFIX)


def test_the_summary_and_the_report_show_truthfulness(tmp_path, blobs):
    from rich.console import Console

    from conftest import build_fake_run
    from textclust.report.markdown import report_markdown
    from textclust.report.model import ReportOptions, report_from_result
    from textclust.report.summary import print_summary
    from textclust.results import load_run

    run = build_fake_run(tmp_path / "t.db", blobs)
    result = load_run(run.db, run.run_id)
    truths = [c.truth for c in result.clusters]
    assert truths and all(t is not None and t >= TRUTH_TARGET for t in truths)
    console = Console(record=True, width=200, color_system=None)
    print_summary(result, console)
    out = console.export_text()
    assert "Truthfulness" in out and f"lowest {min(truths):.0%}" in out
    md = report_markdown(report_from_result(result, ReportOptions()))
    assert md.count("of its distinct texts") == len(truths)
