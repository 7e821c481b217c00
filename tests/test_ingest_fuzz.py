"""Property-based tests of the ingest: whatever the content, the result is right or a clean error.

* Arbitrary texts written as CSV / TSV / JSONL / TXT by the standard writers come back
  exactly: one row per input row, ids = sha256 of the normalised text, the normalised
  text stored, row keys kept; the same texts give the same ids in every format.
* Arbitrary JSON values in the text field, and arbitrary bytes as a file, end in a
  corpus whose invariants hold or in an :class:`InputError`, never in another exception.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from textclust.errors import InputError, TextclustError
from textclust.ingest import corpus_from_texts, normalize_text, read_corpus, text_id

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text without NUL (a NUL in the first 8 KB makes the file "binary", see test_nul_means_binary).
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60)
TEXTS = st.lists(TEXT, min_size=1, max_size=25)
# A few hand-picked awkward values, mixed into the random ones.
AWKWARD = st.sampled_from([
    "", " ", '"', '""', ",", "\t", "\r", "\n", "\r\n", "a\rb", "\u2028", "\u0085", "\ufeff", "\u200b",
    "\u202e", "e\u0301", "\U0001f468\u200d\U0001f469", "NaN", "null", "None", "#", "'", "\\", "\x1b[31m",
])
MIXED_TEXTS = st.lists(st.one_of(TEXT, AWKWARD), min_size=1, max_size=25)


def _write(directory: Path, name: str, content) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _csv(rows: list[list[str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue()


def _expected_ids(texts) -> list[str | None]:
    out = []
    for t in texts:
        norm = normalize_text(t)
        out.append(text_id(norm) if norm else None)
    return out


def _check_round_trip(corpus, texts, keys):
    expected = _expected_ids(texts)
    assert corpus.n_rows == len(texts)
    assert corpus.row_text_ids == expected
    assert corpus.row_keys == keys
    for raw, tid in zip(texts, expected):
        if tid:
            assert corpus.texts[tid] == normalize_text(raw)
    assert corpus.n_texts == len({t for t in expected if t})
    assert corpus.n_skipped == 0


def _read_or_error(path, **kwargs):
    """The corpus, or None when every text is empty (the one error these inputs may give:
    "all N rows have an empty text", or "the file is empty" when it is all whitespace)."""
    try:
        return read_corpus(path, **kwargs)
    except InputError as err:
        assert "empty text" in str(err) or str(err).endswith("the file is empty"), str(err)
        return None


@FUZZ
@given(texts=MIXED_TEXTS)
@example(texts=["", "x"])
@example(texts=['"', "a\rb", "\r\n"])
def test_csv_round_trip(texts):
    keys = [f"r{i}" for i in range(len(texts))]
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "in.csv", _csv([["id", "text"]] + [[k, t] for k, t in zip(keys, texts)]))
        corpus = _read_or_error(path, id_column="id")
        if corpus is None:
            assert all(not normalize_text(t) for t in texts)
            return
        assert corpus.text_column == "text"
        _check_round_trip(corpus, texts, keys)


@FUZZ
@given(texts=MIXED_TEXTS)
def test_single_column_csv_and_tsv_round_trip(texts):
    keys = [str(i) for i in range(len(texts))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, sep in (("in.csv", ","), ("in.tsv", "\t")):
            # A blank line is not a row; csv.writer quotes a lone empty field ('""') so it stays one.
            path = _write(Path(tmp), name, _csv([["text"]] + [[t] for t in texts], delimiter=sep))
            corpus = _read_or_error(path)
            if corpus is None:
                assert all(not normalize_text(t) for t in texts)
                continue
            _check_round_trip(corpus, texts, keys)


@FUZZ
@given(texts=MIXED_TEXTS, ids=st.lists(st.one_of(st.integers(), TEXT, st.none()), min_size=25, max_size=25),
       ascii_only=st.booleans())
def test_jsonl_round_trip_and_ids_stable_across_formats(texts, ids, ascii_only):
    ids = ids[: len(texts)]
    keys = [normalize_text(v) or str(i) for i, v in enumerate(ids)]
    lines = [json.dumps({"id": i, "text": t}, ensure_ascii=ascii_only) for i, t in zip(ids, texts)]
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = _read_or_error(_write(Path(tmp), "in.jsonl", "\n".join(lines) + "\n"), id_column="id")
        if jsonl is None:
            assert all(not normalize_text(t) for t in texts)
            return
        _check_round_trip(jsonl, texts, keys)
        as_csv = read_corpus(_write(Path(tmp), "in.csv", _csv([["text"]] + [[t] for t in texts])))
        memory = corpus_from_texts(texts)
        assert as_csv.row_text_ids == jsonl.row_text_ids == memory.row_text_ids
        assert as_csv.texts == jsonl.texts == memory.texts
        assert as_csv.fingerprint == memory.fingerprint


@FUZZ
@given(texts=st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00\n\r"), max_size=60),
                      min_size=1, max_size=25))
def test_txt_round_trip(texts):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "in.txt", "".join(t + "\n" for t in texts))
        corpus = _read_or_error(path)
        if corpus is None:
            return
        _check_round_trip(corpus, texts, [str(i) for i in range(len(texts))])


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(values=st.lists(JSON_VALUE, min_size=1, max_size=20))
def test_jsonl_any_json_value_as_text(values):
    lines = [json.dumps({"text": v}) for v in values]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            corpus = read_corpus(_write(Path(tmp), "in.jsonl", "\n".join(lines) + "\n"))
        except InputError as err:
            assert "empty text" in str(err) or "no usable text" in str(err), str(err)
            return
    assert corpus.n_rows == len(values)
    skipped = 0
    for value, tid in zip(values, corpus.row_text_ids):
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            skipped += 1
            assert tid is None
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            assert tid is None
        else:
            norm = normalize_text(value)
            assert tid == (text_id(norm) if norm else None)
    assert corpus.n_skipped == skipped
    _check_invariants(corpus)


def _check_invariants(corpus):
    assert corpus.n_texts + corpus.n_empty + corpus.n_duplicate_rows == corpus.n_rows
    assert 0 <= corpus.n_skipped <= corpus.n_empty
    assert len(corpus.row_keys) == corpus.n_rows
    for tid, text in corpus.texts.items():
        assert text and normalize_text(text) == text
        assert text_id(text) == tid
        text.encode("utf-8")  # storable: no lone surrogates
    for key in corpus.row_keys:
        key.encode("utf-8")
    for name in corpus.columns:
        name.encode("utf-8")
    for note in corpus.notes:
        assert "\n" not in note
        note.encode("utf-8")


def _assert_clean(err: Exception):
    assert isinstance(err, TextclustError), f"unexpected {type(err).__name__}: {err}"
    message = str(err)
    assert message and "\n" not in message, repr(message)
    message.encode("utf-8")


@FUZZ
@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.jsonl", "in.json", "in.txt", "in.parquet"])
@given(content=st.binary(max_size=600))
@example(content=b"")
@example(content=b"\xff\xfe")
@example(content=b"\xfe\xff\x00t\x00e\x00x\x00t\x00\n\x00a\x00 \x00b\x00\n")
@example(content=b'text\n"\xff\n')
@example(content=b"PAR1garbagePAR1")
def test_arbitrary_bytes_never_crash(name, content):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), name, content)
        try:
            corpus = read_corpus(path)
        except Exception as err:  # noqa: BLE001 - the point: which exceptions come out
            _assert_clean(err)
            return
    _check_invariants(corpus)


# Text files with some bytes broken: structure mostly valid, encodings mixed.
NOISY_LINE = st.tuples(TEXT, st.binary(max_size=4)).map(
    lambda pair: pair[0].replace("\n", " ").encode("utf-8") + pair[1].replace(b"\n", b"").replace(b"\x00", b"")
)


@FUZZ
@given(lines=st.lists(NOISY_LINE, min_size=1, max_size=30), fmt=st.sampled_from(["csv", "txt", "jsonl"]))
def test_mixed_encodings_never_crash(lines, fmt):
    if fmt == "jsonl":
        body = b"".join(b'{"text": "' + line.replace(b"\\", b"").replace(b'"', b"") + b'"}\n' for line in lines)
    elif fmt == "csv":
        body = b"text\n" + b"".join(b'"' + line.replace(b'"', b"") + b'"\n' for line in lines)
    else:
        body = b"".join(line.replace(b"\r", b"") + b"\n" for line in lines)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            corpus = read_corpus(_write(Path(tmp), f"in.{fmt}", body))
        except Exception as err:  # noqa: BLE001
            _assert_clean(err)
            return
    _check_invariants(corpus)
    if fmt != "jsonl":  # (JSONL lines may also be bad JSON: then the error above)
        assert corpus.n_rows == len(lines)
    bad = sum(1 for line in lines if _undecodable(line))
    assert corpus.n_skipped == bad


def _undecodable(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


@given(texts=st.lists(st.text(alphabet=st.sampled_from("ab \ud800\udc80\udfff"), max_size=8), min_size=1, max_size=10))
@FUZZ
def test_in_memory_texts_with_lone_surrogates(texts):
    try:
        corpus = corpus_from_texts(texts)
    except InputError:
        return
    _check_invariants(corpus)


def test_nul_means_binary(tmp_path):
    with pytest.raises(InputError, match="binary file"):
        read_corpus(_write(tmp_path, "nul.csv", "text\nhas a \x00 NUL\n"))


def test_text_column_chosen_from_the_first_rows_only(tmp_path):
    """Streaming: a key that first appears after the sample is still found when asked for."""
    lines = ['{"a": "x y z"}'] * 10_001 + ['{"a": "x y z", "late": "a late text here"}']
    corpus = read_corpus(_write(tmp_path, "late.jsonl", "\n".join(lines) + "\n"), text_column="late")
    assert corpus.n_rows == 10_002 and corpus.n_texts == 1 and corpus.columns == ["a", "late"]
    with pytest.raises(InputError, match=": text_column 'never' not found; columns are: a, late"):
        read_corpus(_write(tmp_path, "late.jsonl", "\n".join(lines) + "\n"), text_column="never")
