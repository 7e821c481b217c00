"""Stage 1 — ingest: read CSV / TSV / JSONL / JSON / TXT / Parquet into a :class:`Corpus`.

A corpus keeps *every* input row (so exports line up with the user's file) but each
distinct text only once: rows point at texts by a content hash. Whitespace is
normalised before hashing, so "a  b" and "a b" are the same text. Empty texts are
kept as rows with no text and counted.

Files are read as a stream: CSV, TSV, JSONL and TXT line by line, Parquet batch by
batch, keeping only the columns that are used (the text, the id and any requested
extra column). Only a JSON array is parsed whole. The text column is chosen from the
first :data:`SNIFF_ROWS` rows.

Bytes that are not UTF-8 do not stop the ingest: a row whose text cannot be decoded
is kept as a row without a text (like an empty one), counted in ``n_skipped`` and
described in ``notes``. When at least half of the rows cannot be decoded the file is
in another encoding and the ingest fails. A file with a UTF-16 byte-order mark is
decoded as UTF-16.

A malformed row (a JSONL line that is not JSON or not an object, a JSON array element that
is not an object, a CSV/TSV row the parser rejects or with more fields than the header)
fails the ingest with a one-line error naming its line, unless ``skip_bad_rows`` is set:
then it is kept as a row without a text, counted in ``n_skipped`` and described in
``notes``, like an undecodable one.

All validation happens here, before anything touches the database, so bad input
never changes stored data.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import unicodedata
from itertools import chain, islice
from pathlib import Path
from typing import Iterable, Iterator

from .corpus import Corpus, text_id  # noqa: F401  (re-exported: moved to textclust.corpus)
from .errors import InputError, register_settings

register_settings(("text_column", "id_column", "format", "skip_bad_rows"))  # named in messages as {text_column}…

SUPPORTED_FORMATS = ("csv", "tsv", "jsonl", "json", "txt", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
    ".text": "txt",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Column names that, when several columns look like text, name the one to use.
_PREFERRED_TEXT_COLUMNS = ("text", "body", "content", "message", "comment", "review", "document")
# The text column is chosen from this many rows at the start of the file.
SNIFF_ROWS = 10_000
_PARQUET_BATCH = 10_000

# Normalisation: control characters become spaces (then collapse away); the zero-width
# space separates words; word joiners, byte-order marks and soft hyphens are invisible
# hints that carry nothing and are dropped. Joiners that change how a script renders
# (ZWJ in emoji sequences, ZWNJ in Persian) and bidi marks are kept.
# (C1 controls U+0080…U+009F are kept: in real data they are mis-decoded punctuation.)
_TRANSLATE = {c: " " for c in chain(range(0x00, 0x20), [0x7F])}
_TRANSLATE.update({0x200B: " ", 0x2060: None, 0xFEFF: None, 0x00AD: None})
# Characters only _TRANSLATE handles (str.split already treats \t \n \x0b-\x0d \x1c-\x1f as spaces).
_SPECIAL = re.compile("[\x00-\x08\x0e-\x1b\x7f\u00ad\u200b\u2060\ufeff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_text(value: object) -> str:
    """Unicode NFC, all runs of whitespace to one space, stripped. Non-strings → ''/str.

    Control characters count as whitespace; a text made only of invisible format
    characters (bidi marks, joiners) is empty.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas / JSON
        return ""
    text = unicodedata.normalize("NFC", value if isinstance(value, str) else str(value))
    if _SPECIAL.search(text):
        text = text.translate(_TRANSLATE)
    text = " ".join(text.split())
    if text and unicodedata.category(text[0]) == "Cf" and all(
        unicodedata.category(c) == "Cf" for c in text.replace(" ", "")
    ):
        return ""
    return text


def read_corpus(
    path: str | Path,
    text_column: str | None = None,
    id_column: str | None = None,
    extra_columns: tuple[str, ...] = (),
    format: str | None = None,
    skip_bad_rows: bool = False,
) -> Corpus:
    """Read and validate an input file. Raises :class:`InputError` with a one-line message.

    ``skip_bad_rows``: a malformed row (see the module's docstring) is kept as a row without a
    text and counted in ``n_skipped`` instead of failing the whole file."""
    path = Path(path)
    fmt = _detect_format(path, format)
    _check_file(path)
    source = _open_source(path, fmt, skip_bad_rows)
    try:
        return _build(path, fmt, source, text_column, id_column, tuple(extra_columns))
    finally:
        source.close()


