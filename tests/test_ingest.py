"""Stage 1 — ingest: formats, normalisation, empties, duplicates, ids, column choice."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from textclust.cli import error_line

from textclust.errors import InputError
from textclust.ingest import corpus_from_texts, normalize_text, read_corpus, text_id

ROWS = [
    # (id, text, label)
    ("a1", "My parcel never arrived", "late"),
    ("a2", "  The   box was\tcrushed  ", "damaged"),
    ("a3", "", "none"),
    ("a4", "My parcel never arrived", "late"),
    ("a5", "I was charged twice for one order", "overcharged"),
]
# Expected after normalisation, in first-seen order.
DISTINCT = ["My parcel never arrived", "The box was crushed", "I was charged twice for one order"]


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _check_rows(corpus, key_column_used: bool = False):
    assert corpus.n_rows == 5
    assert corpus.n_texts == 3
    assert corpus.n_empty == 1
    assert corpus.n_duplicate_rows == 1
    assert list(corpus.texts.values()) == DISTINCT
    ids = [_sha16(t) for t in DISTINCT]
    assert corpus.row_text_ids == [ids[0], ids[1], None, ids[0], ids[2]]
    assert corpus.text_ids == ids
    if key_column_used:
        assert corpus.row_keys == ["a1", "a2", "a3", "a4", "a5"]
    else:
        assert corpus.row_keys == ["0", "1", "2", "3", "4"]


# --- formats ----------------------------------------------------------------------------


def test_csv(make_file):
    lines = ["id,text,label"] + [f'{i},"{t}",{lab}' for i, t, lab in ROWS]
    corpus = read_corpus(make_file("in.csv", "\n".join(lines) + "\n"), id_column="id")
    assert corpus.format == "csv"
    assert corpus.text_column == "text"
    assert corpus.columns == ["id", "text", "label"]
    _check_rows(corpus, key_column_used=True)


def test_tsv(make_file):
    lines = ["id\ttext\tlabel"] + [f"{i}\t{t.replace(chr(9), ' ')}\t{lab}" for i, t, lab in ROWS]
    corpus = read_corpus(make_file("in.tsv", "\n".join(lines) + "\n"), id_column="id")
    assert corpus.format == "tsv"
    _check_rows(corpus, key_column_used=True)


def test_jsonl_with_blank_lines(make_file):
    lines = [json.dumps({"id": i, "text": t, "label": lab}) for i, t, lab in ROWS]
    lines.insert(2, "")  # blank lines are not rows
    corpus = read_corpus(make_file("in.jsonl", "\n".join(lines) + "\n\n"), id_column="id")
    assert corpus.format == "jsonl"
    _check_rows(corpus, key_column_used=True)


def test_json_array(make_file):
    data = [{"id": i, "text": t, "label": lab} for i, t, lab in ROWS]
    corpus = read_corpus(make_file("in.json", json.dumps(data)), id_column="id")
    assert corpus.format == "json"
    _check_rows(corpus, key_column_used=True)


def test_txt_one_text_per_line(make_file):
    content = "My parcel never arrived\n  The   box was\tcrushed  \n\nMy parcel never arrived\nI was charged twice for one order\n"
    corpus = read_corpus(make_file("in.txt", content))
    assert corpus.format == "txt"
    assert corpus.text_column == "text"
    _check_rows(corpus)


def test_parquet(make_file, tmp_path):
    frame = pd.DataFrame({"id": [r[0] for r in ROWS], "text": [r[1] for r in ROWS], "label": [r[2] for r in ROWS]})
    path = tmp_path / "in.parquet"
    frame.to_parquet(path, engine="pyarrow", index=False)
    corpus = read_corpus(path, id_column="id")
    assert corpus.format == "parquet"
    _check_rows(corpus, key_column_used=True)


def test_parquet_null_text_is_empty(tmp_path):
    path = tmp_path / "nulls.parquet"
    pd.DataFrame({"text": ["first text here", None, "second text here"]}).to_parquet(path, index=False)
    corpus = read_corpus(path)
    assert corpus.n_rows == 3 and corpus.n_empty == 1 and corpus.row_text_ids[1] is None


def test_format_option_overrides_extension(make_file):
    path = make_file("in.data", "text\nfirst text\nsecond text\n")
    with pytest.raises(InputError, match="extension"):
        read_corpus(path)
    corpus = read_corpus(path, format="csv")
    assert corpus.n_texts == 2 and corpus.format == "csv"


def test_unknown_format_option(make_file):
    with pytest.raises(InputError, match="unknown format 'xml'"):
        read_corpus(make_file("in.csv", "text\na b\n"), format="xml")


def test_utf8_bom_is_not_part_of_the_header(make_file):
    corpus = read_corpus(make_file("bom.csv", "\ufefftext,label\nfirst text here,a\nsecond text here,a\n"))
    assert corpus.columns[0] == "text" and corpus.text_column == "text"


def test_csv_quoted_newline_inside_field(make_file):
    corpus = read_corpus(make_file("nl.csv", 'text\n"two\nlines"\n"one line"\n'))
    assert corpus.n_rows == 2
    assert list(corpus.texts.values()) == ["two lines", "one line"]


def test_sample_corpus_counts(sample_path):
    corpus = read_corpus(sample_path, id_column="id")
    assert corpus.text_column == "text"
    assert (corpus.n_rows, corpus.n_texts, corpus.n_empty, corpus.n_duplicate_rows) == (309, 300, 4, 5)
    assert corpus.row_keys[0] == "T0001" and corpus.row_keys[-1] == "T0309"
    # No stored text carries the whitespace noise of the blank rows.
    assert all(t == " ".join(t.split()) and t for t in corpus.texts.values())


# --- normalisation and ids -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  a  b\t\tc\n", "a b c"),
        ("\u00a0x\u2003y\u00a0", "x y"),  # no-break and em spaces are whitespace too
        ("line one\r\nline two", "line one line two"),
        ("caf\u0065\u0301", "caf\u00e9"),  # NFC: e + combining acute -> é
        ("", ""),
        ("   \t\n ", ""),
        (None, ""),
        (float("nan"), ""),
        (42, "42"),
        ("bell\x07 esc\x1b[0m del\x7f", "bell esc [0m del"),  # C0 controls are spaces
        ("em\x97dash", "em\x97dash"),  # C1 controls (mis-decoded cp1252) are kept: ids do not change
        ("zero\u200bwidth", "zero width"),  # the zero-width space separates words
        ("\ufeffword\u2060joiner soft\u00adhyphen", "wordjoiner softhyphen"),  # invisible hints dropped
        ("\u200b \u200e\u200f \ufeff", ""),  # nothing visible: empty
        ("a\u200db \u200cc \u200fd", "a\u200db \u200cc \u200fd"),  # joiners and bidi marks kept
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_whitespace_variants_are_one_text(make_file):
    corpus = read_corpus(make_file("ws.csv", 'text\n"a  b"\n"a b"\n" a\tb "\n"caf\u0065\u0301"\n"caf\u00e9"\n'))
    assert corpus.n_rows == 5
    assert corpus.n_texts == 2
    assert corpus.n_duplicate_rows == 3
    assert corpus.row_text_ids[0] == corpus.row_text_ids[1] == corpus.row_text_ids[2]
    assert corpus.row_text_ids[3] == corpus.row_text_ids[4]


def test_text_id_is_sha256_prefix():
    for text in ["hello world", "caf\u00e9 \u2603", "x"]:
        tid = text_id(text)
        assert re.fullmatch(r"[0-9a-f]{16}", tid)
        assert tid == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert text_id("a") != text_id("b")


def test_ids_are_stable_across_calls_files_and_formats(make_file):
    csv_corpus = read_corpus(make_file("one.csv", "text\nsame text here\nother text\n"))
    again = read_corpus(make_file("one.csv", "text\nsame text here\nother text\n"))
    jsonl_corpus = read_corpus(make_file("two.jsonl", '{"text": "  same   text here "}\n'))
    memory = corpus_from_texts(["same text here"])
    tid = csv_corpus.row_text_ids[0]
    assert again.row_text_ids == csv_corpus.row_text_ids
    assert jsonl_corpus.row_text_ids == [tid]
    assert memory.row_text_ids == [tid]
    assert csv_corpus.fingerprint == again.fingerprint


def test_fingerprint_depends_on_content(make_file):
    a = read_corpus(make_file("a.csv", "text\nfirst text\nsecond text\n"))
    b = read_corpus(make_file("b.csv", "text\nfirst text\nsecond text\n"))  # same content, other file
    c = read_corpus(make_file("c.csv", "text\nsecond text\nfirst text\n"))  # other row order
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint


# --- empties and duplicates -------------------------------------------------------------------


def test_empties_dropped_and_counted_duplicates_kept_mapped(make_file):
    content = 'text\nalpha beta\n""\n"   "\nalpha   beta\ngamma delta\n"\t"\nalpha beta\n'
    corpus = read_corpus(make_file("dup.csv", content))
    assert corpus.n_rows == 7
    assert corpus.n_empty == 3
    assert corpus.n_texts == 2
    assert corpus.n_duplicate_rows == 2
    alpha = text_id("alpha beta")
    assert corpus.row_text_ids == [alpha, None, None, alpha, text_id("gamma delta"), None, alpha]
    assert corpus.texts == {alpha: "alpha beta", text_id("gamma delta"): "gamma delta"}


def test_all_empty_raises(make_file):
    with pytest.raises(InputError, match="all 3 rows have an empty text in column 'text'"):
        read_corpus(make_file("empty.csv", 'n,text\n1,""\n2,"  "\n3,\n'))


def test_all_empty_text_column_is_not_replaced_by_another_column(make_file):
    with pytest.raises(InputError, match="empty"):
        read_corpus(make_file("empty_ids.csv", 'id,text\nT1,""\nT2,"  "\nT3,\n'))


def test_corpus_from_texts_all_empty_raises():
    with pytest.raises(InputError):
        corpus_from_texts(["", "   "])


# --- choosing the text column ---------------------------------------------------------------


def test_single_column_is_the_text_column(make_file):
    assert read_corpus(make_file("one.csv", "whatever\nsome words here\nmore words here\n")).text_column == "whatever"


def test_only_text_like_column_is_chosen(make_file):
    # 'score' is numeric, 'label' a short repeated category: only 'body_of_message' is free text.
    rows = ["score,body_of_message,label"] + [
        f"{i},this is message number {w} with several words,{'pos' if i % 2 else 'neg'}"
        for i, w in enumerate(["one", "two", "three", "four", "five", "six"])
    ]
    assert read_corpus(make_file("m.csv", "\n".join(rows) + "\n")).text_column == "body_of_message"


def test_text_and_label_file_picks_text(make_file):
    rows = ["label,text"] + [f"{lab},customer complaint number {w} about things" for lab, w in
                             [("a", "one"), ("b", "two"), ("a", "three"), ("b", "four"), ("a", "five"), ("b", "six")]]
    assert read_corpus(make_file("tl.csv", "\n".join(rows) + "\n")).text_column == "text"


def test_preferred_name_wins_among_several_text_like_columns(make_file):
    rows = ["title,text", "A long headline with words,The body of the first article", "Another long headline here,The body of the second one"]
    assert read_corpus(make_file("p.csv", "\n".join(rows) + "\n")).text_column == "text"


def test_ambiguous_columns_raise_and_list_them(make_file):
    rows = ["title,summary", "A long headline with words,Some summary with words", "Another long headline,Another summary text"]
    with pytest.raises(InputError) as info:
        read_corpus(make_file("amb.csv", "\n".join(rows) + "\n"))
    message = str(info.value)
    assert "title" in message and "summary" in message and message.endswith("choose one with text_column")
    assert error_line(info.value).endswith("choose one with --text-column")  # the command line names its flag
    assert "\n" not in message


def test_no_text_like_column_raises_and_lists_columns(make_file):
    with pytest.raises(InputError) as info:
        read_corpus(make_file("num.csv", "a,b\n1,2\n3,4\n"))
    assert "columns are: a, b" in str(info.value)


def test_id_column_is_not_free_text(make_file):
    rows = ["id,complaint"] + [f"T{i:04d},my order number {w} arrived late and broken" for i, w in
                               enumerate(["one", "two", "three", "four", "five", "six"], start=1)]
    assert read_corpus(make_file("idc.csv", "\n".join(rows) + "\n")).text_column == "complaint"


def test_explicit_text_column(make_file):
    rows = ["title,summary", "A long headline with words,Some summary with words", "Another long headline,Another summary text"]
    corpus = read_corpus(make_file("amb.csv", "\n".join(rows) + "\n"), text_column="summary")
    assert corpus.text_column == "summary"
    assert list(corpus.texts.values()) == ["Some summary with words", "Another summary text"]


def test_unknown_text_column_lists_columns(make_file):
    with pytest.raises(InputError) as info:
        read_corpus(make_file("x.csv", "id,text\n1,hello world\n"), text_column="body")
    message = str(info.value)
    assert ": text_column 'body' not found" in message  # a Python caller's keyword
    assert ": --text-column 'body' not found" in error_line(info.value)
    assert "columns are: id, text" in message


# --- id column and extra columns ------------------------------------------------------------


def test_id_column_keeps_string_ids(make_file):
    corpus = read_corpus(make_file("ids.csv", "id,text\n007,first text\n008,second text\n,third text\n"), id_column="id")
    assert corpus.id_column == "id"
    assert corpus.row_keys == ["007", "008", "2"]  # an empty id falls back to the row index


def test_unknown_id_column_lists_columns(make_file):
    with pytest.raises(InputError) as info:
        read_corpus(make_file("ids.csv", "id,text\n1,first text\n"), id_column="key")
    assert ": id_column 'key' not found" in str(info.value)
    assert ": --id-column 'key' not found" in error_line(info.value)
    assert "columns are: id, text" in str(info.value)


def test_extra_columns_are_returned_per_row(make_file):
    corpus = read_corpus(make_file("e.csv", "text,reason\nfirst text,a\n,b\nthird text,c\n"), extra_columns=("reason",))
    assert corpus.extra == {"reason": ["a", "b", "c"]}
    with pytest.raises(InputError, match="'nope' not found"):
        read_corpus(make_file("e.csv", "text,reason\nfirst text,a\n"), extra_columns=("nope",))


# --- real corpora (shared data, development machines only) ------------------------------------


def test_shared_corpora_ingest(shared_data):
    files = sorted(shared_data.glob("*.jsonl"))
    assert files, f"no .jsonl corpora in {shared_data}"
    for path in files:
        with path.open(encoding="utf-8") as handle:
            n_lines = sum(1 for line in handle if line.strip())
        corpus = read_corpus(path)
        assert corpus.text_column == "text", path.name
        assert corpus.n_rows == n_lines, path.name
        assert corpus.n_texts + corpus.n_empty + corpus.n_duplicate_rows == corpus.n_rows
        assert corpus.n_texts > 0.9 * corpus.n_rows, path.name


# --- line splitting and encoding details --------------------------------------------------------


def test_jsonl_with_unicode_line_separator_inside_a_string(make_file):
    rows = [{"text": "first part\u2028still the first text"}, {"text": "second text"}, {"text": "third\u0085text"}]
    path = make_file("ls.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    corpus = read_corpus(path)
    assert corpus.n_rows == 3
    assert list(corpus.texts.values()) == ["first part still the first text", "second text", "third text"]


def test_txt_rows_are_newline_separated_lines(make_file):
    path = make_file("ls.txt", "first line\u2028same line\nsecond\x0cline\nthird line\n")
    corpus = read_corpus(path)
    assert corpus.n_rows == 3
    assert list(corpus.texts.values()) == ["first line same line", "second line", "third line"]


def test_txt_windows_newlines(make_file):
    corpus = read_corpus(make_file("crlf.txt", b"first line\r\nsecond line\r\n\r\nthird line\r\n"))
    assert corpus.n_rows == 4
    assert list(corpus.texts.values()) == ["first line", "second line", "third line"]


def test_invalid_utf8_error_names_byte_and_line(make_file):
    with pytest.raises(InputError, match=r"not valid UTF-8 \(byte 0xe9 on line 3\)"):
        read_corpus(make_file("bad.csv", b"text\nabc\n\xe9t\xe9\n"))


def test_invalid_utf8_error_names_byte_and_line_after_a_bom(make_file):
    with pytest.raises(InputError, match=r"not valid UTF-8 \(byte 0xe9 on line 3\)"):
        read_corpus(make_file("bad_bom.csv", b"\xef\xbb\xbftext\nabc\n\xe9t\xe9\n"))


# --- streaming -----------------------------------------------------------------------------------


def test_large_csv_is_streamed_with_only_the_used_columns(make_file):
    rows = ["id,text,label,unused"] + [f"r{i},text number {i} here,{i % 3},{'x' * 50}" for i in range(25_000)]
    corpus = read_corpus(make_file("big.csv", "\n".join(rows) + "\n"), id_column="id", extra_columns=("label",))
    assert corpus.n_rows == corpus.n_texts == 25_000
    assert corpus.row_keys[-1] == "r24999" and corpus.extra["label"][:4] == ["0", "1", "2", "0"]
    assert corpus.texts[corpus.row_text_ids[-1]] == "text number 24999 here"


def test_parquet_in_batches(tmp_path):
    n = 23_456  # more than one batch and more than the sample
    path = tmp_path / "many.parquet"
    pd.DataFrame({"id": [f"p{i}" for i in range(n)], "text": [f"parquet text {i}" for i in range(n)],
                  "other": range(n)}).to_parquet(path, index=False, row_group_size=5000)
    corpus = read_corpus(path, id_column="id")
    assert corpus.n_rows == corpus.n_texts == n
    assert corpus.row_keys[12_345] == "p12345"
    assert corpus.texts[corpus.row_text_ids[-1]] == f"parquet text {n - 1}"


def test_csv_line_numbers_count_quoted_newlines(make_file):
    content = 'text\n"first\nsecond line of the first"\nok text\n"a","b"\n'
    with pytest.raises(InputError, match="line 5 has 2 fields but the header has 1"):
        read_corpus(make_file("nl.csv", content))


def test_csv_blank_lines_are_not_rows_but_quoted_empties_are(make_file):
    corpus = read_corpus(make_file("blank.csv", 'text\nfirst text\n\n""\nsecond text\n\n'))
    assert corpus.n_rows == 3 and corpus.n_empty == 1


def test_csv_fewer_fields_than_the_header(make_file):
    corpus = read_corpus(make_file("short.csv", "id,text\n1,first text\n2\n3,third text\n"), id_column="id")
    assert corpus.row_keys == ["1", "2", "3"] and corpus.row_text_ids[1] is None


def test_csv_header_names_like_pandas(make_file):
    corpus = read_corpus(make_file("h.csv", "text,text,,x\nsome words here,other words here,a,b\n"))
    assert corpus.columns == ["text", "text.1", "Unnamed: 2", "x"]


def test_csv_field_larger_than_the_csv_module_default(make_file):
    big = "word " * 60_000  # 300k characters, above csv's default field limit (131072)
    corpus = read_corpus(make_file("big.csv", f'text\n"{big}"\nsmall text\n'))
    assert corpus.n_texts == 2 and len(next(iter(corpus.texts.values()))) == len(big.strip())


def test_jsonl_ids_keep_their_integer_form(make_file):
    """pandas turned an int column with a gap into floats ("1.0"); streaming keeps "1"."""
    lines = ['{"id": 1, "text": "first text"}', '{"text": "second text"}', '{"id": 3, "text": "third text"}']
    corpus = read_corpus(make_file("ids.jsonl", "\n".join(lines) + "\n"), id_column="id")
    assert corpus.row_keys == ["1", "1", "3"]  # the missing id falls back to the row index


def test_summary_line(make_file):
    corpus = read_corpus(make_file("s.csv", "text\nalpha beta\n\"\"\nalpha beta\ngamma delta\n"))
    assert corpus.summary() == (f"{corpus.source}: 4 rows, 2 distinct texts, 1 empty, 1 duplicate rows "
                                "(column 'text')")
