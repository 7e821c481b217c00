"""The realistic simulated model (tests/realistic_oracle.py): its behaviours happen at the
rates asked for, deterministically, and textclust's own parser copes with (or reports) every
format quirk. Prompts are built by textclust's own prompt code; the answers are read back
the way the client reads them (parse_json → coerce_scalars → check_schema → validate)."""

from __future__ import annotations

import functools
import json
import sqlite3

import pytest

from tests.llm_server import ScriptedServer
from tests.oracle import Oracle, data_items, label_name
from tests.realistic_oracle import BROAD, Meaning, RealisticOracle
from textclust.explain.assign_llm import ASSIGN_SCHEMA, AssignPrompt, parse_answer, validate_assignment
from textclust.explain.propose_llm import PROPOSE_SCHEMA, parse_proposals, propose_messages, validate_proposals
from textclust.llm.client import REPAIR_PROMPT
from textclust.llm.parse import ParseError, check_schema, coerce_scalars, parse_json

GOAL = "Cluster the texts by their subject."
LABELS = ["cooking", "football", "travel", "music", "banking", "gardening"]
CLEAN = dict(error_rate=0.0, broad_rate=0.0, merge_rate=0.0, dup_rate=0.0, quirk_rate=0.0, broken_rate=0.0)


def corpus(per_label: int = 100) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for i in range(per_label):
        for j, label in enumerate(LABELS):
            texts.append(f"note {i}-{j}: a few words on {label} from writer {i * 7 + j}")
            labels.append(label)
    return texts, labels


TEXTS, GOLD = corpus()
LABEL_OF = dict(zip(TEXTS, GOLD))


def request(messages: list[dict]) -> dict:
    return {"path": "/v1/chat/completions", "headers": {}, "body": {"messages": messages}}


def content(reply: dict) -> str:
    return reply["choices"][0]["message"]["content"]


def read(text: str, schema: dict, validate) -> dict:
    """An answer as the client reads it (raises ParseError / SchemaMismatch / ValueError)."""
    data = coerce_scalars(parse_json(text), schema)
    check_schema(data, schema)
    return validate(data)


@functools.lru_cache(maxsize=None)  # rendering is the slow part; the parametrised tests share prompts
def propose_prompts(n_calls: int, n_samples: int = 12, asked: int = 8, existing: tuple = (),
                    step: int | None = None) -> tuple:
    """Propose prompts over sliding windows of the corpus (each sample holds several labels)."""
    step = step or max(1, (len(TEXTS) - n_samples) // max(1, n_calls))
    return tuple(propose_messages(GOAL, TEXTS[c * step:c * step + n_samples], asked, existing=existing)
                 for c in range(n_calls))


def ask_propose(oracle, messages) -> list:
    return parse_proposals(read(content(oracle(request(messages))), PROPOSE_SCHEMA, validate_proposals), None)


def own_wordings(oracle) -> list[tuple[str, str]]:
    """One of the oracle's own label paraphrases per label (proposed first; the registry is
    filled whatever the format of the answers)."""
    for messages in propose_prompts(3, n_samples=60, asked=20):
        oracle(request(messages))
    chosen = {}
    for text, meaning in oracle.meanings.items():
        if meaning.kind == "label":
            chosen.setdefault(meaning.labels[0], text)
    return [(label_name(label), text) for label, text in sorted(chosen.items())]


def faulty_and_clean(**rates) -> tuple[RealisticOracle, RealisticOracle, list[tuple[str, str]]]:
    """An oracle with the given fault ``rates`` beside a clean one, both having proposed (so
    both know the same wordings), and the clean one's wordings as candidates."""
    faulty = RealisticOracle(TEXTS, GOLD, **{**CLEAN, **rates})
    clean = RealisticOracle(TEXTS, GOLD, **CLEAN)
    candidates = own_wordings(clean)
    own_wordings(faulty)
    return faulty, clean, candidates


def parsed_assignment(data, messages) -> dict:
    """The assign answer ``data`` read against the items its prompt asked about."""
    return parse_answer(data, {i["id"]: i["check"] for i in data_items(messages[-1]["content"])})


def assign_messages(candidates, texts, checks=None, batch: int = 5) -> list[list[dict]]:
    prompt = AssignPrompt(GOAL, candidates)
    numbers = checks or list(range(1, len(candidates) + 1))
    return [prompt.messages([(f"t{k}", numbers, t) for k, t in enumerate(texts[i:i + batch], 1)])
            for i in range(0, len(texts), batch)]


def matches(oracle, messages) -> dict[str, set[int]]:
    data = read(content(oracle(request(messages))), ASSIGN_SCHEMA, validate_assignment)
    checks = {item["id"]: item["check"] for item in data_items(messages[-1]["content"])}
    return {tid: set(found) for tid, found in parse_answer(data, checks).items()}


# --- determinism ------------------------------------------------------------------------------------


def conversation(oracle) -> list[str]:
    """Every answer of a fixed sequence of propose and assign calls."""
    out = [content(oracle(request(m))) for m in propose_prompts(10)]
    candidates = [(" ".join(text.split()[:3]), text) for text in list(oracle.meanings)[:8]]
    out += [content(oracle(request(m))) for m in assign_messages(candidates, TEXTS[:200])]
    return out


def test_same_seed_same_answers_and_another_seed_other_answers():
    texts, gold = TEXTS, GOLD
    first = conversation(RealisticOracle(texts, gold, seed=0))
    assert conversation(RealisticOracle(texts, gold, seed=0)) == first
    other = conversation(RealisticOracle(texts, gold, seed=1))
    assert sum(a != b for a, b in zip(first, other)) > len(first) // 4


def test_answers_do_not_depend_on_the_order_of_the_requests():
    oracle = RealisticOracle(TEXTS, GOLD)
    candidates = own_wordings(oracle)
    calls = assign_messages(candidates, TEXTS[:100])
    forward = [content(oracle(request(m))) for m in calls]
    backward = [content(oracle(request(m))) for m in reversed(calls)]
    assert backward[::-1] == forward


# --- rates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_wrong_judgments_happen_at_the_error_rate_and_of_both_kinds(rate):
    oracle = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "error_rate": rate})
    candidates = own_wordings(oracle)
    label_of_number = {n: oracle.meaning_of(name, text).labels[0] for n, (name, text) in enumerate(candidates, 1)}
    false_yes = missed_yes = pairs = 0
    for messages in assign_messages(candidates, TEXTS, batch=10):
        found = matches(oracle, messages)
        for item in data_items(messages[-1]["content"]):
            for n in item["check"]:
                right = label_of_number[n] == LABEL_OF[item["text"]]
                said = n in found[item["id"]]
                false_yes += said and not right
                missed_yes += right and not said
                pairs += 1
    assert pairs == len(TEXTS) * len(LABELS)
    assert abs((false_yes + missed_yes) / pairs - rate) < 0.025  # 3600 pairs: sd ≤ 0.008
    assert oracle.stats["wrong"] == false_yes + missed_yes and oracle.stats["judgments"] == pairs
    if rate:  # both kinds, each near its share of the pairs (one right pair in six)
        assert abs(missed_yes / (pairs / 6) - rate) < 0.06
        assert abs(false_yes / (pairs * 5 / 6) - rate) < 0.03