def corpus_from_texts(texts: list[str], name: str = "texts") -> Corpus:
    """Build a corpus from an in-memory list of strings (the Python API's entry point)."""
    row_text_ids: list[str | None] = []
    unique: dict[str, str] = {}
    n_skipped = 0
    for value in texts:
        if isinstance(value, str) and _SURROGATE.search(value):
            n_skipped += 1  # cannot be encoded as UTF-8, hence cannot be stored
            text = ""
        else:
            text = normalize_text(value)
        tid = text_id(text) if text else None
        if tid:
            unique.setdefault(tid, text)
        row_text_ids.append(tid)
    if not unique:
        raise InputError(f"{name}: all {len(texts)} texts are empty")
    notes = [f"skipped {n_skipped} texts holding lone surrogates (not valid Unicode)"] if n_skipped else []
    return Corpus(
        name=name,
        source="<memory>",
        format="memory",
        text_column="text",
        id_column=None,
        row_keys=[str(i) for i in range(len(texts))],
        row_text_ids=row_text_ids,
        texts=unique,
        columns=["text"],
        n_skipped=n_skipped,
        notes=notes,
    )


# --- building the corpus from rows ------------------------------------------------------


class _Skips:
    """Rows whose text could not be used, grouped by reason, with the first line of each."""

    def __init__(self):
        self.by_reason: dict[str, list] = {}  # reason -> [count, first line, detail]

    def add(self, reason: str, line: int, detail: str = "") -> None:
        entry = self.by_reason.setdefault(reason, [0, line, detail])
        entry[0] += 1

    @property
    def total(self) -> int:
        return sum(entry[0] for entry in self.by_reason.values())

    def notes(self) -> list[str]:
        notes = []
        for reason, (count, line, detail) in self.by_reason.items():
            rows = "row" if count == 1 else "rows"
            where = f"line {line}" + (f", {detail}" if detail else "")
            if reason == "utf8":
                notes.append(f"skipped {count} {rows} whose text is not valid UTF-8 (first: {where}); "
                             "re-save the file as UTF-8 to keep them")
            elif reason == "malformed":
                notes.append(f"skipped {count} malformed {rows} that could not be parsed (first: {where})")
            elif reason == "surrogate":
                notes.append(f"skipped {count} {rows} whose text holds an invalid Unicode escape (first: {where})")
            else:
                notes.append(f"skipped {count} {rows} whose text is not a string ({reason}; first: {where})")
        return notes


