"""Issue 16, item 2: the mechanisms that decide which explanations a model run keeps.

Each test drives :class:`~textclust.explain.explainer.ModelExplainer` through the in-memory
fake client of ``test_llm_explainer`` (or the scripted HTTP server) with a small scripted
model, so the failure it guards against is visible in a few texts.
"""

from __future__ import annotations

import numpy as np

from tests.test_llm_explainer import KeywordModel, corpus, embed, explanation_for, run, selected_names

CATCH_ALL = {"name": "any complaint", "explanation": 'the text mentions "the"'}  # fits nearly every text


def scripted_rounds(first=None, later=None, base=None):
    """A model whose first propose call answers ``first`` and every later one ``later`` (lists of
    explanations; None: ``base``'s own proposal); every other call goes to ``base``."""
    base = base or KeywordModel()
    rounds = {"n": 0}

    def model(stage, messages):
        if stage == "propose":
            rounds["n"] += 1
            answer = first if rounds["n"] == 1 else later
            if answer is not None:
                return {"explanations": list(answer)}
        return base(stage, messages)

    return model


def catch_all_in_round_two(base=None):
    """Round 1 proposes the two specific explanations, round 2 a catch-all that fits both."""
    return scripted_rounds(later=[CATCH_ALL], base=base or KeywordModel(keywords=["refund", "password"]))


# --- a. a round is kept only if the whole selection gets better ---------------------------------


def test_a_catch_all_of_a_later_round_does_not_replace_the_specific_selection():
    # 20 refund + 20 password texts and 3 texts neither explains (none contains "the").
    texts, topics, X = corpus({"refund": 20, "password": 20})
    texts = texts + ["nothing relevant here", "no idea", "hello world"]
    topics = list(topics) + ["none"] * 3
    result, client, *_ = run(None, model=catch_all_in_round_two(), texts_x=(texts, topics, embed(texts)), rounds=3)
    assert len(client.stage_calls("propose")) == 2  # round 2 did propose the catch-all
    assert any(c.name == "any complaint" for c in result.candidates)  # and it was judged
    # One explanation for every text scores lower on the covering program (one explanation
    # fewer, same texts covered) but merges the two specific ones: it is not better.
    assert selected_names(result) == {"refund complaint", "password complaint"}
    assert "coverage rose" not in result.stop_reason
    assert "round 2" in result.stop_reason and "kept round 1" in result.stop_reason


def test_a_catch_all_that_also_covers_new_texts_does_not_replace_the_specific_selection():
    # The leftover texts contain "the": the catch-all raises coverage by 3/43 (more than the
    # minimum gain), still by merging the two explanations that were selected.
    texts, topics, X = corpus({"refund": 20, "password": 20})
    texts = texts + ["the weather", "the sky", "the sea"]
    topics = list(topics) + ["none"] * 3
    result, client, *_ = run(None, model=catch_all_in_round_two(), texts_x=(texts, topics, embed(texts)), rounds=3)
    assert selected_names(result) == {"refund complaint", "password complaint"}
    assert "kept round 1" in result.stop_reason


def test_a_later_round_that_adds_a_specific_explanation_is_kept():
    texts, topics, X = corpus({"refund": 20, "password": 20, "delivery": 20})
    model = scripted_rounds(first=[explanation_for("refund"), explanation_for("password")],
                            later=[explanation_for("delivery"), CATCH_ALL])
    result, client, *_ = run(None, model=model, texts_x=(texts, topics, X), rounds=3)
    # the catch-all is left out, the new specific explanation is taken
    assert selected_names(result) == {"refund complaint", "password complaint", "delivery complaint"}
    assert result.selection.coverage == 1.0


# --- e. lenient parsing of ids ----------------------------------------------------------------------


