"""The user's own candidate explanations ("NAME: explanation"), always kept in the result.

Given one at a time (the ``candidate`` strings: on the command line ``--candidate "refund:
asks for money back"``, repeatable) or in a file (``candidates_file``; ``--candidates FILE``):

* ``.txt`` — one candidate per line, ``NAME: explanation``; a line without ``NAME:`` is
  named after its first words. Blank lines and lines starting with ``#`` are skipped.
* ``.json`` — a list of ``{"name": ..., "explanation": ...}`` objects.
* ``.csv`` — columns ``name`` and ``explanation``.

Anything unusable raises :class:`~textclust.errors.InputError` with a one-line message
naming the file and line, before any database is touched. Messages name the two sources as
the settings ``{candidate}`` and ``{candidates_file}`` (see :mod:`textclust.errors`), so the
command line shows its flags.

From Python the candidates are the ``candidates=`` keyword of :func:`textclust.run`: a list of
``{"name", "explanation"}`` dicts or :class:`UserCandidate` objects.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, register_settings

NAME_WORDS = 4  # a line without "NAME:" is named after this many first words
MAX_NAME = 80
_NAMED = re.compile(r"^\s*([^:]{1,%d}?)\s*:\s*(.*\S)\s*$" % MAX_NAME)

# One "NAME: explanation" string, and a file of them (the command line: --candidate, --candidates).
CANDIDATE, CANDIDATES_FILE = "{candidate}", "{candidates_file}"
register_settings(("candidate", "candidates_file"))


@dataclass(frozen=True)
class UserCandidate:
    name: str
    explanation: str

    def to_dict(self) -> dict:
        return {"name": self.name, "explanation": self.explanation}


def parse_user_candidate(line: str, where: str = CANDIDATE) -> UserCandidate:
    """``"NAME: explanation"`` → UserCandidate; without a ``NAME:`` the first words name it."""
    text = " ".join(str(line).split())
    if not text:
        raise InputError(f"{where}: empty explanation")
    match = _NAMED.match(text)
    if match and match.group(1).strip() and len(match.group(1).split()) <= 6:
        return UserCandidate(match.group(1).strip(), match.group(2).strip())
    if text.endswith(":") or text.startswith(":"):
        raise InputError(f"{where}: '{text[:60]}' has a name or an explanation missing around ':'")
    return UserCandidate(" ".join(text.split()[:NAME_WORDS]), text)


def read_user_candidates_file(path: str | Path) -> list[UserCandidate]:
    """User candidates from a .txt, .json or .csv file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{CANDIDATES_FILE} {p}: no such file")
    try:
        content = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{CANDIDATES_FILE} {p}: not UTF-8 text") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        candidates = _from_json(p, content)
    elif suffix == ".csv":
        candidates = _from_csv(p, content)
    elif suffix in (".txt", ""):
        candidates = [parse_user_candidate(line, f"{p}:{n}") for n, line in enumerate(content.splitlines(), 1)
                      if line.strip() and not line.lstrip().startswith("#")]
    else:
        raise InputError(f"{CANDIDATES_FILE} {p}: unknown file type '{suffix}' (use .txt, .json or .csv)")
    if not candidates:
        raise InputError(f"{CANDIDATES_FILE} {p}: no explanations in the file")
    return candidates


def _from_json(p: Path, content: str) -> list[UserCandidate]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as err:
        raise InputError(f"{CANDIDATES_FILE} {p}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(data, list):
        raise InputError(f"{CANDIDATES_FILE} {p}: expected a JSON list of {{\"name\", \"explanation\"}} objects")
    candidates = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("explanation"), str) \
                or not item["explanation"].strip():
            raise InputError(f"{CANDIDATES_FILE} {p}: item {n} needs a non-empty \"explanation\" string")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise InputError(f"{CANDIDATES_FILE} {p}: item {n}: \"name\" must be a string")
        candidates.append(_candidate(name, item["explanation"], f"{p}: item {n}"))
    return candidates


def _from_csv(p: Path, content: str) -> list[UserCandidate]:
    reader = csv.DictReader(content.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "explanation" not in columns:
        raise InputError(f"{CANDIDATES_FILE} {p}: needs columns 'name' and 'explanation' "
                         f"(found: {', '.join(columns) or 'none'})")
    reader.fieldnames = columns
    candidates = []
    for n, row in enumerate(reader, 2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if not (row.get("explanation") or "").strip():
            raise InputError(f"{CANDIDATES_FILE} {p}:{n}: empty explanation")
        candidates.append(_candidate(row.get("name"), row["explanation"], f"{p}:{n}"))
    return candidates


def _candidate(name: str | None, explanation: str, where: str) -> UserCandidate:
    explanation = " ".join(explanation.split())
    name = " ".join((name or "").split())
    if not name:
        return parse_user_candidate(explanation, where)
    if len(name) > MAX_NAME:
        raise InputError(f"{where}: name longer than {MAX_NAME} characters")
    return UserCandidate(name, explanation)


def collect_user_candidates(options: tuple[str, ...] | list[str] = (),
                            path: str | None = None) -> list[UserCandidate]:
    """All user candidates from ``candidate`` strings and a ``candidates_file``; names must be unique."""
    candidates = [parse_user_candidate(o, f"{CANDIDATE} '{o[:40]}'") for o in options or ()]
    if path:
        candidates += read_user_candidates_file(path)
    seen = set()
    for c in candidates:
        if c.name.lower() in seen:
            raise InputError(f"two candidate explanations are named '{c.name}'; names must be unique")
        seen.add(c.name.lower())
    return candidates
