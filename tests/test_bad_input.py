"""Bad input through the CLI: one clean error line, no traceback, the database untouched.

Each case runs twice: with a --db path that does not exist (it must not be created)
and with a copy of a database that already holds a complete run (its bytes and its
row counts must be the same afterwards).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest

from conftest import FAKE_MODEL, copy_sqlite, file_sha256, table_counts
from textclust.embed import Embedder, embed_texts
from textclust.ingest import corpus_from_texts, read_corpus, text_id
from textclust.store import Database

GOOD_CSV = "id,text\n1,my parcel never arrived\n2,the box was crushed\n3,charged twice for one order\n"


@dataclass
class Case:
    name: str
    filename: str | None  # None: the input file does not exist
    content: str | bytes = b""
    args: tuple = ()
    message: str = ""  # must appear in the error line
    command: str = "run"
    extra: dict = field(default_factory=dict)


CASES = [
    Case("missing_file", None, message="no such file"),
    Case("empty_file", "in.csv", b"", message="the file is empty"),
    Case("whitespace_only_file", "in.csv", b"  \n\n \t\n", message="the file is empty"),
    Case("header_only_csv", "in.csv", "id,text\n", message="no rows"),
    Case("unknown_text_column", "in.csv", GOOD_CSV, ("--text-column", "body"),
         message="--text-column 'body' not found; columns are: id, text"),
    Case("unknown_id_column", "in.csv", GOOD_CSV, ("--id-column", "key"),
         message="--id-column 'key' not found; columns are: id, text"),
    Case("malformed_jsonl_line", "in.jsonl",
         '{"text": "first text"}\n{"text": "second text"}\n{"text": "third text"\n{"text": "fourth"}\n',
         message="line 3 is not valid JSON"),
    Case("jsonl_line_not_an_object", "in.jsonl", '{"text": "first text"}\n\n["a", "list"]\n',
         message="line 3 is not a JSON object"),
    Case("json_not_an_array", "in.json", '{"text": "first text"}', message="array of objects"),
    Case("non_utf8_bytes", "in.csv", "text\nfirst text\ncaf\u00e9 au lait\n".encode("latin-1"),
         message="not valid UTF-8 (byte 0xe9 on line 3)"),
    Case("binary_file", "in.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4,
         message="binary file"),
    Case("not_parquet", "in.parquet", b"text\nthis is csv, not parquet\n", message="not a Parquet file"),
    Case("unparseable_csv", "in.csv", 'text\n"never closed\nsecond\n', message="cannot parse as CSV"),
    Case("unknown_extension", "in.xyz", GOOD_CSV, message="cannot tell the format"),
    Case("all_texts_empty", "in.csv", 'n,text\n1,""\n2,"   "\n3,\n', message="empty text"),
    Case("fewer_texts_than_k", "in.csv",
         "text\nalpha beta\ngamma delta\nalpha   beta\nepsilon zeta\n\n", ("--k", "4"),
         message="asked for 4 clusters but the input has only 3 distinct texts"),
    Case("one_distinct_text", "in.csv", "text\nsame text\nsame   text\n", message="only one distinct text"),
    Case("k_zero", "in.csv", GOOD_CSV, ("--k", "0"), message="--k must be at least 1"),
    Case("rounds_zero", "in.csv", GOOD_CSV, ("--rounds", "0"), message="--rounds must be at least 1"),
    Case("eval_unknown_label_column", "in.csv", GOOD_CSV, ("--label-column", "reason"),
         message="'reason' not found", command="eval"),
    Case("eval_missing_file", None, args=("--label-column", "reason"), message="no such file", command="eval"),
    # --- the issue #5 matrix: encodings, binaries, types, sizes, unicode ---------------------
    Case("mostly_latin1", "in.csv", "text\ncaf\u00e9 cr\u00e8me\nth\u00e9 glac\u00e9\nfirst text\n".encode("latin-1"),
         message="not valid UTF-8 (byte 0xe9 on line 2); 2 of 3 rows cannot be decoded, so the file is probably "
                 "in another encoding; re-save it as UTF-8"),
    Case("gzip_file", "in.csv", b"\x1f\x8b\x08\x00" + bytes(range(1, 200)), message="binary file (gzip-compressed"),
    Case("xlsx_renamed_csv", "in.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(1, 200)),
         message="binary file (a zip archive; an .xlsx workbook is one: export it as CSV)"),
    Case("pdf_as_txt", "in.txt", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", message="binary file (a PDF document)"),
    Case("random_bytes_no_nul", "in.jsonl", bytes(range(128, 256)) * 8, message="line 1 is not valid JSON"),
    Case("csv_row_with_too_many_fields", "in.csv", "id,text\n1,hello there\n2,one, two\n",
         message="cannot parse as CSV: line 3 has 3 fields but the header has 2; quote values that contain ','"),
    Case("csv_quote_in_the_middle", "in.csv", 'text\n"quoted"rest of it\n', message="cannot parse as CSV: line 2"),
    Case("jsonl_unknown_text_column", "in.jsonl", '{"text": "a b"}\n{"text": "c d", "extra": 1}\n',
         ("--text-column", "body"), message="--text-column 'body' not found; columns are: text, extra"),
    Case("jsonl_texts_not_strings", "in.jsonl", '{"text": ["a", "b"]}\n{"text": {"x": 1}}\n{"text": ["c"]}\n',
         message="no usable text in column 'text': skipped 2 rows whose text is not a string (a JSON array; "
                 "first: line 1); skipped 1 row whose text is not a string (a JSON object; first: line 2)"),
    Case("jsonl_nulls_and_nan", "in.jsonl", '{"text": null}\n{"text": NaN}\n{"other": "x y"}\n',
         message="all 3 rows have an empty text in column 'text'"),
    Case("malformed_jsonl_line_after_the_sample", "in.jsonl",
         "".join(f'{{"text": "text number {i}"}}\n' for i in range(1, 20001)) + '{"text": oops}\n',
         message="line 20001 is not valid JSON (Expecting value)"),
    Case("jsonl_nested_too_deeply", "in.jsonl", '{"text": ' + "[" * 200_000 + "\n", message="line 1 is nested too deeply"),
    Case("invisible_texts_only", "in.csv", "text\n\u200b\n\u200e\u200f\n\ufeff\u2060\n\u00ad\n",
         message="all 4 rows have an empty text in column 'text'"),
    Case("one_text_100k_times", "in.csv", "text\n" + "the same complaint again\n" * 100_000,
         message="only one distinct text"),
    Case("bad_timeout_setting", "in.csv", GOOD_CSV, message="TEXTCLUST_DB_TIMEOUT must be a number of seconds (got 'soon')",
         extra={"env": {"TEXTCLUST_DB_TIMEOUT": "soon"}}),
]

# Bugs: these inputs are rejected, but only after the database was opened (and, for a
# new --db, created) and after the progress line was printed.
BUG_CASES = [
    Case("empty_goal", "in.csv", GOOD_CSV, message="--goal must not be empty", extra={"goal": ""}),
    Case("blank_goal", "in.csv", GOOD_CSV, message="--goal must not be empty", extra={"goal": "   "}),
    Case("eval_blank_goal", "in.csv", GOOD_CSV + "", ("--label-column", "id"), message="--goal must not be empty",
         command="eval", extra={"goal": " "}),
]
EMPTY_GOAL_BUG = (
    "BUG: cli.py run/eval (and api._run) validate the goal only inside Pipeline.run, after Database(db_path) "
    "created/opened the --db (run: also after the input summary was logged; eval: also after save_corpus "
    "stored the corpus): a blank --goal creates the database / adds a corpus row"
)


def _invoke_case(case: Case, cli_invoke, make_file, tmp_path, db):
    if case.filename is None:
        input_path = tmp_path / "does-not-exist.csv"
    else:
        input_path = make_file(case.filename, case.content)
    goal = case.extra.get("goal", "why the customer is unhappy")
    with mock.patch.dict(os.environ, case.extra.get("env", {})):
        return cli_invoke(case.command, input_path, "--goal", goal, "--db", db, *case.args)


def _assert_clean_error(result, message: str):
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"an exception escaped: {result.exception!r}"
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {result.stderr!r}"
    assert lines[0].startswith("textclust: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert result.stdout == ""


def _check_new_db(case, cli_invoke, make_file, tmp_path):
    db_dir = tmp_path / "dbdir"
    db_dir.mkdir()
    db = db_dir / "new.db"
    result = _invoke_case(case, cli_invoke, make_file, tmp_path, db)
    assert list(db_dir.iterdir()) == [], "the --db (or its -wal/-shm) was created"
    _assert_clean_error(result, case.message)


def _check_existing_db(case, cli_invoke, make_file, tmp_path, fake_run_db):
    db_dir = tmp_path / "dbdir"
    db_dir.mkdir()
    db = copy_sqlite(fake_run_db.db, db_dir / "existing.db")
    counts = table_counts(db)
    assert counts["runs"] == 1 and counts["corpora"] == 1
    files = sorted(p.name for p in db_dir.iterdir())
    digest = file_sha256(db)
    result = _invoke_case(case, cli_invoke, make_file, tmp_path, db)
    assert table_counts(db) == counts
    assert sorted(p.name for p in db_dir.iterdir()) == files
    assert file_sha256(db) == digest
    _assert_clean_error(result, case.message)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_new_db_not_created(case, cli_invoke, make_file, tmp_path):
    _check_new_db(case, cli_invoke, make_file, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_existing_db_unchanged(case, cli_invoke, make_file, tmp_path, fake_run_db):
    _check_existing_db(case, cli_invoke, make_file, tmp_path, fake_run_db)


@pytest.mark.parametrize("case", BUG_CASES, ids=[c.name for c in BUG_CASES])
def test_blank_goal_new_db_not_created(case, cli_invoke, make_file, tmp_path):
    _check_new_db(case, cli_invoke, make_file, tmp_path)


@pytest.mark.parametrize("case", BUG_CASES, ids=[c.name for c in BUG_CASES])
def test_blank_goal_existing_db_unchanged(case, cli_invoke, make_file, tmp_path, fake_run_db):
    _check_existing_db(case, cli_invoke, make_file, tmp_path, fake_run_db)


def test_blank_goal_is_still_rejected(cli_invoke, make_file, tmp_path):
    """Whatever the bug above, a blank goal must never produce a run."""
    db = tmp_path / "goal.db"
    result = cli_invoke("run", make_file("in.csv", GOOD_CSV), "--goal", "  ", "--db", db)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == "textclust: error: --goal must not be empty"
    if db.exists():
        assert table_counts(db)["runs"] == 0


def test_input_directory_is_a_clean_usage_error(cli_invoke, tmp_path):
    db = tmp_path / "dir.db"
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    result = cli_invoke("run", folder, "--goal", "g", "--db", db)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "is a directory" in result.stderr
    assert not db.exists()


@pytest.mark.parametrize("command", ["runs", "show", "export"])
def test_reading_commands_do_not_create_a_database(command, cli_invoke, tmp_path):
    db = tmp_path / "absent.db"
    args = {"runs": (), "show": ("1",), "export": ("1", "-o", tmp_path / "out.csv")}[command]
    result = cli_invoke(command, *args, "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"textclust: error: --db {db}: no such database (run `textclust run` first)"
    assert not db.exists()
    assert not (tmp_path / "out.csv").exists()


def test_unknown_run_id_is_a_clean_error(cli_invoke, copy_db, fake_run_db):
    db = copy_db(fake_run_db.db)
    digest = file_sha256(db)
    for args in (("show", "999"), ("export", "999", "-o", db.parent / "x.csv")):
        result = cli_invoke(*args, "--db", db)
        assert result.exit_code == 2
        assert result.stderr.strip() == f"textclust: error: no run with id 999 in {db}"
        assert "Traceback" not in result.output
    assert not (db.parent / "x.csv").exists()
    assert table_counts(db)["runs"] == 1
    assert file_sha256(db) == digest


def test_export_to_missing_folder_is_a_clean_error(cli_invoke, copy_db, fake_run_db, tmp_path):
    db = copy_db(fake_run_db.db)
    target = tmp_path / "no" / "such" / "dir" / "out.csv"
    result = cli_invoke("export", fake_run_db.run_id, "-o", target, "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("textclust: error: -o ")
    assert "does not exist" in result.stderr
    assert not target.parent.exists()


# --- inputs that are partly bad, odd or huge: the run goes on and says what it did ----------------
#
# These run the whole CLI with the fake embedding model: the texts' vectors are put in the
# cache first (``_prefill``), so no model is loaded.

FAKE_ARGS = ("--embedding-model", FAKE_MODEL, "--k", "2", "--reduction", "none")


def _prefill(db_path, texts):
    """Store ``texts`` (already normalised) and fake vectors in two blobs, plus one extra text so
    that the prefill corpus is never the corpus of the run under test."""
    corpus = corpus_from_texts(list(texts) + ["prefill only, never in an input"], name="prefill")
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:2]
    X = np.array([centers[i % 2] + 0.05 * rng.normal(size=8) for i in range(corpus.n_texts)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    db = Database(db_path)
    try:
        db.save_corpus(corpus)
        db.store_embeddings(FAKE_MODEL, corpus.text_ids, X.astype(np.float32))
    finally:
        db.close()


def _run_ok(cli_invoke, input_path, db, *args):
    result = cli_invoke("run", input_path, "--goal", "what the text is about", "--db", db, *FAKE_ARGS, *args)
    assert result.exit_code == 0, f"{result.stderr}\n{result.exception!r}"
    assert "Traceback" not in result.output
    con = sqlite3.connect(db)
    try:
        corpus = con.execute(
            "SELECT id, n_rows, n_texts, n_empty, n_duplicate_rows FROM corpora ORDER BY id DESC LIMIT 1").fetchone()
        rows = con.execute("SELECT r.row_index, r.row_key, t.text FROM input_rows r LEFT JOIN texts t ON t.id = r.text_id "
                           "WHERE r.corpus_id = ? ORDER BY r.row_index", (corpus[0],)).fetchall()
        status = con.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0]
    finally:
        con.close()
    assert status == "complete"
    return {"n_rows": corpus[1], "n_texts": corpus[2], "n_empty": corpus[3], "n_duplicate_rows": corpus[4],
            "rows": rows, "stderr": result.stderr}


def test_mixed_encodings_skip_the_undecodable_rows_and_say_so(cli_invoke, make_file, tmp_path):
    content = (b"id,text\n1,first text here\n2,caf\xc3\xa9 in utf-8\n3,th\xe9 in latin-1\n"
               b"4,fourth text\n5,fifth text\n")
    path = make_file("mixed.csv", content)
    corpus = read_corpus(path, id_column="id")
    assert corpus.notes == ["skipped 1 row whose text is not valid UTF-8 (first: line 4, byte 0xe9); "
                            "re-save the file as UTF-8 to keep them"]
    assert (corpus.n_rows, corpus.n_texts, corpus.n_empty, corpus.n_skipped) == (5, 4, 1, 1)
    assert "5 rows, 4 distinct texts, 1 empty (1 of them unreadable, skipped)" in corpus.summary()
    db = tmp_path / "mixed.db"
    _prefill(db, ["first text here", "caf\u00e9 in utf-8", "fourth text", "fifth text"])
    stored = _run_ok(cli_invoke, path, db, "--id-column", "id")
    assert (stored["n_rows"], stored["n_texts"], stored["n_empty"]) == (5, 4, 1)
    assert stored["rows"][2] == (2, "3", None)  # the row is kept (exports line up), without a text
    assert stored["rows"][1][2] == "caf\u00e9 in utf-8"
    assert corpus.notes[0] in stored["stderr"].splitlines()  # said once, on its own line


def test_undecodable_id_is_replaced_not_skipped(make_file):
    corpus = read_corpus(make_file("ids.csv", b"id,text\nT\xe91,first text\nT2,second text\n"), id_column="id")
    assert corpus.row_keys == ["T\ufffd1", "T2"] and corpus.n_skipped == 0 and corpus.notes == []


def test_utf16_with_a_byte_order_mark_is_decoded(cli_invoke, make_file, tmp_path):
    path = make_file("wide.csv", "text\nfirst text\nsecond text\n".encode("utf-16"))
    corpus = read_corpus(path)
    assert list(corpus.texts.values()) == ["first text", "second text"]
    assert corpus.notes == ["decoded as UTF-16 (the file starts with a UTF-16 byte-order mark)"]
    db = tmp_path / "wide.db"
    _prefill(db, ["first text", "second text"])
    stored = _run_ok(cli_invoke, path, db)
    assert stored["n_texts"] == 2 and corpus.notes[0] in stored["stderr"].splitlines()


def test_mixed_types_and_nan_in_jsonl(cli_invoke, make_file, tmp_path):
    lines = ['{"id": 1, "text": "a real text here"}', '{"id": 2, "text": 42}', '{"id": 3, "text": null}',
             '{"id": 4, "text": NaN}', '{"id": 5, "text": ["a", "list"]}', '{"id": 6, "text": true}',
             '{"id": 7}', '{"id": 8.5, "text": "another real text"}', '{"text": "third text", "id": "x"}',
             '{"id": null, "text": 1.5}']
    path = make_file("types.jsonl", "\n".join(lines) + "\n")
    corpus = read_corpus(path, id_column="id")
    assert corpus.row_keys == ["1", "2", "3", "4", "5", "6", "7", "8.5", "x", "9"]
    assert list(corpus.texts.values()) == ["a real text here", "42", "another real text", "third text", "1.5"]
    assert corpus.n_skipped == 2 and corpus.n_empty == 5
    assert corpus.notes == [
        "skipped 1 row whose text is not a string (a JSON array; first: line 5)",
        "skipped 1 row whose text is not a string (a boolean; first: line 6)",
    ]
    db = tmp_path / "types.db"
    _prefill(db, list(corpus.texts.values()))
    stored = _run_ok(cli_invoke, path, db, "--id-column", "id")
    assert (stored["n_rows"], stored["n_texts"], stored["n_empty"]) == (10, 5, 5)
    assert all(note in stored["stderr"].splitlines() for note in corpus.notes)


def test_nan_like_strings_in_csv_are_text(make_file):
    """A CSV has no types: "NaN", "null", "None" are what the user wrote."""
    corpus = read_corpus(make_file("nan.csv", "id,text\n1,NaN\n2,null\n3,None\n4,\n5,real text here\n"))
    assert list(corpus.texts.values()) == ["NaN", "null", "None", "real text here"]
    assert corpus.n_empty == 1


def test_one_megabyte_text_is_stored_once(cli_invoke, make_file, tmp_path):
    big = " ".join(f"word{i % 97}" for i in range(160_000))
    assert len(big) > 1_000_000
    path = make_file("big.csv", f"id,text\n1,{big}\n2,a short complaint about a parcel\n3,another short one\n")
    db = tmp_path / "big.db"
    _prefill(db, [big, "a short complaint about a parcel", "another short one"])
    stored = _run_ok(cli_invoke, path, db)
    assert stored["n_texts"] == 3 and stored["rows"][0][2] == big
    con = sqlite3.connect(db)
    try:
        holders = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for column in [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]:
                n = con.execute(f'SELECT count(*) FROM "{table}" WHERE length("{column}") > 100000').fetchone()[0]
                holders += [f"{table}.{column}"] * n
    finally:
        con.close()
    assert holders == ["texts.text"]  # one copy: no truncated or second copy anywhere


def test_long_text_is_truncated_to_the_model_window_and_counted(tmp_path):
    """Real model: a 1 MB text costs a page, gives the vector of the whole text, and is counted."""
    big = " ".join(f"word{i % 97}" for i in range(160_000))
    short = "a short complaint about a parcel"
    embedder = Embedder(progress=False)
    vectors = embedder.encode([big, short])
    assert embedder.window == 256 and embedder.n_truncated == 1
    whole = embedder._load().encode([big, short], normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(vectors, whole, atol=1e-5)
    db = Database(tmp_path / "long.db")
    corpus = corpus_from_texts([big, short])
    db.save_corpus(corpus)
    matrix, report = embed_texts(db, embedder, corpus.text_ids, [corpus.texts[t] for t in corpus.text_ids])
    assert (report.computed, report.cached, report.truncated, report.window) == (2, 0, 1, 256)
    assert np.allclose(matrix, whole, atol=1e-5)
    again, report = embed_texts(db, Embedder(progress=False), corpus.text_ids, [corpus.texts[t] for t in corpus.text_ids])
    assert (report.computed, report.cached, report.truncated, report.window) == (0, 2, 0, None)  # model not loaded
    assert np.array_equal(again, matrix)
    db.close()


def test_100k_duplicate_rows(cli_invoke, make_file, tmp_path):
    texts = ["my parcel never arrived", "the box was crushed", "charged twice for one order"]
    path = make_file("dups.csv", "text\n" + "".join(f"{texts[i % 3]}\n" for i in range(100_000)))
    db = tmp_path / "dups.db"
    _prefill(db, texts)
    start = time.perf_counter()
    stored = _run_ok(cli_invoke, path, db)
    elapsed = time.perf_counter() - start
    assert (stored["n_rows"], stored["n_texts"], stored["n_empty"], stored["n_duplicate_rows"]) == (
        100_000, 3, 0, 99_997)
    assert len(stored["rows"]) == 100_000
    assert elapsed < 120, f"100k duplicate rows took {elapsed:.0f}s"


UNICODE = [
    # (raw text, stored text)
    ("\u0627\u0644\u0637\u0644\u0628 \u0648\u0635\u0644 \u0645\u062a\u0623\u062e\u0631\u0627 \u062c\u062f\u0627",) * 2,
    ("\u05d4\u05d4\u05d6\u05de\u05e0\u05d4 \u05d4\u05d2\u05d9\u05e2\u05d4 \u05e9\u05d1\u05d5\u05e8\u05d4",) * 2,
    ("\U0001f4e6 box arrived \U0001f4a5 broken",) * 2,
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467 family order lost",) * 2,  # ZWJ sequence kept
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u067e\u0648\u0644",) * 2,  # ZWNJ (Persian) kept
    ("\u202egnp.exe\u202c is a file name",) * 2,  # bidi override kept (escaped by the reports)
    ("\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 letters",) * 2,
    ("cafe\u0301 order", "caf\u00e9 order"),  # NFC
    ("\ufeffBOM at the start", "BOM at the start"),
    ("zero\u200bwidth space", "zero width space"),
    ("soft\u00adhyphen", "softhyphen"),
    ("bell\x07 and escape\x1b[31m red", "bell and escape [31m red"),
    ("line\u2028separator", "line separator"),
    ("\u200b\u200b", None),  # nothing visible: empty
    ("\u200e\u200f", None),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_unicode_edge_cases(fmt, cli_invoke, make_file, tmp_path):
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text"])
        writer.writerows([raw] for raw, _ in UNICODE)
        path = make_file("uni.csv", buffer.getvalue())
    else:
        path = make_file("uni.jsonl", "".join(json.dumps({"text": raw}) + "\n" for raw, _ in UNICODE))
    corpus = read_corpus(path)
    expected = [want for _, want in UNICODE]
    assert [corpus.texts.get(t) if t else None for t in corpus.row_text_ids] == expected
    assert all(t == text_id(corpus.texts[t]) for t in corpus.texts)
    db = tmp_path / "uni.db"
    _prefill(db, [t for t in expected if t])
    stored = _run_ok(cli_invoke, path, db)
    assert [text for _, _, text in stored["rows"]] == expected


# --- usage errors: one line like every other error, not click's usage block -----------------------


def _one_line_usage_error(result, command: str) -> str:
    """The single stderr line of a usage error of ``command``; checks exit 2 and nothing else printed."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Usage:" not in result.stderr and "Try '" not in result.stderr
    assert lines[0].startswith("textclust: error: ")
    assert lines[0].endswith(f" (see {' '.join(['textclust', command]).strip()} --help)")
    return lines[0]


