"""Stage 1 — ingest: read CSV / TSV / JSONL / JSON / TXT / Parquet into a :class:`Corpus`.

A corpus keeps *every* input row (so exports line up with the user's file) but each
distinct text only once: rows point at texts by a content hash. Whitespace is
normalised before hashing, so "a  b" and "a b" are the same text. Empty texts are
kept as rows with no text and counted.

All validation happens here, before anything touches the database, so bad input
never changes stored data.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InputError

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


def normalize_text(value: object) -> str:
    """Unicode NFC, all runs of whitespace to one space, stripped. Non-strings → ''/str."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    text = value if isinstance(value, str) else str(value)
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_id(text: str) -> str:
    """Stable id of a normalised text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Corpus:
    """The ingested input: rows in file order, distinct texts once each."""

    name: str
    source: str
    format: str
    text_column: str
    id_column: str | None
    row_keys: list[str]
    row_text_ids: list[str | None]  # None: the row's text was empty
    texts: dict[str, str]  # text id -> normalised text, in first-seen order
    columns: list[str] = field(default_factory=list)
    extra: dict[str, list] = field(default_factory=dict)  # requested extra columns, per row

    @property
    def n_rows(self) -> int:
        return len(self.row_keys)

    @property
    def n_texts(self) -> int:
        return len(self.texts)

    @property
    def n_empty(self) -> int:
        return sum(1 for t in self.row_text_ids if t is None)

    @property
    def n_duplicate_rows(self) -> int:
        """Rows whose (non-empty) text already appeared in an earlier row."""
        return self.n_rows - self.n_empty - self.n_texts

    @property
    def fingerprint(self) -> str:
        """Identity of the corpus content: same rows and texts → same fingerprint."""
        h = hashlib.sha256()
        h.update(self.text_column.encode())
        for key, tid in zip(self.row_keys, self.row_text_ids):
            h.update(f"\x1f{key}\x1e{tid or ''}".encode())
        return h.hexdigest()[:32]

    @property
    def text_ids(self) -> list[str]:
        return list(self.texts)


def read_corpus(
    path: str | Path,
    text_column: str | None = None,
    id_column: str | None = None,
    extra_columns: tuple[str, ...] = (),
    format: str | None = None,
) -> Corpus:
    """Read and validate an input file. Raises :class:`InputError` with a one-line message."""
    path = Path(path)
    fmt = _detect_format(path, format)
    frame = _read_frame(path, fmt)
    if len(frame) == 0:
        raise InputError(f"{path}: no rows (the file has a header or structure but no data)")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns

    column = _choose_text_column(frame, text_column, path)
    for name, option in [(id_column, "--id-column")] + [(c, "column") for c in extra_columns]:
        if name is not None and name not in columns:
            raise InputError(f"{path}: {option} '{name}' not found; columns are: {', '.join(columns)}")

    texts: dict[str, str] = {}
    row_text_ids: list[str | None] = []
    for value in frame[column].tolist():
        text = normalize_text(value)
        if not text:
            row_text_ids.append(None)
            continue
        tid = text_id(text)
        texts.setdefault(tid, text)
        row_text_ids.append(tid)
    if not texts:
        raise InputError(f"{path}: all {len(frame)} rows have an empty text in column '{column}'")

    if id_column is not None:
        row_keys = [normalize_text(v) or str(i) for i, v in enumerate(frame[id_column].tolist())]
    else:
        row_keys = [str(i) for i in range(len(frame))]
    extra = {c: frame[c].tolist() for c in extra_columns}
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
    )


def corpus_from_texts(texts: list[str], name: str = "texts") -> Corpus:
    """Build a corpus from an in-memory list of strings (the Python API's entry point)."""
    row_text_ids: list[str | None] = []
    unique: dict[str, str] = {}
    for value in texts:
        text = normalize_text(value)
        tid = text_id(text) if text else None
        if tid:
            unique.setdefault(tid, text)
        row_text_ids.append(tid)
    if not unique:
        raise InputError(f"{name}: all {len(texts)} texts are empty")
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
    )


# --- reading -------------------------------------------------------------------


def _detect_format(path: Path, format: str | None) -> str:
    if format:
        if format not in SUPPORTED_FORMATS:
            raise InputError(f"unknown format '{format}'; supported: {', '.join(SUPPORTED_FORMATS)}")
        return format
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the extension '{path.suffix}'; "
            f"use one of {', '.join(sorted(_EXTENSIONS))} or pass --format"
        )
    return fmt


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    if not data.strip():
        raise InputError(f"{path}: the file is empty")
    return data


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise InputError(f"{path}: looks like a binary file (it contains NUL bytes), not text")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} on line {line}); re-save the file as UTF-8"
        ) from None


def _read_frame(path: Path, fmt: str) -> pd.DataFrame:
    data = _read_bytes(path)
    if fmt == "parquet":
        return _read_parquet(path, data)
    text = _decode(path, data)
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, text, "\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return _read_jsonl(path, text)
    if fmt == "json":
        return _read_json(path, text)
    return pd.DataFrame({"text": _lines(text)})


def _lines(text: str) -> list[str]:
    """Split on line ends only (str.splitlines also splits on U+2028, form feeds…,
    which may legitimately appear inside a text or a JSON string)."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it does not start a new one
    return lines


def _read_delimited(path: Path, text: str, sep: str) -> pd.DataFrame:
    try:
        # Everything as strings: ids like "007" must survive, and NaN handling is ours.
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as err:
        detail = " ".join(str(err).split())
        raise InputError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {detail}") from None


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _read_json(path: Path, text: str) -> pd.DataFrame:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{path}: a .json input must be an array of objects (use .jsonl for one object per line)")
    return pd.DataFrame.from_records(value)


def _read_parquet(path: Path, data: bytes) -> pd.DataFrame:
    if not data.startswith(b"PAR1"):
        raise InputError(f"{path}: not a Parquet file")
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise InputError(f"{path}: cannot read Parquet ({' '.join(str(err).split())[:200]})") from None


# --- choosing the text column ------------------------------------------------------


def _is_text_like(series: pd.Series) -> bool:
    """Free text: mostly non-numeric strings, and not a short categorical label."""
    values = [v for v in series.tolist() if isinstance(v, str) and v.strip()]
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


def _choose_text_column(frame: pd.DataFrame, requested: str | None, path: Path) -> str:
    columns = list(frame.columns)
    if requested is not None:
        if requested not in columns:
            raise InputError(f"{path}: --text-column '{requested}' not found; columns are: {', '.join(columns)}")
        return requested
    if len(columns) == 1:
        return columns[0]
    if "text" in columns:  # an explicit "text" column wins, even when it is all empty
        return "text"
    candidates = [c for c in columns if _is_text_like(frame[c])]
    if len(candidates) == 1:
        return candidates[0]
    for name in _PREFERRED_TEXT_COLUMNS:
        if name in (candidates or columns):
            return name
    if not candidates:
        raise InputError(f"{path}: no column looks like free text; pass --text-column, columns are: {', '.join(columns)}")
    raise InputError(
        f"{path}: several columns look like text ({', '.join(candidates)}); choose one with --text-column"
    )