def test_explanation_numbers_given_as_digit_strings_are_accepted_without_a_repair(llm_db):
    import json

    from tests.llm_server import ScriptedServer
    from tests.test_llm_explainer import KeywordModel, OracleHandler, assign_requests, cluster_of, http_explain

    texts, topics, X = corpus({"refund": 10, "password": 10})

    def as_strings(items, content):
        answer = KeywordModel().assign(content)
        for result in answer["results"]:
            for match in result["matches"]:
                match["explanation"] = f" {match['explanation']}"  # " 3": a digit string
        return json.dumps(answer)

    with ScriptedServer(OracleHandler(as_strings)) as server:
        result, client = http_explain(server, llm_db, texts, X, batch_size=5, rounds=1)
        repairs = [r for r in assign_requests(server) if len(r["body"]["messages"]) > 2]
    assert repairs == []  # no answer was sent back for repair
    assert not result.unparsed.any()
    assert (cluster_of(result) == topics).all()


# --- b. ties go to the best-fitting explanation -------------------------------------------------------


def test_a_text_matching_two_selected_explanations_goes_to_the_closer_one_not_the_first_listed():
    texts, topics, X = corpus({"refund": 20, "password": 20})
    # Mostly about the password, with a passing mention of a refund: both explanations answer yes.
    both = [f"my password for the {p} account fails, password reset broken, password locked, no refund"
            for p in ("lamp", "desk", "rug", "mug")]
    texts = texts + both
    topics = list(topics) + ["password"] * len(both)
    result, client, *_ = run(None, texts_x=(texts, topics, embed(texts)), rounds=1)
    names = [c.name for c in result.candidates]
    assert names.index("refund complaint") < names.index("password complaint")  # refund is listed first
    index, score, n_matching = result.primary()
    tail = slice(40, None)
    assert (n_matching[tail] == 2).all() and (score[tail] == 1.0).all()  # a true tie of the model's scores
    assert [result.candidates[j].name for j in index[tail]] == ["password complaint"] * len(both)
    assert [result.candidates[j].name for j in index[:20]] == ["refund complaint"] * 20


# --- f. representative examples ranked by something real -------------------------------------------


class HashEmbedder:
    """The tests' hashed bag of words as an :class:`~textclust.interfaces.Embedder`."""

    model = "test-hashed-words"

    def encode(self, texts):
        return embed(list(texts))


class OneCluster:
    """A clusterer that puts every text in one cluster (the model's proposals do the work)."""

    def fit(self, X):
        self.labels_ = np.zeros(len(X), dtype=int)
        return self

    def subset_clusterer(self, min_cluster_size):
        return OneCluster()


def test_representative_examples_are_the_members_closest_to_their_explanation_not_the_first_in_file_order(tmp_path):
    from tests.test_llm_explainer import DUMMY_MODEL, FakeClient

    class Client(FakeClient):
        def usage(self):  # what the pipeline stores of the model's use
            return {"model": "m", "server": "fake", "calls": len(self.calls), "cached_calls": 0, "failed_calls": 0,
                    "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": None, "retries": 0, "structured": None}
    from textclust.api import run_texts
    from textclust.report.model import ReportOptions, report_from_result

    odd = [f"refund? also my {a}, the {b}, a {c} and the weather" for a, b, c in
           (("cat", "garden", "holiday"), ("dog", "music", "kitchen"), ("bird", "roof", "train"))]
    typical = [f"I want my refund for the {p}, the refund is overdue" for p in ("lamp", "desk", "rug", "mug", "sofa")]
    password = [f"my password for the {p} shop account fails, password reset broken" for p in ("lamp", "desk", "rug")]
    texts = odd + typical + password  # the odd refund texts come first in the file
    result = run_texts(texts, "what the customer complains about", db=tmp_path / "t.db", llm=DUMMY_MODEL,
                       embedder=HashEmbedder(), clusterer=OneCluster(), client=Client(KeywordModel()),
                       rounds=1, n_samples=20, embedding_model=HashEmbedder.model)
    refund = next(c for c in result.clusters if c.name == "refund complaint")
    assert refund.size == 8 and refund.mean_score == 1.0  # every member a "yes": scores tie
    assert all(example in typical for example in refund.examples)
    report = report_from_result(result, ReportOptions(representative=5))
    shown = next(e for e in report["explanations"] if e["name"] == "refund complaint")["representative"]
    # The typical members first (a near-duplicate of one already shown is skipped, so an odd
    # member may fill the last place), never the file's first members ahead of them.
    is_typical = [r["text"] in typical for r in shown]
    assert is_typical[:2] == [True, True] and is_typical == sorted(is_typical, reverse=True), shown


