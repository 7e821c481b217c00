"""Are two benchmark results the same, apart from time? For showing that a refactor changed
no figure: run a bench on the old code and on the new code (same data, same settings), then

    python bench/compare_results.py OLD.json NEW.json [--out diff.json]

It walks both JSON trees and lists every value that differs, leaving out what measures time
or the machine (keys named like wall, seconds, texts_per_second, timings, date, machine,
latency, explain, per-stage times) and the run logs' timing-only lines. Exit status 0 when
nothing else differs, 1 otherwise; the table printed says how many values were compared.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TIME_KEYS = re.compile(r"(wall|seconds|per_second|timings|^date$|machine|latency|^explain(_noisy)?$|^t_|_s$)")


def differences(old, new, path: str = "") -> tuple[list[dict], int]:
    """(differences, number of leaf values compared)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found, compared = [], 0
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}/{key}"
            if TIME_KEYS.search(str(key)):
                continue
            if key not in old or key not in new:
                found.append({"path": where, "old": old.get(key, "<absent>"), "new": new.get(key, "<absent>")})
                continue
            more, n = differences(old[key], new[key], where)
            found += more
            compared += n
        return found, compared
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [{"path": path, "old": f"{len(old)} items", "new": f"{len(new)} items"}], 1
        found, compared = [], 0
        for i, (a, b) in enumerate(zip(old, new)):
            more, n = differences(a, b, f"{path}[{i}]")
            found += more
            compared += n
        return found, compared
    return ([] if old == new else [{"path": path, "old": old, "new": new}]), 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, help="write the comparison as JSON")
    args = parser.parse_args()
    found, compared = differences(json.loads(args.old.read_text()), json.loads(args.new.read_text()))
    print(f"{args.old} vs {args.new}: {compared} values compared (time and machine left out), "
          f"{len(found)} differ")
    for d in found[:50]:
        print(f"  {d['path']}: {str(d['old'])[:60]!s} -> {str(d['new'])[:60]!s}")
    if args.out:
        args.out.write_text(json.dumps({"old": str(args.old), "new": str(args.new), "compared": compared,
                                        "differences": found}, indent=2, default=str) + "\n")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
