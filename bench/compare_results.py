"""Are two benchmark results the same, apart from time? For showing that a refactor changed
no figure: run a bench on the old code and on the new code (same data, same settings), then

    python bench/compare_results.py OLD.json NEW.json [--out diff.json]

It walks both JSON trees and lists every value that differs, leaving out what measures time
or the machine (keys named like wall, seconds, texts_per_second, timings, date, machine,
latency, explain, per-stage times, load_average, cache_dir) and the run logs' timing-only
lines. Exit status 0 when nothing else differs, 1 otherwise; the table printed says how
many values were compared.

For quality work, where figures are meant to change, ``--quality`` prints instead how each
(corpus, field, method) of bench/quality.py's records moved: new − old of ACC, NMI and the
number of clusters/explanations found, and the mean differences per method (the same table
as ``bench/quality.py --compare OLD.json``):

    python bench/compare_results.py --quality OLD.json NEW.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# load_average and cache_dir describe the machine, not the result.
TIME_KEYS = re.compile(r"(wall|seconds|per_second|timings|^date$|machine|latency|^explain(_noisy)?$|^t_|_s$"
                       r"|^load_average|^cache_dir$)")


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


# --- quality deltas (bench/quality.py records) -------------------------------------------------

QUALITY_KEYS = ("acc", "nmi", "n_clusters")


def quality_deltas(old_records: list[dict], new_records: list[dict]) -> list[dict]:
    """One row per (corpus, field, method) present in both, in the new records' order: the new
    value and new − old of each of QUALITY_KEYS, and both row counts (n)."""
    old = {(r["corpus"], r["field"], r["method"]): r for r in old_records}
    rows = []
    for r in new_records:
        o = old.get((r["corpus"], r["field"], r["method"]))
        if o is None:
            continue
        row = {"corpus": r["corpus"], "field": r["field"], "method": r["method"], "n": r.get("n"), "old_n": o.get("n")}
        for key in QUALITY_KEYS:
            row[key] = r[key]
            row[f"d_{key}"] = round(r[key] - o[key], 4)
        rows.append(row)
    return rows


def mean_deltas(rows: list[dict]) -> dict[str, dict]:
    """Per method: the number of fields compared and the mean of each difference."""
    result = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        result[method] = {"fields": len(mine),
                          **{f"d_{k}": round(sum(r[f"d_{k}"] for r in mine) / len(mine), 4) for k in QUALITY_KEYS}}
    return result


def deltas_table(rows: list[dict]) -> str:
    """Markdown: per field and method the new value (new − old), then the mean differences."""
    if not rows:
        return "no (corpus, field, method) in both files"
    lines = ["| corpus / field | method | ACC (Δ) | NMI (Δ) | clusters found (Δ) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['corpus']} / {r['field']} | {r['method']} | {r['acc']:.3f} ({r['d_acc']:+.3f}) | "
                     f"{r['nmi']:.3f} ({r['d_nmi']:+.3f}) | {r['n_clusters']} ({r['d_n_clusters']:+d}) |")
    for method, m in mean_deltas(rows).items():
        lines.append(f"| mean Δ over {m['fields']} fields | {method} | {m['d_acc']:+.3f} | {m['d_nmi']:+.3f} | "
                     f"{m['d_n_clusters']:+.1f} |")
    sizes = {(r["old_n"], r["n"]) for r in rows if r["old_n"] != r["n"]}
    if sizes:
        lines.append("\nnote: rows per corpus differ (old → new: "
                     + ", ".join(f"{a} → {b}" for a, b in sorted(sizes, key=str))
                     + "): the differences mix data size with code changes")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, help="write the comparison as JSON")
    parser.add_argument("--quality", action="store_true",
                        help="bench/quality.py results: print new − old of ACC, NMI and clusters found")
    args = parser.parse_args()
    if args.quality:
        rows = quality_deltas(json.loads(args.old.read_text())["records"], json.loads(args.new.read_text())["records"])
        print(f"{args.new} − {args.old}\n" + deltas_table(rows))
        if args.out:
            args.out.write_text(json.dumps({"old": str(args.old), "new": str(args.new), "deltas": rows,
                                            "mean_deltas": mean_deltas(rows)}, indent=2) + "\n")
        return
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