def kinds_of(proposals) -> tuple[int, int, int, int]:
    """(label, broad, merge, duplicate) proposals of one call, judged from their wording alone."""
    broad_texts = {text for _, text in BROAD}
    seen, counts = set(), [0, 0, 0, 0]
    for p in proposals:
        mentioned = [label for label in LABELS if label in p.explanation.lower()]
        if p.explanation in broad_texts:
            counts[1] += 1
        elif len(mentioned) == 2:
            counts[2] += 1
        elif mentioned[0] in seen:
            counts[3] += 1
        else:
            seen.add(mentioned[0])
            counts[0] += 1
    return tuple(counts)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_broad_merged_and_duplicate_proposals_happen_at_their_rates(rate):
    oracle = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "broad_rate": rate, "merge_rate": rate, "dup_rate": rate})
    totals = [0, 0, 0, 0]
    for messages in propose_prompts(500, asked=40):  # room for every extra: none is cut
        for i, n in enumerate(kinds_of(ask_propose(oracle, messages))):
            totals[i] += n
    labels, broad, merges, dups = totals
    assert labels > 2000
    for extra in (broad, merges, dups):  # one chance per label proposal (sd ≤ 0.01)
        assert abs(extra / labels - rate) < 0.04
    assert oracle.stats["proposals"] == {k: v for k, v in
                                         {"label": labels, "broad": broad, "merge": merges, "dup": dups}.items() if v}


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_format_quirks_happen_at_the_quirk_rate(rate):
    quirky, clean, candidates = faulty_and_clean(quirk_rate=rate)
    quirky.stats["quirks"].clear()  # count the assign answers only
    calls = [m for checks in ([1, 2, 3], [4, 5, 6]) for m in assign_messages(candidates, TEXTS, checks, batch=1)]
    differ = sum(content(quirky(request(m))) != content(clean(request(m))) for m in calls)
    assert abs(differ / len(calls) - rate) < 0.05  # 1200 answers: sd ≤ 0.014
    assert sum(quirky.stats["quirks"].values()) == differ


