"""Seeded explanations: the user's own candidate explanations ("NAME: explanation").

Given on the command line (``--candidate "refund: asks for money back"``, repeatable) or
in a file (``--candidates FILE``):

* ``.txt`` — one seed per line, ``NAME: explanation``; a line without ``NAME:`` is named
  after its first words. Blank lines and lines starting with ``#`` are skipped.
* ``.json`` — a list of ``{"name": ..., "explanation": ...}`` objects.
* ``.csv`` — columns ``name`` and ``explanation``.

Anything unusable raises :class:`~textclust.errors.InputError` with a one-line message
naming the file and line, before any database is touched.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

NAME_WORDS = 4  # a line without "NAME:" is named after this many first words
MAX_NAME = 80
_NAMED = re.compile(r"^\s*([^:]{1,%d}?)\s*:\s*(.*\S)\s*$" % MAX_NAME)


@dataclass(frozen=True)
class Seed:
    name: str
    explanation: str

    def to_dict(self) -> dict:
        return {"name": self.name, "explanation": self.explanation}


def parse_seed(line: str, where: str = "--candidate") -> Seed:
    """``"NAME: explanation"`` → Seed; without a ``NAME:`` the first words name it."""
    text = " ".join(str(line).split())
    if not text:
        raise InputError(f"{where}: empty explanation")
    match = _NAMED.match(text)
    if match and match.group(1).strip() and len(match.group(1).split()) <= 6:
        return Seed(match.group(1).strip(), match.group(2).strip())
    if text.endswith(":") or text.startswith(":"):
        raise InputError(f"{where}: '{text[:60]}' has a name or an explanation missing around ':'")
    return Seed(" ".join(text.split()[:NAME_WORDS]), text)


def read_seed_file(path: str | Path) -> list[Seed]:
    """Seeds from a .txt, .json or .csv file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--candidates {p}: no such file")
    try:
        content = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"--candidates {p}: not UTF-8 text") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        seeds = _from_json(p, content)
    elif suffix == ".csv":
        seeds = _from_csv(p, content)
    elif suffix in (".txt", ""):
        seeds = [parse_seed(line, f"{p}:{n}") for n, line in enumerate(content.splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
    else:
        raise InputError(f"--candidates {p}: unknown file type '{suffix}' (use .txt, .json or .csv)")
    if not seeds:
        raise InputError(f"--candidates {p}: no explanations in the file")
    return seeds


def _from_json(p: Path, content: str) -> list[Seed]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as err:
        raise InputError(f"--candidates {p}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(data, list):
        raise InputError(f"--candidates {p}: expected a JSON list of {{\"name\", \"explanation\"}} objects")
    seeds = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("explanation"), str) \
                or not item["explanation"].strip():
            raise InputError(f"--candidates {p}: item {n} needs a non-empty \"explanation\" string")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise InputError(f"--candidates {p}: item {n}: \"name\" must be a string")
        seeds.append(_seed(name, item["explanation"], f"{p}: item {n}"))
    return seeds


def _from_csv(p: Path, content: str) -> list[Seed]:
    reader = csv.DictReader(content.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "explanation" not in columns:
        raise InputError(f"--candidates {p}: needs columns 'name' and 'explanation' (found: {', '.join(columns) or 'none'})")
    reader.fieldnames = columns
    seeds = []
    for n, row in enumerate(reader, 2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if not (row.get("explanation") or "").strip():
            raise InputError(f"--candidates {p}:{n}: empty explanation")
        seeds.append(_seed(row.get("name"), row["explanation"], f"{p}:{n}"))
    return seeds


def _seed(name: str | None, explanation: str, where: str) -> Seed:
    explanation = " ".join(explanation.split())
    name = " ".join((name or "").split())
    if not name:
        return parse_seed(explanation, where)
    if len(name) > MAX_NAME:
        raise InputError(f"{where}: name longer than {MAX_NAME} characters")
    return Seed(name, explanation)


def collect_seeds(options: tuple[str, ...] | list[str] = (), path: str | None = None) -> list[Seed]:
    """All seeds from ``--candidate`` values and a ``--candidates`` file; names must be unique."""
    seeds = [parse_seed(o, f"--candidate '{o[:40]}'") for o in options or ()]
    if path:
        seeds += read_seed_file(path)
    seen = set()
    for s in seeds:
        if s.name.lower() in seen:
            raise InputError(f"two candidate explanations are named '{s.name}'; names must be unique")
        seen.add(s.name.lower())
    return seeds
