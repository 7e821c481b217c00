"""RunStats: the typed statistics of a run, and the stored JSON every version wrote.

Also checks the rule that goes with it: outside :mod:`textclust.stats`, no code reads or
writes stats (and outside :mod:`textclust.config`, settings) by their stored key names.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

import textclust
from textclust.stats import ModelUsage, RunStats

PACKAGE = Path(textclust.__file__).resolve().parent

# What the pipeline stored before RunStats existed, in its key order: an offline run...
OFFLINE_STORED = {
    "n_rows": 309, "n_texts": 300, "n_empty": 4, "n_duplicate_rows": 5, "clusterer": "hdbscan",
    "n_clusters": 6, "n_unclustered": 31, "n_candidates": 14, "n_selected": 5, "n_uncovered": 22, "n_multi": 17,
    "coverage": 0.9278688524590164, "objective": 41.25, "selection_status": "optimal", "rounds_used": 2,
    "embeddings_computed": 300, "embeddings_cached": 0, "embeddings_truncated": 1, "n_skipped": 0, "n_seeds": 1,
    "notice": "Explanations are extractive: no language model is configured.",
    "goal_notice": "the goal asks for sentiment, which the offline explainer cannot judge",
}
# ... and a run with a language model (no goal_notice; the model's use and notes instead).
MODEL_STORED = {
    **{k: v for k, v in OFFLINE_STORED.items() if k not in ("notice", "goal_notice")},
    "notice": None,
    "llm": {"model": "some-llm-1", "server": "http://127.0.0.1:8080/v1", "calls": 17, "cached_calls": 3,
            "failed_calls": 1, "prompt_tokens": 12345, "completion_tokens": 678, "cost_usd": 0.0123, "retries": 2,
            "structured": "json_schema",
            "this_process": {"calls": 17, "cached_calls": 3, "prompt_tokens": 12345, "completion_tokens": 678},
            "calls_by_stage": {"propose": 3, "assign": 14, "describe": 0}},
    "n_unparsed": 2,
    "stop_reason": None,
    "llm_notes": ["the model answered 2 texts with no usable JSON"],
    "hierarchy": [{"name": "money", "explanation": "about money", "size": 40,
                   "children": [{"name": "late refund", "explanation": "the refund is late", "size": 25}]}],
}


# --- reading what earlier versions stored -------------------------------------------------------


def test_offline_stats_as_stored_read_as_typed_values():
    stats = RunStats.from_dict(json.loads(json.dumps(OFFLINE_STORED)))
    assert (stats.n_rows, stats.n_texts, stats.n_empty, stats.n_duplicate_rows) == (309, 300, 4, 5)
    assert (stats.clusterer, stats.n_clusters, stats.n_unclustered) == ("hdbscan", 6, 31)
    assert (stats.n_candidates, stats.n_selected, stats.n_uncovered, stats.n_multi) == (14, 5, 22, 17)
    assert stats.coverage == pytest.approx(0.9278688524590164) and stats.objective == 41.25
    assert (stats.selection_status, stats.rounds_used) == ("optimal", 2)
    assert (stats.embeddings_computed, stats.embeddings_cached, stats.embeddings_truncated) == (300, 0, 1)
    assert stats.n_skipped == 0
    assert stats.n_user_candidates == 1  # stored as n_seeds
    assert stats.notice == OFFLINE_STORED["notice"] and stats.goal_notice == OFFLINE_STORED["goal_notice"]
    # Nothing of a language model: the defaults.
    assert stats.model is None and stats.n_unparsed == 0 and stats.stop_reason is None
    assert stats.notes == [] and stats.hierarchy is None and stats.extra == {}


def test_model_stats_as_stored_read_as_typed_values():
    stats = RunStats.from_dict(json.loads(json.dumps(MODEL_STORED)))
    usage = stats.model
    assert isinstance(usage, ModelUsage)
    assert (usage.model, usage.server) == ("some-llm-1", "http://127.0.0.1:8080/v1")
    assert (usage.calls, usage.cached_calls, usage.failed_calls, usage.retries) == (17, 3, 1, 2)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cost_usd) == (12345, 678, 0.0123)
    assert usage.structured == "json_schema"
    assert usage.calls_by_stage == {"propose": 3, "assign": 14, "describe": 0}
    assert usage.this_process == MODEL_STORED["llm"]["this_process"] and usage.extra == {}
    assert stats.n_unparsed == 2 and stats.stop_reason is None
    assert stats.notes == MODEL_STORED["llm_notes"]  # stored as llm_notes
    assert stats.hierarchy == MODEL_STORED["hierarchy"]
    assert stats.notice is None and stats.goal_notice is None and stats.extra == {}


@pytest.mark.parametrize("stored", [OFFLINE_STORED, MODEL_STORED], ids=["offline", "model"])
def test_to_dict_gives_back_what_was_stored(stored):
    """Same keys, same values, same order: what older readers (and exports) saw stays the same."""
    again = RunStats.from_dict(json.loads(json.dumps(stored))).to_dict()
    assert again == stored
    assert list(again) == list(stored)
    assert list(again.get("llm") or {}) == list(stored.get("llm") or {})
    assert json.dumps(again) == json.dumps(stored)


def test_round_trip_of_typed_stats():
    stats = RunStats(n_rows=10, n_texts=9, n_empty=1, clusterer="kmeans", n_clusters=3, n_selected=3,
                     n_candidates=7, coverage=0.75, objective=1.5, selection_status="optimal", rounds_used=3,
                     n_user_candidates=2, notice="partial", goal_notice="not served", n_unparsed=1,
                     stop_reason="max_calls", notes=["n1", "n2"],
                     hierarchy=[{"name": "a", "explanation": "b", "size": 4, "children": []}],
                     model=ModelUsage(model="m", server="s", calls=5, cost_usd=None,
                                      calls_by_stage={"propose": 2, "assign": 3}, this_process={"calls": 5}),
                     extra={"future_key": {"x": [1, 2]}})
    stored = stats.to_dict()
    assert stored["n_seeds"] == 2 and stored["llm_notes"] == ["n1", "n2"] and stored["llm"]["model"] == "m"
    assert not {"n_user_candidates", "notes", "model", "extra"} & set(stored)
    assert RunStats.from_dict(json.loads(json.dumps(stored))) == stats
    # A set field is always written, even where the pipeline usually leaves it out.
    assert stored["goal_notice"] == "not served"
    assert RunStats(notes=["offline note"]).to_dict()["llm_notes"] == ["offline note"]


def test_to_dict_leaves_out_the_fields_a_run_never_stored():
    offline = RunStats(notice="n").to_dict()
    assert not {"llm", "n_unparsed", "stop_reason", "llm_notes", "hierarchy"} & set(offline)
    assert "goal_notice" in offline
    with_model = RunStats(model=ModelUsage(model="m")).to_dict()
    assert {"llm", "n_unparsed", "stop_reason", "llm_notes", "hierarchy"} <= set(with_model)
    assert "goal_notice" not in with_model


def test_unknown_keys_survive_in_extra():
    stored = {**MODEL_STORED, "from_a_newer_version": [1, {"a": 2}], "pid": 4242,
              "llm": {**MODEL_STORED["llm"], "reasoning_tokens": 99}}
    stats = RunStats.from_dict(stored)
    assert stats.extra == {"from_a_newer_version": [1, {"a": 2}], "pid": 4242}
    assert stats.model.extra == {"reasoning_tokens": 99}
    assert stats.n_selected == 5  # the known keys are still read
    again = stats.to_dict()
    assert again == stored


def test_missing_and_empty_stats():
    for stored in (None, {}):
        stats = RunStats.from_dict(stored)
        assert stats == RunStats() and stats.model is None and stats.notes == []
    assert ModelUsage.from_dict(None) is None and ModelUsage.from_dict({}) is None
    # null values stored for the model's lists and tables read as empty ones
    stats = RunStats.from_dict({"llm": {"model": "m", "calls_by_stage": None, "this_process": None},
                                "llm_notes": None})
    assert stats.model.calls_by_stage == {} and stats.model.this_process == {} and stats.notes == []


def test_to_dict_shares_nothing_with_the_object():
    stats = RunStats.from_dict(MODEL_STORED)
    stored = stats.to_dict()
    stored["llm"]["calls_by_stage"]["assign"] = 0
    stored["hierarchy"][0]["children"].clear()
    stored["llm_notes"].append("x")
    assert stats.model.calls_by_stage["assign"] == 14 and stats.hierarchy[0]["children"]
    assert stats.notes == MODEL_STORED["llm_notes"]


# --- the rule: no string-keyed stats (or settings) outside their modules ---------------------------

# A lookup by key of a stats / settings value: x.stats.get(...), stats["n_selected"], settings.get(...), …
STRING_KEYED = {
    "stats": (re.compile(r"""\bstats\s*\.\s*(?:get|pop|setdefault)\s*\(|\bstats\s*\[\s*[rbuf]*["']"""),
              {"stats.py"}),
    "settings": (re.compile(r"""\bsettings\s*\.\s*(?:get|pop|setdefault)\s*\(|\bsettings\s*\[\s*[rbuf]*["']"""),
                 {"stats.py", "config.py"}),
}