def test_broken_answers_happen_at_the_broken_rate():
    oracle = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "broken_rate": 0.1})
    candidates = own_wordings(oracle)
    oracle.stats["broken"].clear()  # count the assign answers only
    calls = [m for checks in ([1, 2, 3], [4, 5, 6]) for m in assign_messages(candidates, TEXTS, checks, batch=1)]
    broken = 0
    for messages in calls:
        try:
            read(content(oracle(request(messages))), ASSIGN_SCHEMA, validate_assignment)
        except ParseError:
            broken += 1
    assert abs(broken / len(calls) - 0.1) < 0.03  # 1200 answers: sd 0.009
    assert sum(oracle.stats["broken"].values()) == broken


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_labels_listed_as_current_candidates_come_back_only_as_near_duplicates_at_the_dup_rate(rate):
    oracle = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "dup_rate": rate})
    existing = own_wordings(oracle)[:3]  # cooking, football, gardening (sorted by label)
    listed = {oracle.meaning_of(n, t).labels[0] for n, t in existing}
    again = chances = 0
    for messages in propose_prompts(580, asked=20, existing=tuple(existing), step=1):  # every label in each
        proposals = ask_propose(oracle, messages)
        labels = [oracle.meaning_of(p.name, p.explanation).labels[0] for p in proposals]
        assert set(LABELS) - listed <= set(labels)  # what is missing is always proposed
        again += sum(label in listed for label in labels)
        chances += len(listed)
    assert abs(again / chances - rate) < 0.05


# --- rate 0 is the perfect oracle -----------------------------------------------------------------


def test_at_rate_zero_it_proposes_and_judges_what_the_perfect_oracle_does():
    realistic, perfect = RealisticOracle(TEXTS, GOLD, **CLEAN), Oracle(TEXTS, GOLD)
    for messages in propose_prompts(20, n_samples=10, asked=4):
        mine = [realistic.meaning_of(p.name, p.explanation) for p in ask_propose(realistic, messages)]
        theirs = [perfect.label_of_candidate(p.name, p.explanation) for p in ask_propose(perfect, messages)]
        assert [m.labels for m in mine] == [(label,) for label in theirs]
        assert all(m.kind == "label" for m in mine)
    # the same judgments: on the perfect oracle's wording (same answer, byte for byte) and on its own
    bare = [(label_name(label), label_name(label)) for label in LABELS]
    own = {realistic.meaning_of(n, t).labels[0]: (n, t) for n, t in own_wordings(realistic)}
    own = [own[label] for label in LABELS]
    for theirs, mine in zip(assign_messages(bare, TEXTS[:300], checks=[1, 3, 5]),
                            assign_messages(own, TEXTS[:300], checks=[1, 3, 5])):
        assert content(realistic(request(theirs))) == content(perfect(request(theirs)))
        assert matches(realistic, mine) == matches(perfect, theirs)
    assert realistic.stats["wrong"] == 0 and not realistic.stats["quirks"] and not realistic.stats["broken"]


# --- quirks and the parser --------------------------------------------------------------------------


def test_each_quirk_occurs_and_the_parser_recovers_it_or_reports_it():
    quirky, clean, candidates = faulty_and_clean(quirk_rate=1.0)
    seen = set()
    for messages in assign_messages(candidates, TEXTS[:300], batch=4):
        before = dict(quirky.stats["quirks"])
        answer = content(quirky(request(messages)))
        (kind,) = [k for k, v in quirky.stats["quirks"].items() if v != before.get(k, 0)]
        seen.add(kind)
        expected = matches(clean, messages)
        if kind == "missing_text":  # read fine, one id left out: judge() asks for it again
            data = read(answer, ASSIGN_SCHEMA, validate_assignment)
            got = parsed_assignment(data, messages)
            assert len(got) == len(expected) - 1 and all(set(got[t]) == expected[t] for t in got)
        else:
            with pytest.raises(ValueError):  # the quirk is real: plain JSON reading fails ...
                if kind == "string_ids":
                    check_schema(json.loads(answer), ASSIGN_SCHEMA)
                else:
                    json.loads(answer)
            data = read(answer, ASSIGN_SCHEMA, validate_assignment)  # ... and the tolerant one recovers
            got = parsed_assignment(data, messages)
            assert {t: set(v) for t, v in got.items()} == expected, kind
    assert seen == set(RealisticOracle.quirk_kinds)
    # proposals: only the quirks that apply there, all recovered
    before = dict(quirky.stats["quirks"])
    for messages in propose_prompts(30):
        assert ask_propose(quirky, messages) == ask_propose(clean, messages)
    grew = {k for k, v in quirky.stats["quirks"].items() if v != before.get(k, 0)}
    assert grew == {"fence", "prose", "think"}