def _build(path, fmt, source: "_Source", text_column, id_column, extra_columns) -> Corpus:
    rows = iter(source)
    sample = list(islice(rows, SNIFF_ROWS))
    if not sample:
        raise InputError(f"{path}: no rows (the file has a header or structure but no data)")
    if all(isinstance(record, _BadRow) for _, record in sample):
        first_line, first = sample[0]
        every = "all" if len(sample) < SNIFF_ROWS else f"the first {len(sample)}"
        raise InputError(f"{path}: no row can be read: {every} {len(sample)} rows are malformed "
                         f"(first: line {first_line}, {first.detail})")
    columns = source.columns(sample)
    if not columns:
        raise InputError(f"{path}: the rows have no fields")
    if text_column is not None and source.open_columns and text_column not in columns:
        column = text_column  # a key may first appear after the sample: checked at the end
    else:
        column = _choose_text_column(columns, sample, text_column, path)
    wanted = [c for c in (id_column, *extra_columns) if c is not None]
    if not source.open_columns:  # CSV / TSV / Parquet: every column is known from the header
        _require(path, columns, id_column, extra_columns)
    source.keep(column, wanted)

    texts: dict[str, str] = {}
    row_text_ids: list[str | None] = []
    row_keys: list[str] = []
    extra: dict[str, list] = {c: [] for c in extra_columns}
    skips = _Skips()
    n_raw = 0  # rows with a non-empty raw text value (the base for "most rows are unreadable")
    for line, record in chain(sample, rows):
        if isinstance(record, _BadRow):
            skips.add("malformed", line, record.detail)
        value = record.get(column)
        text = ""
        if isinstance(value, str):
            if value.strip():
                n_raw += 1
            bad = _SURROGATE.search(value)
            if bad:
                code = ord(bad.group())
                if 0xDC80 <= code <= 0xDCFF and source.decoded_with_escapes:
                    skips.add("utf8", line, f"byte 0x{code - 0xDC00:02x}")
                else:
                    skips.add("surrogate", line, f"U+{code:04X}")
            else:
                text = normalize_text(value)
        elif isinstance(value, bytes):  # Parquet binary columns
            n_raw += 1
            try:
                text = normalize_text(value.decode("utf-8"))
            except UnicodeDecodeError as err:
                skips.add("utf8", line, f"byte 0x{value[err.start]:02x}")
        elif isinstance(value, bool):
            n_raw += 1
            skips.add("a boolean", line)
        elif isinstance(value, (int, float)):
            if not (isinstance(value, float) and math.isnan(value)):
                n_raw += 1
                text = normalize_text(value)
        elif value is not None:
            n_raw += 1
            skips.add(_kind(value), line)
        if text:
            tid = text_id(text)
            texts.setdefault(tid, text)
            row_text_ids.append(tid)
        else:
            row_text_ids.append(None)
        if id_column is not None:
            row_keys.append(_clean_key(record.get(id_column)) or str(len(row_keys)))
        else:
            row_keys.append(str(len(row_keys)))
        for c in extra_columns:
            extra[c].append(_clean_value(record.get(c)))

    if source.open_columns:  # JSONL / JSON: a key may first appear after the sample
        columns = columns + [c for c in source.all_keys if c not in columns]
        if column not in columns:
            raise InputError(f"{path}: {{text_column}} '{column}' not found; columns are: {', '.join(columns)}")
        _require(path, columns, id_column, extra_columns)
    count, line, detail = skips.by_reason.get("utf8", (0, 0, ""))
    if count and count * 2 >= n_raw:
        raise InputError(
            f"{path}: not valid UTF-8 ({detail} on line {line}); {count} of {n_raw} rows cannot be decoded, "
            "so the file is probably in another encoding; re-save it as UTF-8"
        )
    if not texts:
        if skips.total:
            raise InputError(f"{path}: no usable text in column '{column}': {'; '.join(skips.notes())}")
        raise InputError(f"{path}: all {len(row_text_ids)} rows have an empty text in column '{column}'")
    return Corpus(
        name=path.stem,
        source=str(path),
        format=fmt,
        text_column=column,
        id_column=id_column,
        row_keys=row_keys,
        row_text_ids=row_text_ids,
        texts=texts,
        columns=columns,
        extra=extra,
        n_skipped=skips.total,
        notes=source.notes + skips.notes(),
    )


def _require(path, columns, id_column, extra_columns) -> None:
    for name, option in [(id_column, "{id_column}")] + [(c, "column") for c in extra_columns]:
        if name is not None and name not in columns:
            raise InputError(f"{path}: {option} '{name}' not found; columns are: {', '.join(columns)}")


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


def _clean_key(value) -> str:
    if isinstance(value, str) and _SURROGATE.search(value):
        value = _replace_surrogates(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return normalize_text(value)


def _clean_value(value):
    if isinstance(value, str) and _SURROGATE.search(value):
        return _replace_surrogates(value)
    return value


def _replace_surrogates(value: str) -> str:
    """Undecodable bytes (kept as surrogate escapes) → U+FFFD; for ids, labels and column names."""
    return value.encode("utf-8", "surrogateescape" if _only_escapes(value) else "surrogatepass").decode(
        "utf-8", "replace"
    )


def _only_escapes(value: str) -> bool:
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in _SURROGATE.findall(value))


# --- the file ----------------------------------------------------------------------------