# --- c. the proposer sees the current candidates and proposes only what is missing -----------------


def test_later_rounds_show_the_proposer_the_candidates_so_far_and_ask_for_what_they_miss():
    from tests.test_llm_explainer import data_items

    texts, topics, X = corpus({"refund": 20, "password": 20, "delivery": 20})
    model = scripted_rounds(first=[explanation_for("refund")])
    result, client, *_ = run(None, model=model, texts_x=(texts, topics, X), rounds=3)
    first, second = (m[1]["content"] for m in client.stage_calls("propose")[:2])
    assert 'refund complaint: the text mentions "refund"' not in first
    head = second.split("<<<TEXTS")[0]
    assert '- refund complaint: the text mentions "refund"' in head
    assert "do not fit any of them" in head  # it asks for what the listed ones miss
    assert "\nExplanations:\n" not in second  # the marker of the assign prompt (the oracle relies on it)
    assert data_items(second)  # the data block is unchanged


def test_a_proposal_named_like_an_existing_candidate_is_a_duplicate_even_when_worded_apart():
    model = KeywordModel(keywords=["refund", "password"], extra_proposals=[
        {"name": "Refund complaints", "explanation": "the customer asks for their money back"},  # same name
        {"name": "delivery complaint (2)", "explanation": 'the text mentions "delivery"'},  # new: kept
    ])
    result, *_ = run({"refund": 10, "password": 10, "delivery": 5}, model=model, rounds=1, merge_threshold=0.9)
    names = [c.name for c in result.candidates]
    assert "Refund complaints" not in names and names.count("refund complaint") == 1
    assert "delivery complaint (2)" in names


# --- d. a fixed K with fewer candidates than K proposes more ----------------------------------------


def few_then_the_rest(later=("delivery", "invoice")):
    """Round 1: refund, password and one that fits nothing; later rounds: ``later`` (if present)."""
    rounds = {"n": 0}
    base = KeywordModel(keywords=list(later))

    def model(stage, messages):
        if stage == "propose":
            rounds["n"] += 1
            if rounds["n"] == 1:
                return {"explanations": [explanation_for("refund"), explanation_for("password"),
                                         explanation_for("zebra")]}
            return base.propose(messages[1]["content"])
        return KeywordModel()(stage, messages)

    return model


def test_a_fixed_k_with_too_few_candidates_proposes_more_for_the_uncovered_texts():
    sizes = {"refund": 20, "password": 20, "delivery": 20, "invoice": 20}
    result, client, *_ = run(sizes, model=few_then_the_rest(), rounds=1, k=4)
    assert selected_names(result) == {"refund complaint", "password complaint", "delivery complaint",
                                      "invoice complaint"}
    assert len(client.stage_calls("propose")) >= 2  # more than the one round asked for
    assert any("to find the 4 explanations asked for" in note for note in result.notes), result.notes


def test_a_fixed_k_never_pads_with_a_candidate_that_covers_almost_nothing():
    sizes = {"refund": 20, "password": 20, "delivery": 20, "invoice": 20}
    result, client, *_ = run(sizes, model=few_then_the_rest(later=()), rounds=1, k=4)
    assert "zebra complaint" not in selected_names(result)  # it fits no text
    assert selected_names(result) == {"refund complaint", "password complaint"}
    assert 2 <= len(client.stage_calls("propose")) <= 1 + 4  # tried, within a bound
    assert any("asked for 4 explanations" in note and "selected 2" in note for note in result.notes), result.notes


# --- h. prompts a mid-sized model follows; evidence checked against the text ------------------------