def test_broken_answers_are_reported_and_a_repair_request_is_answered_from_the_original_prompt():
    broken, clean, candidates = faulty_and_clean(broken_rate=1.0)
    reasons = set()
    for messages in assign_messages(candidates, TEXTS[:200], batch=4):
        reply = broken(request(messages))
        with pytest.raises(ParseError) as err:
            read(content(reply), ASSIGN_SCHEMA, validate_assignment)
        reasons.add((str(err.value).split(":")[0], reply["choices"][0]["finish_reason"]))
    assert reasons == {("the JSON is cut off (brackets not closed)", "length"), ("not valid JSON", "stop")}
    assert set(broken.stats["broken"]) == set(RealisticOracle.broken_kinds)
    # the repair conversation: the answer comes from the original prompt's texts
    repairing = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "broken_rate": 0.0})
    own_wordings(repairing)
    messages = assign_messages(candidates, TEXTS[:4], batch=4)[0]
    first = content(broken(request(messages)))
    repair = messages + [{"role": "assistant", "content": first},
                         {"role": "user", "content": REPAIR_PROMPT.format(problem="not valid JSON")}]
    assert json.loads(content(repairing(request(repair)))) == json.loads(content(clean(request(messages))))
    assert repairing.stats["repairs_answered"] == 1


# --- recognising explanations -----------------------------------------------------------------------


def test_its_own_paraphrases_merges_and_broad_ones_are_recognised_in_assign_prompts():
    oracle = RealisticOracle(TEXTS, GOLD, **{**CLEAN, "broad_rate": 0.5, "merge_rate": 0.5, "dup_rate": 0.5})
    proposed = []
    for messages in propose_prompts(10, n_samples=30, asked=12):
        proposed += [p for p in ask_propose(oracle, messages) if p not in proposed]
    kinds = {oracle.meaning_of(p.name, p.explanation).kind for p in proposed}
    assert kinds == {"label", "merge", "broad"}
    # as textclust lists them (names cut, whitespace collapsed), plus a user candidate named
    # after a label and one the oracle cannot know
    listed = [(p.name, p.explanation) for p in proposed] + [("Travel", "Travel"), ("Weather", "Rain and sun")]
    meanings = [oracle.meaning_of(n, t) for n, t in listed]
    assert meanings[-2] == Meaning("label", ("travel",)) and meanings[-1] is None
    texts = TEXTS[:120]
    yes_by_number = {n: 0 for n in range(1, len(listed) + 1)}
    for messages in assign_messages(listed, texts, batch=6):
        found = matches(oracle, messages)
        for item in data_items(messages[-1]["content"]):
            label = LABEL_OF[item["text"]]
            for n in item["check"]:
                meaning = meanings[n - 1]
                yes = n in found[item["id"]]
                yes_by_number[n] += yes
                if meaning is None:
                    assert not yes
                elif meaning.kind in ("label", "merge"):
                    assert yes == (label in meaning.labels), (listed[n - 1], item["text"])
    for n, meaning in enumerate(meanings, 1):
        if meaning is not None and meaning.kind == "broad":
            assert 0.6 <= yes_by_number[n] / len(texts) <= 1.0, listed[n - 1]


# --- end to end -------------------------------------------------------------------------------------


def test_the_model_pipeline_completes_against_the_realistic_oracle_and_records_repairs(tmp_path, blobs, monkeypatch):
    from tests.fakes import FAKE_MODEL, FakeEmbedder
    from textclust.config import RunConfig
    from textclust.ingest import corpus_from_texts
    from textclust.llm.config import LLMConfig
    from textclust.pipeline import Pipeline
    from textclust.results import load_run
    from textclust.store import Database

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-a-secret")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    gold = [blobs.topics[g] for g in blobs.groups]
    # Quirks and broken answers more often than by default, so that a 60-text run meets them.
    oracle = RealisticOracle(blobs.texts, gold, quirk_rate=0.5, broken_rate=0.25, seed=3)
    db = Database(tmp_path / "realistic.db")
    embedder = FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True)
    with ScriptedServer(oracle) as server:
        llm = LLMConfig(model="oracle-realistic", base_url=server.base_url, max_retries=0)
        config = RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL, batch_size=5).with_model(llm)
        run_id = Pipeline(db, config, embedder=embedder).run(corpus_from_texts(blobs.texts, name="blobs"),
                                                             "which problem the customer reports")
        sent = server.calls
    result = load_run(db, run_id)
    db.close()
    assert result.status == "complete"
    assert result.stats.model.calls == sent == oracle.stats["responses"]
    con = sqlite3.connect(tmp_path / "realistic.db")
    repairs, errors = con.execute("SELECT SUM(repair_of IS NOT NULL), SUM(error IS NOT NULL) FROM llm_calls "
                                  "WHERE run_id = ?", (run_id,)).fetchone()
    con.close()
    assert repairs == oracle.stats["repairs_answered"] > 0
    assert errors >= sum(oracle.stats["broken"].values()) > 0  # every broken answer is on record