def _detect_format(path: Path, format: str | None) -> str:
    if format:
        if format not in SUPPORTED_FORMATS:
            raise InputError(f"unknown format '{format}'; supported: {', '.join(SUPPORTED_FORMATS)}")
        return format
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the extension '{path.suffix}'; "
            f"use one of {', '.join(sorted(_EXTENSIONS))} or pass {{format}}"
        )
    return fmt


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    try:
        with path.open("rb") as handle:
            while True:  # blank, without reading a large file whole
                block = handle.read(1 << 16)
                if not block:
                    raise InputError(f"{path}: the file is empty")
                if block.strip():
                    return
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None


_MAGIC = [
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"PK\x03\x04", "a zip archive; an .xlsx workbook is one: export it as CSV"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
]


def _open_text(path: Path) -> tuple[io.TextIOWrapper, list[str], bool]:
    """The file as a stream of str lines split on '\\n' only; undecodable bytes become
    surrogate escapes (U+DC80…U+DCFF) so each row can be judged on its own."""
    try:
        raw = path.open("rb")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    head = raw.peek(8192)[:8192] if hasattr(raw, "peek") else b""
    notes: list[str] = []
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(codecs.BOM_UTF32_LE):
        notes.append("decoded as UTF-16 (the file starts with a UTF-16 byte-order mark)")
        return io.TextIOWrapper(raw, encoding="utf-16", errors="strict", newline="\n"), notes, False
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raw.close()
            raise InputError(f"{path}: looks like a binary file ({what}), not text")
    if b"\x00" in head:
        raw.close()
        raise InputError(f"{path}: looks like a binary file (it contains NUL bytes), not text")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="\n"), notes, True


class _BadRow(dict):
    """A malformed row skipped with ``skip_bad_rows``: no fields; ``detail`` says what was wrong."""

    def __init__(self, detail: str):
        super().__init__()
        self.detail = detail


_SKIP_HINT = "; fix it or pass {skip_bad_rows} to skip bad rows"


class _Source:
    """Rows of one input file: iterating yields (line number, {column: value}); with
    ``skip_bad_rows``, a malformed row yields (line number, :class:`_BadRow`) instead of raising."""

    open_columns = False  # True: rows are objects whose keys may differ (JSON / JSONL)
    decoded_with_escapes = True
    skip_bad_rows = False

    def __init__(self, path: Path):
        self.path = path
        self.notes: list[str] = []
        self.all_keys: dict[str, None] = {}
        self._handle = None

    def columns(self, sample) -> list[str]:
        raise NotImplementedError

    def keep(self, text_column: str, other_columns: list[str]) -> None:
        """Only these columns are needed from now on (a hint; sources may ignore it)."""

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def _lines(self) -> Iterator[str]:
        try:
            for line in self._handle:
                yield line[:-1] if line.endswith("\n") else line
        except UnicodeDecodeError as err:  # only for UTF-16, which is decoded strictly
            raise InputError(f"{self.path}: not valid UTF-16 ({err.reason})") from None


class _DelimitedSource(_Source):
    def __init__(self, path: Path, sep: str):
        super().__init__(path)
        self.sep = sep
        self._handle, self.notes, self.decoded_with_escapes = _open_text(path)
        self._header: list[str] | None = None

    def columns(self, sample) -> list[str]:
        return list(self._header or [])

    def __iter__(self):
        kind = "TSV" if self.sep == "\t" else "CSV"
        limit = csv.field_size_limit()
        csv.field_size_limit(2**31 - 1)  # one field may hold a whole book
        reader = csv.reader(self._lines_with_ends(), delimiter=self.sep, strict=True)
        try:
            last = 0
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    start, last = last + 1, reader.line_num
                    # A quote never closed runs to the end of the file: no row after it can be told apart.
                    if self._header is None or not self.skip_bad_rows or "end of data" in str(err):
                        hint = _SKIP_HINT if self._header is not None and "end of data" not in str(err) else ""
                        raise InputError(f"{self.path}: cannot parse as {kind}: line {reader.line_num}: {err}"
                                         + hint) from None
                    yield start, _BadRow(f"{err}")
                    continue
                start, last = last + 1, reader.line_num
                if not fields:
                    continue  # a blank line is not a row
                if self._header is None:
                    self._header = _header_names(fields)
                    continue
                if len(fields) > len(self._header):
                    if self.skip_bad_rows:
                        yield start, _BadRow(f"{len(fields)} fields but the header has {len(self._header)}")
                        continue
                    raise InputError(
                        f"{self.path}: cannot parse as {kind}: line {start} has {len(fields)} fields but the header "
                        f"has {len(self._header)}; quote values that contain '{_show_sep(self.sep)}', "
                        "or pass {skip_bad_rows} to skip bad rows"
                    )
                yield start, dict(zip(self._header, fields))
        finally:
            csv.field_size_limit(limit)

    def _lines_with_ends(self) -> Iterator[str]:
        try:
            yield from self._handle
        except UnicodeDecodeError as err:
            raise InputError(f"{self.path}: not valid UTF-16 ({err.reason})") from None