def _code_lines(source: str) -> list[str]:
    """The source's lines with comments and the text of plain string literals blanked out (a
    comment or message may name a stored key). The quotes stay, so ``stats["k"]`` still reads
    as a lookup, and f-strings stay whole, so an expression inside one is still seen."""
    lines = source.splitlines()

    def blank(start: tuple[int, int], end: tuple[int, int]) -> None:
        (r1, c1), (r2, c2) = start, end
        for row in range(r1, r2 + 1):
            line = lines[row - 1]
            a = c1 if row == r1 else 0
            b = c2 if row == r2 else len(line)
            lines[row - 1] = line[:a] + " " * (b - a) + line[b:]

    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                blank(token.start, (token.start[0], len(lines[token.start[0] - 1])))
            elif token.type == tokenize.STRING:
                prefix = len(token.string) - len(token.string.lstrip("rRbBuUfF"))
                if "f" in token.string[:prefix].lower():
                    continue
                quote = 3 if token.string[prefix:prefix + 3] in ('"""', "'''") else 1
                (r1, c1), (r2, c2) = token.start, token.end
                blank((r1, c1 + prefix + quote), (r2, c2 - quote))
    except (tokenize.TokenError, SyntaxError):
        pass  # an unfinished file: scan what was read
    return lines


def string_keyed_lookups(package: Path, what: str) -> list[str]:
    pattern, allowed = STRING_KEYED[what]
    found = []
    paths = sorted(package.rglob("*.py"))
    assert any(path.name == "stats.py" for path in paths), f"no textclust package at {package}"
    for path in paths:
        relative = path.relative_to(package).as_posix()
        if relative in allowed:
            continue
        source = path.read_text(encoding="utf-8")
        for number, (code, line) in enumerate(zip(_code_lines(source), source.splitlines()), start=1):
            if pattern.search(code):
                found.append(f"{package.name}/{relative}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("what", sorted(STRING_KEYED))
def test_no_string_keyed_lookups_outside_their_module(what):
    found = string_keyed_lookups(PACKAGE, what)
    module = "textclust/stats.py" if what == "stats" else "textclust/config.py"
    assert not found, (f"{what} read or written by key outside {module} (use the typed attributes of "
                       f"RunStats / RunConfig):\n" + "\n".join(found))


def test_the_lookup_check_finds_violations(tmp_path):
    package = tmp_path / "textclust"
    (package / "report").mkdir(parents=True)
    (package / "stats.py").write_text('x = stats["n_rows"]\n')  # its own module: allowed
    (package / "config.py").write_text('x = settings.get("k")\n')
    (package / "report" / "bad.py").write_text(
        "def f(result, run, stats):\n"
        "    a = result.stats.get('n_selected')\n"
        '    b = stats["coverage"]\n'
        "    c = run.stats .get(\"pid\")\n"
        "    d = result.settings.get('embedding_model')\n"
        '    e = settings["k"]\n'
        '    f = f"process {run.stats.get(\'pid\')}"\n'
        "    return a, b, c, d, e, f\n")
    (package / "report" / "good.py").write_text(
        "def f(result, stats):\n"
        '    # a comment may say stats["hierarchy"] or settings.get("k")\n'
        '    s = "stats[\'n\'] in a message, settings.get(\'k\')"\n'
        '    t = """a docstring: stats.get("n_rows")"""\n'
        "    return result.stats.n_selected, stats.coverage, result.config.explaining.k, s\n")
    stats_hits = string_keyed_lookups(package, "stats")
    assert [h.split(":")[0:2] for h in stats_hits] == [["textclust/report/bad.py", str(n)] for n in (2, 3, 4, 7)]
    settings_hits = string_keyed_lookups(package, "settings")
    assert [h.split(":")[0:2] for h in settings_hits] == [["textclust/report/bad.py", str(n)] for n in (5, 6)]
