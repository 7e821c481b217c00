"""Issue 25, item 9: one malformed row need not reject the whole file.

Strict stays the default (one line naming the line and ``--skip-bad-rows``); with the option a
malformed row is kept as a row without a text, counted and described, like an undecodable one.
"""

from __future__ import annotations

import json

import pytest

from textclust.errors import InputError
from textclust.ingest import read_corpus

GOOD = [f"the parcel number {i} arrived late and the box was damaged" for i in range(58)]


def _jsonl(bad_line: str, at: int = 30) -> str:
    lines = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(GOOD)]
    lines.insert(at - 1, bad_line)  # the bad line is line `at` of the file
    lines.append(json.dumps({"id": "last", "text": "the refund never came"}))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bad, detail", [
    ('{"id": "x", "text": "cut off', "not valid JSON"),
    ("[1, 2, 3]", "a JSON array, not a JSON object"),
    ('"just a string"', "a JSON string, not a JSON object"),
])
def test_a_bad_jsonl_line_is_skipped_and_counted_with_the_option(make_file, bad, detail):
    path = make_file("in.jsonl", _jsonl(bad))
    with pytest.raises(InputError) as strict:
        read_corpus(path)
    assert "line 30 " in str(strict.value) and "skip_bad_rows" in str(strict.value)

    corpus = read_corpus(path, id_column="id", skip_bad_rows=True)
    assert corpus.n_rows == 60 and corpus.n_texts == 59 and corpus.n_skipped == 1
    assert corpus.row_text_ids[29] is None  # kept as a row without a text: exports line up with the file
    assert corpus.row_keys[28] == "r28" and corpus.row_keys[30] == "r29" and corpus.row_keys[-1] == "last"
    assert len(corpus.notes) == 1
    assert corpus.notes[0].startswith("skipped 1 malformed row that could not be parsed (first: line 30, ")
    assert detail in corpus.notes[0]


def test_bad_rows_of_each_kind_are_counted_and_the_first_is_named(make_file):
    text = _jsonl("not json at all", at=5).replace(json.dumps({"id": "r40", "text": GOOD[40]}), "42")
    corpus = read_corpus(make_file("in.jsonl", text), skip_bad_rows=True)
    assert corpus.n_skipped == 2 and corpus.n_texts == 58
    assert corpus.notes == ["skipped 2 malformed rows that could not be parsed "
                            "(first: line 5, not valid JSON: Expecting value)"]


def test_a_jsonl_line_without_the_text_is_an_empty_row_not_an_error(make_file):
    text = _jsonl(json.dumps({"id": "no-text"}))
    corpus = read_corpus(make_file("in.jsonl", text))  # strict: still fine
    assert corpus.n_rows == 60 and corpus.n_skipped == 0 and corpus.n_empty == 1