def _show_sep(sep: str) -> str:
    return "\\t" if sep == "\t" else sep


def _header_names(fields: list[str]) -> list[str]:
    """Column names as pandas would give them: blanks 'Unnamed: i', repeats 'a.1'."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(fields):
        name = _replace_surrogates(name) if _SURROGATE.search(name) else name
        if not name.strip():
            name = f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            candidate = f"{name}.{seen[name]}"
            while candidate in seen:
                seen[name] += 1
                candidate = f"{name}.{seen[name]}"
            name = candidate
        seen.setdefault(name, 0)
        names.append(name)
    return names


class _JsonlSource(_Source):
    open_columns = True

    def __init__(self, path: Path):
        super().__init__(path)
        self._handle, self.notes, self.decoded_with_escapes = _open_text(path)

    def columns(self, sample) -> list[str]:
        return list(self.all_keys)

    def __iter__(self):
        for number, line in enumerate(self._lines(), start=1):
            if not line.strip():
                continue
            escaped = _SURROGATE.search(line) is not None  # undecodable bytes somewhere in the line
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if self.skip_bad_rows:
                    yield number, _BadRow(f"not valid JSON: {err.msg}")
                    continue
                raise InputError(f"{self.path}: line {number} is not valid JSON ({err.msg})" + _SKIP_HINT) from None
            except RecursionError:
                if self.skip_bad_rows:
                    yield number, _BadRow("nested too deeply to read")
                    continue
                raise InputError(f"{self.path}: line {number} is nested too deeply to read" + _SKIP_HINT) from None
            if not isinstance(record, dict):
                if self.skip_bad_rows:
                    yield number, _BadRow(f"{_kind(record)}, not a JSON object")
                    continue
                raise InputError(f"{self.path}: line {number} is not a JSON object" + _SKIP_HINT)
            if escaped and any(_SURROGATE.search(key) for key in record):  # undecodable bytes in a key
                record = {(_replace_surrogates(k) if _SURROGATE.search(k) else k): v for k, v in record.items()}
            for key in record:
                if key not in self.all_keys:
                    self.all_keys[key] = None
            yield number, record


class _JsonSource(_Source):
    open_columns = True

    def __init__(self, path: Path):
        super().__init__(path)
        self._handle, self.notes, self.decoded_with_escapes = _open_text(path)

    def columns(self, sample) -> list[str]:
        return list(self.all_keys)

    def __iter__(self):
        try:
            value = json.load(self._handle)  # an array has to be parsed whole
        except json.JSONDecodeError as err:
            raise InputError(f"{self.path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        except RecursionError:
            raise InputError(f"{self.path}: nested too deeply to read") from None
        except UnicodeDecodeError as err:
            raise InputError(f"{self.path}: not valid UTF-16 ({err.reason})") from None
        if not isinstance(value, list):
            raise InputError(f"{self.path}: a .json input must be an array of objects (use .jsonl for one object per line)")
        bad = next((i for i, v in enumerate(value, start=1) if not isinstance(v, dict)), None)
        if bad is not None and not self.skip_bad_rows:
            raise InputError(f"{self.path}: a .json input must be an array of objects (use .jsonl for one object per "
                             f"line); element {bad} is {_kind(value[bad - 1])}" + _SKIP_HINT)
        rows = []
        for position, record in enumerate(value, start=1):  # "line" for an array element: its position
            if not isinstance(record, dict):
                rows.append((position, _BadRow(f"element {position} is {_kind(record)}, not an object")))
                continue
            for key in record:
                self.all_keys.setdefault(key)
            rows.append((position, record))
        return iter(rows)


class _TxtSource(_Source):
    def __init__(self, path: Path):
        super().__init__(path)
        self._handle, self.notes, self.decoded_with_escapes = _open_text(path)

    def columns(self, sample) -> list[str]:
        return ["text"]

    def __iter__(self):
        for number, line in enumerate(self._lines(), start=1):
            yield number, {"text": line[:-1] if line.endswith("\r") else line}


class _ParquetSource(_Source):
    decoded_with_escapes = False

    def __init__(self, path: Path):
        super().__init__(path)
        with path.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise InputError(f"{path}: not a Parquet file")
        try:
            import pyarrow.parquet as pq

            self._file = pq.ParquetFile(path)
            self._names = [str(n) for n in self._file.schema_arrow.names]
        except Exception as err:  # pyarrow raises several unrelated types for corrupt files
            raise InputError(f"{path}: cannot read Parquet ({' '.join(str(err).split())[:200]})") from None
        self._wanted: list[str] | None = None
        self._consumed = 0

    def columns(self, sample) -> list[str]:
        return list(self._names)

    def keep(self, text_column, other_columns):
        self._wanted = list(dict.fromkeys([text_column, *[c for c in other_columns if c in self._names]]))

    def __iter__(self):
        # First pass: all columns until keep() is called; afterwards only the kept columns,
        # skipping the rows already handed out.
        line = 0
        try:
            for batch in self._file.iter_batches(batch_size=_PARQUET_BATCH):
                for record in batch.to_pylist():
                    line += 1
                    yield line, record
                    if self._wanted is not None:
                        yield from self._rest(line)
                        return
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{self.path}: cannot read Parquet ({' '.join(str(err).split())[:200]})") from None

    def _rest(self, done: int):
        line = 0
        for batch in self._file.iter_batches(batch_size=_PARQUET_BATCH, columns=self._wanted):
            if line + batch.num_rows <= done:
                line += batch.num_rows
                continue
            for record in batch.to_pylist():
                line += 1
                if line > done:
                    yield line, record

    def close(self) -> None:
        pass


def _open_source(path: Path, fmt: str, skip_bad_rows: bool = False) -> _Source:
    if fmt == "parquet":
        source = _ParquetSource(path)
    elif fmt in ("csv", "tsv"):
        source = _DelimitedSource(path, "\t" if fmt == "tsv" else ",")
    elif fmt == "jsonl":
        source = _JsonlSource(path)
    elif fmt == "json":
        source = _JsonSource(path)
    else:
        source = _TxtSource(path)
    source.skip_bad_rows = skip_bad_rows  # a TXT line or a Parquet row cannot be malformed
    return source


# --- choosing the text column ------------------------------------------------------


def _is_text_like(values: Iterable) -> bool:
    """Free text: mostly non-numeric strings, and not a short categorical label."""
    values = [v for v in values if isinstance(v, str) and v.strip()]
    if not values:
        return False
    non_numeric = [v for v in values if not _looks_numeric(v)]
    if len(non_numeric) < 0.5 * len(values):
        return False
    # Ids ("T0001") and labels ("refund") are single words; free text has several.
    mean_words = sum(len(v.split()) for v in non_numeric) / len(non_numeric)
    return mean_words >= 2


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _choose_text_column(columns: list[str], sample: list, requested: str | None, path: Path) -> str:
    if requested is not None:
        if requested not in columns:
            raise InputError(f"{path}: {{text_column}} '{requested}' not found; columns are: {', '.join(columns)}")
        return requested
    if len(columns) == 1:
        return columns[0]
    if "text" in columns:  # an explicit "text" column wins, even when it is all empty
        return "text"
    candidates = [c for c in columns if _is_text_like(record.get(c) for _, record in sample)]
    if len(candidates) == 1:
        return candidates[0]
    for name in _PREFERRED_TEXT_COLUMNS:
        if name in (candidates or columns):
            return name
    if not candidates:
        raise InputError(f"{path}: no column looks like free text; pass {{text_column}}, columns are: {', '.join(columns)}")
    raise InputError(
        f"{path}: several columns look like text ({', '.join(candidates)}); choose one with {{text_column}}"
    )