def test_the_propose_prompt_repeats_the_goal_after_the_data_and_names_what_not_to_propose():
    from textclust.explain.propose_llm import CLOSE_MARKER, propose_messages

    goal = "why the customer is unhappy"
    _, user = propose_messages(goal, ["the refund never came", "box crushed"], 5)
    text = user["content"]
    assert text.startswith(f"The analyst's goal: {goal}\n")
    after = text.split(CLOSE_MARKER)[1]
    assert goal in after  # the goal again, after the data
    rules = text.split("<<<TEXTS")[0].lower()
    for forbidden in ("restates the goal", '"a or b"', "nearly every text", "incidental wording"):
        assert forbidden in rules, forbidden


def test_the_assign_prompt_says_what_the_goal_is_for_and_when_to_answer_yes():
    from textclust.explain.assign_llm import AssignPrompt

    prompt = AssignPrompt("why the customer is unhappy", [("refund", "the customer asks for money back")])
    text = prompt.messages([("t1", [1], "where is my refund")])[1]["content"].lower()
    assert "explanations below group the texts for this goal" in text.split("\nexplanations:\n")[0]
    assert "judge each text on its own" in text
    assert "clearly supports" in text and "topical similarity alone is not enough" in text
    assert "if unsure" in text
    assert 'tone or the absence of something, the evidence may be ""' in text


def quoting(fake_quote_for: str):
    """The keyword model, whose evidence for texts containing ``fake_quote_for`` is not in the text."""
    base = KeywordModel(keywords=["refund", "password"])

    def model(stage, messages):
        answer = base(stage, messages)
        if stage == "assign":
            from tests.test_llm_explainer import data_items

            texts = {item["id"]: item["text"] for item in data_items(messages[1]["content"])}
            for result in answer["results"]:
                for match in result["matches"]:
                    if fake_quote_for in texts[result["id"]]:
                        match["evidence"] = "a sentence the text never says"
                    elif "mug" in texts[result["id"]] and "refund" in texts[result["id"]]:
                        match["evidence"] = "  REFUND   for the MUG "  # case and spacing differ: verified
                    elif "lamp" in texts[result["id"]]:
                        match["evidence"] = ""  # no quote: allowed, not unverified
        return answer

    return model


def test_evidence_not_found_in_its_text_is_recorded_as_unverified_and_counted():
    texts, topics, X = corpus({"refund": 20, "password": 20})
    result, *_ = run(None, model=quoting("desk"), texts_x=(texts, topics, X), rounds=1)
    fake = [i for i, t in enumerate(texts) if "desk" in t]  # one refund and one password text
    A = result.assignment
    assert sorted(i for i, _ in A.unverified) == fake
    assert all((i, j) not in A.evidence for i, j in A.unverified)  # not shown as evidence
    assert (cluster_of_names(result)[fake] != "-").all()  # the judgment itself stands
    assert any(note.startswith("2 evidence quotes were not found in their text") for note in result.notes)
    mug = next(i for i, t in enumerate(texts) if "mug" in t and "refund" in t)
    assert A.evidence[(mug, result.primary()[0][mug])] == "REFUND for the MUG"


def cluster_of_names(result):
    index = result.primary()[0]
    return np.array([result.candidates[j].name if j >= 0 else "-" for j in index])


def test_the_summary_shows_the_runs_notes(tmp_path):
    from rich.console import Console

    from tests.test_llm_explainer import DUMMY_MODEL, FakeClient
    from textclust.api import run_texts
    from textclust.report import print_summary

    class Client(FakeClient):
        def usage(self):
            return {"model": "m", "server": "fake", "calls": len(self.calls), "cached_calls": 0, "failed_calls": 0,
                    "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": None, "retries": 0, "structured": None}

    texts = [f"I want my refund for the {p}, the refund is overdue" for p in ("lamp", "desk", "rug", "mug")]
    result = run_texts(texts, "what the customer complains about", db=tmp_path / "t.db", llm=DUMMY_MODEL,
                       embedder=HashEmbedder(), clusterer=OneCluster(), client=Client(quoting("desk")),
                       rounds=1, n_samples=20, embedding_model=HashEmbedder.model)
    console = Console(record=True, width=200, color_system=None)
    print_summary(result, console)
    assert "Note: 1 evidence quote was not found in its text" in console.export_text()