def test_usage_error_input_directory(cli_invoke, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    line = _one_line_usage_error(cli_invoke("run", folder, "--goal", "g", "--db", tmp_path / "u.db"), "run")
    assert line == (f"textclust: error: Invalid value for 'INPUT': File '{folder}' is a directory "
                    "(see textclust run --help)")
    assert not (tmp_path / "u.db").exists()


def test_usage_error_unknown_flag(cli_invoke, make_file, tmp_path):
    path = make_file("in.csv", GOOD_CSV)
    line = _one_line_usage_error(cli_invoke("run", path, "--goal", "g", "--frobnicate", "--db", tmp_path / "u.db"),
                                 "run")
    assert line.startswith("textclust: error: No such option '--frobnicate'")
    assert not (tmp_path / "u.db").exists()


def test_usage_error_missing_goal(cli_invoke, make_file, tmp_path):
    path = make_file("in.csv", GOOD_CSV)
    line = _one_line_usage_error(cli_invoke("run", path, "--db", tmp_path / "u.db"), "run")
    assert line == "textclust: error: Missing option '--goal' (see textclust run --help)"
    assert not (tmp_path / "u.db").exists()


def test_usage_error_run_id_not_a_number(cli_invoke, copy_db, fake_run_db):
    db = copy_db(fake_run_db.db)
    digest = file_sha256(db)
    line = _one_line_usage_error(cli_invoke("show", "abc", "--db", db), "show")
    assert line == ("textclust: error: Invalid value for 'RUN_ID': 'abc' is not a run id (a number, or latest) "
                    "(see textclust show --help)")
    assert file_sha256(db) == digest


def test_usage_error_of_the_group_and_help_unchanged(cli_invoke):
    line = _one_line_usage_error(cli_invoke("cluster"), "")
    assert line == "textclust: error: No such command 'cluster' (see textclust --help)"
    for args in (("--help",), ("run", "--help"), ("show", "-h")):
        result = cli_invoke(*args)
        assert result.exit_code == 0 and result.stderr == ""
        assert result.stdout.startswith("Usage: ") and "Options:" in result.stdout