def test_csv_rows_the_parser_rejects_are_skipped_with_the_option(make_file):
    rows = ["id,text"] + [f"{i},{t}" for i, t in enumerate(GOOD[:20])]
    rows[5] = '4,"quoted"then more'  # the parser rejects it (line 6)
    rows[10] = "9,too,many,fields"  # more fields than the header (line 11)
    path = make_file("in.csv", "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"line 6: .*skip_bad_rows"):
        read_corpus(path)
    corpus = read_corpus(path, id_column="id", skip_bad_rows=True)
    assert corpus.n_rows == 20 and corpus.n_skipped == 2 and corpus.n_texts == 18
    assert corpus.row_text_ids[4] is None and corpus.row_text_ids[9] is None
    assert corpus.row_keys[5] == "5" and corpus.row_keys[19] == "19"
    assert corpus.notes[0].startswith("skipped 2 malformed rows that could not be parsed (first: line 6, ")


def test_too_many_csv_fields_names_the_option_when_strict(make_file):
    path = make_file("in.csv", "text,id\nfine text here,1\nfine, text, here,2\n")
    with pytest.raises(InputError) as err:
        read_corpus(path)
    assert "line 3 has 4 fields but the header has 2" in str(err.value) and "skip_bad_rows" in str(err.value)


def test_a_quote_never_closed_still_rejects_the_file(make_file):
    path = make_file("in.csv", 'text\nfirst text here\n"never closed\nsecond\nthird\n')
    with pytest.raises(InputError, match="cannot parse as CSV"):
        read_corpus(path, skip_bad_rows=True)  # the rest of the file is one field: nothing can be told apart


def test_json_array_elements_that_are_not_objects(make_file):
    path = make_file("in.json", json.dumps([{"text": "a first text"}, 7, {"text": "a second text"}]))
    with pytest.raises(InputError, match="element 2 is a JSON number.*skip_bad_rows"):
        read_corpus(path)
    corpus = read_corpus(path, skip_bad_rows=True)
    assert corpus.n_rows == 3 and corpus.n_texts == 2 and corpus.n_skipped == 1
    assert "line 2, element 2 is a JSON number, not an object" in corpus.notes[0]


def test_a_file_of_only_bad_rows_is_still_an_error(make_file):
    path = make_file("in.jsonl", "nope\n{broken\n")
    with pytest.raises(InputError, match="no row can be read: all 2 rows are malformed"):
        read_corpus(path, skip_bad_rows=True)


# --- the command line and the Python API ----------------------------------------------------------


def test_the_strict_error_is_one_line_naming_the_line_and_the_flag(make_file, cli_invoke, tmp_path):
    path = make_file("in.jsonl", _jsonl("{oops"))
    db = tmp_path / "t.db"
    result = cli_invoke("run", path, "--goal", "why", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("textclust: error: ")
    assert "line 30 is not valid JSON" in result.stderr and "--skip-bad-rows" in result.stderr
    assert not db.exists()


@pytest.mark.parametrize("command", ["run", "eval"])
def test_the_flag_reaches_the_reader(make_file, cli_invoke, tmp_path, monkeypatch, command):
    """`run` and `eval` hand --skip-bad-rows to the reader; the settings are then refused (--k above
    the texts, which the error counts) so that nothing is embedded."""
    path = make_file("in.jsonl", _jsonl("{oops").replace('"text"', '"label": "a", "text"'))
    extra = ["--label-column", "label"] if command == "eval" else []
    result = cli_invoke(command, path, "--goal", "why", "--k", "500", "--skip-bad-rows", *extra,
                        "--db", tmp_path / "t.db")
    assert result.exit_code == 2
    assert "only 59 distinct texts" in result.stderr  # read past the bad line: 59 of 60 rows have a text


def test_run_prints_the_skip_note(make_file, cli_invoke, tmp_path, monkeypatch):
    import textclust.pipeline as pipeline

    class Stop(Exception):
        pass

    def stop(self, corpus, goal):
        raise Stop  # the corpus is read and the note printed: no need to embed

    monkeypatch.setattr(pipeline.Pipeline, "run", stop)
    monkeypatch.setenv("TEXTCLUST_DEBUG", "1")
    path = make_file("in.jsonl", _jsonl("{oops"))
    result = cli_invoke("run", path, "--goal", "why", "--no-llm", "--skip-bad-rows", "--db", tmp_path / "t.db")
    assert isinstance(result.exception, Stop)
    assert "60 rows, 59 distinct texts, 1 empty" in result.stderr
    assert "skipped 1 malformed row that could not be parsed (first: line 30, not valid JSON" in result.stderr


def test_the_python_api_takes_skip_bad_rows(make_file, tmp_path, monkeypatch):
    import textclust
    import textclust.api as api

    seen = {}

    def fake_run(corpus, goal, *args):
        seen["corpus"] = corpus
        return "ok"

    monkeypatch.setattr(api, "_run", fake_run)
    path = make_file("in.jsonl", _jsonl("{oops"))
    with pytest.raises(InputError, match="line 30 .*pass skip_bad_rows"):
        textclust.run(path, goal="why", db=tmp_path / "t.db")
    assert textclust.run(path, goal="why", db=tmp_path / "t.db", skip_bad_rows=True) == "ok"
    assert seen["corpus"].n_skipped == 1 and seen["corpus"].n_texts == 59
