#!/usr/bin/env python
"""Scale: `textclust run` end to end on 10k / 50k / 100k texts with the offline defaults.

For each size N this script

  1. builds a corpus of N distinct texts: texts drawn with replacement from real labelled
     corpora read by path from ``<repo>/../shared/data`` (default: ag_news, stackoverflow
     and banking77 — news, programming questions and bank-customer messages, so the
     clustering has structure), each lightly perturbed (a word dropped, two neighbouring
     words swapped, a word repeated, a number or a same-label word added) so that every
     text is distinct after textclust's normalisation and really has to be embedded. The
     corpus is written as JSONL (``id``, ``text``, ``label``) into a temporary folder
     outside the repository (the shared corpora are never copied into it). Smaller sizes
     are prefixes of larger ones (one seeded draw);
  2. runs ``python -m textclust run FILE --goal GOAL --db DB --json`` in a child process
     on a FRESH database per size, so the embedding cache is empty and every embedding
     is computed (nothing is reused between sizes or from earlier runs);
  3. records wall time around the child, the run's own per-stage timings (``timings``:
     embed / cluster / explain …; ``other`` = wall − stages: start-up, imports, ingest,
     storing, printing), peak RSS of the child (GNU ``/usr/bin/time -v`` "Maximum resident
     set size", else ``getrusage(RUSAGE_CHILDREN)`` of a one-child wrapper), the ingest time
     alone (``read_corpus`` in a separate process), counts and coverage;
  4. prints a table and writes ``bench/results/scale.json`` with time per text per stage
     and growth ratios: time per text of each size ÷ time per text of the baseline size
     (the smallest size, by default 10k) measured in the same invocation. A ratio near 1
     means linear growth; well above 1 means worse than linear.

``--profile`` runs the children under cProfile and lists the 25 functions with the most
cumulative time (the .prof files stay in the work folder with ``--keep``).

Usage:
    .venv/bin/python bench/scale.py [--sizes 10000,50000,100000] [--sources a.jsonl,b.jsonl]
                                    [--goal TEXT] [--profile] [--keep] [--workdir DIR] [--out FILE]

Embedding dominates: 100k texts take roughly 10–60 minutes on 2 cores depending on text
length and load. The load average before and after each run is recorded: figures taken on
a busy machine are slower than the code is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT_SOURCES = ("ag_news.jsonl", "stackoverflow.jsonl", "banking77.jsonl")
DEFAULT_SIZES = (10_000, 50_000, 100_000)
GOAL = "Cluster the texts by what they are about."
SEED = 0
MEMORY_TARGET_GIB = 4.0


# --- the corpus ---------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """Close enough to textclust's normalisation to keep texts distinct (whitespace, NFC)."""
    import unicodedata

    return " ".join(unicodedata.normalize("NFC", text).split())


def read_sources(paths: list[Path]) -> list[tuple[str, str]]:
    """(text, label) pairs, label prefixed by its corpus so that labels never collide."""
    pairs = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    text = _norm(str(row.get("text") or ""))
                    if text:
                        pairs.append((text, f"{path.stem}:{row.get('label')}"))
    if not pairs:
        raise SystemExit(f"no texts in {', '.join(map(str, paths))}")
    return pairs


def _perturb(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    kind = rng.randrange(5)
    if kind == 0 and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif kind == 1 and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:
        i = rng.randrange(len(words))
        words.insert(i, words[i])
    elif kind == 3:
        words.insert(rng.randrange(len(words) + 1), str(rng.randrange(2, 10_000)))
    else:
        words.append(rng.choice(vocabulary))
    return " ".join(words)


def build_corpus(pairs: list[tuple[str, str]], n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """n distinct (text, label): the originals first (shuffled), then perturbed draws."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for text, label in pairs:
        by_label.setdefault(label, []).append(text)
    vocab = {label: sorted({w for t in texts[:200] for w in t.split() if w.isalpha() and len(w) > 3}) or ["again"]
             for label, texts in by_label.items()}
    originals = list(dict.fromkeys(pairs))
    rng.shuffle(originals)
    out, seen = [], set()
    for text, label in originals:
        if len(out) == n:
            return out
        if text not in seen:
            seen.add(text)
            out.append((text, label))
    attempts = 0
    while len(out) < n:
        text, label = pairs[rng.randrange(len(pairs))]
        candidate = _norm(_perturb(text, rng, vocab[label]))
        attempts += 1
        if candidate and candidate not in seen:
            seen.add(candidate)
            out.append((candidate, label))
        if attempts > 50 * n:
            raise SystemExit("could not make enough distinct texts; add --sources")
    return out


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i, (text, label) in enumerate(rows):
            handle.write(json.dumps({"id": f"t{i}", "text": text, "label": label}, ensure_ascii=False) + "\n")


# --- running ------------------------------------------------------------------------------------------

_WRAPPER = r"""
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"Maximum resident set size (kbytes): {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
print(f"Exit status: {code}", file=sys.stderr)
sys.exit(code)
"""


def _measured(command: list[str]) -> tuple[list[str], str]:
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time and subprocess.run([gnu_time, "-v", "true"], capture_output=True).returncode == 0:
        return [gnu_time, "-v", *command], "GNU /usr/bin/time -v: Maximum resident set size of the child"
    return [sys.executable, "-c", _WRAPPER, *command], "getrusage(RUSAGE_CHILDREN).ru_maxrss of a one-child wrapper"


def _peak_rss_mib(stderr: str) -> float | None:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(match.group(1)) / 1024 if match else None


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("TEXTCLUST_DB", None)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def ingest_seconds(path: Path) -> float:
    code = ("import sys, time; from textclust.ingest import read_corpus; t = time.perf_counter(); "
            "c = read_corpus(sys.argv[1]); print(time.perf_counter() - t, c.n_texts)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=_env(),
                         check=True).stdout.split()
    return float(out[0])


def run_one(n: int, corpus: Path, workdir: Path, goal: str, profile: bool) -> dict:
    db = workdir / f"scale-{n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    textclust = [sys.executable]
    prof = workdir / f"scale-{n}.prof"
    if profile:
        textclust += ["-m", "cProfile", "-o", str(prof)]
    textclust += ["-m", "textclust", "run", str(corpus), "--goal", goal, "--db", str(db), "--json"]
    command, memory_method = _measured(textclust)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=workdir)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    record = {
        "size": n,
        "returncode": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mib": _peak_rss_mib(proc.stderr),
        "memory_method": memory_method,
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "profiled": profile,
    }
    if proc.returncode != 0:
        record["stderr_tail"] = proc.stderr.strip().splitlines()[-15:]
        return record
    result = json.loads(proc.stdout)
    stats, timings = result.get("stats") or {}, result.get("timings") or {}
    record.update({
        "run_id": result.get("run_id"),
        "status": result.get("status"),
        "timings": timings,
        "other_s": round(wall - sum(v for v in timings.values() if isinstance(v, (int, float))), 2),
        "n_texts": (result.get("corpus") or {}).get("n_texts"),
        "embeddings_computed": stats.get("embeddings_computed"),
        "embeddings_cached": stats.get("embeddings_cached"),
        "embeddings_truncated": stats.get("embeddings_truncated"),
        "n_clusters": stats.get("n_clusters"),
        "n_selected": stats.get("n_selected"),
        "coverage": stats.get("coverage"),
        "db_size_mib": round(db.stat().st_size / 2**20, 1),
        "progress_lines": [line for line in proc.stderr.splitlines() if not line.startswith("\t")][:12],
    })
    if profile and prof.exists():
        record["profile_top"] = _profile_top(prof)
    return record


def _profile_top(path: Path, limit: int = 25) -> list[str]:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("cumulative").print_stats(limit)
    return [line for line in buffer.getvalue().splitlines() if line.strip()][-limit:]


# --- reporting ------------------------------------------------------------------------------------------


def add_ratios(records: list[dict]) -> None:
    ok = [r for r in records if r.get("returncode") == 0]
    if not ok:
        return
    base = min(ok, key=lambda r: r["size"])
    stages = sorted({k for r in ok for k in r["timings"]})

    def per_text(record, key):
        value = record["wall_s"] if key == "wall" else record["other_s"] if key == "other" else record["timings"].get(key)
        return None if value is None else value / record["size"]

    for record in ok:
        record["ms_per_text"] = {k: round(1000 * per_text(record, k), 3) for k in ["wall", *stages, "other"]
                                 if per_text(record, k) is not None}
        record["growth_vs_baseline"] = {"baseline_size": base["size"]}
        for key in ["wall", *stages, "other"]:
            mine, theirs = per_text(record, key), per_text(base, key)
            if mine is not None and theirs:
                record["growth_vs_baseline"][key] = round(mine / theirs, 3)


def table(records: list[dict]) -> str:
    stages = sorted({k for r in records for k in r.get("timings", {})})
    head = ["size", "wall s", *[f"{s} s" for s in stages], "other s", "peak RSS MiB", "ms/text", "growth",
            "clusters", "coverage", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        if r.get("returncode") != 0:
            lines.append(f"| {r['size']:,} | FAILED (exit {r.get('returncode')}) |")
            continue
        growth = r.get("growth_vs_baseline", {}).get("wall")
        cells = [f"{r['size']:,}", f"{r['wall_s']:.0f}", *[f"{r['timings'].get(s, 0):.1f}" for s in stages],
                 f"{r['other_s']:.1f}", f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else "?",
                 f"{r['ms_per_text']['wall']:.1f}", f"{growth:.2f}" if growth else "",
                 str(r.get("n_clusters")), f"{r.get('coverage', 0):.3f}",
                 f"{r['loadavg_1m_before_after'][0]:.1f}→{r['loadavg_1m_before_after'][1]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        info["nproc_available"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated corpus sizes; the smallest is the growth baseline")
    parser.add_argument("--sources", default=",".join(str(SHARED / s) for s in DEFAULT_SOURCES),
                        help="comma-separated JSONL corpora (field 'text', optional 'label') to draw from")
    parser.add_argument("--goal", default=GOAL)
    parser.add_argument("--profile", action="store_true", help="run the children under cProfile")
    parser.add_argument("--workdir", help="folder for corpora and databases (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    args = parser.parse_args()

    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    sources = [Path(s) for s in args.sources.split(",") if s.strip()]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise SystemExit(f"source corpora not found: {', '.join(missing)}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="textclust-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if REPO in workdir.resolve().parents or workdir.resolve() == REPO:
        raise SystemExit("--workdir must be outside the repository")

    pairs = read_sources(sources)
    rows = build_corpus(pairs, max(sizes))
    n_originals = min(len({t for t, _ in pairs}), max(sizes))
    print(f"corpus: {len(pairs):,} source texts from {', '.join(s.name for s in sources)}; "
          f"{max(sizes):,} distinct texts built ({n_originals:,} originals first, then perturbed draws); "
          f"work folder {workdir}", file=sys.stderr)
    print("embedding cache: a fresh database per size, so every embedding is computed", file=sys.stderr)

    records = []
    try:
        for n in sizes:
            corpus = workdir / f"corpus-{n}.jsonl"
            write_jsonl(corpus, rows[:n])
            ingest = ingest_seconds(corpus)
            print(f"[{dt.datetime.now():%H:%M:%S}] size {n:,}: running (load {os.getloadavg()[0]:.1f}) …",
                  file=sys.stderr)
            record = run_one(n, corpus, workdir, args.goal, args.profile)
            record["ingest_s"] = round(ingest, 3)
            record["corpus_mib"] = round(corpus.stat().st_size / 2**20, 1)
            records.append(record)
            print(f"[{dt.datetime.now():%H:%M:%S}] size {n:,}: exit {record['returncode']}, wall {record['wall_s']:.0f}s, "
                  f"peak RSS {record.get('peak_rss_mib') or 0:.0f} MiB", file=sys.stderr)
            if record.get("profile_top"):
                print("\n".join(record["profile_top"]), file=sys.stderr)
            add_ratios(records)
            _write(args, records, sizes, sources, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(records))
    print(f"\nwrote {args.out}")


def _write(args, records, sizes, sources, workdir) -> None:
    peaks = [r["peak_rss_mib"] for r in records if r.get("peak_rss_mib")]
    payload = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": f"python -m textclust run CORPUS.jsonl --goal {args.goal!r} --db FRESH.db --json",
        "settings": "offline defaults (all-MiniLM-L6-v2, UMAP 10-d, HDBSCAN, 2 rounds)",
        "sizes": sizes,
        "sources": [str(s) for s in sources],
        "corpus_construction": ("originals of the sources first (shuffled, seed 0), then draws with replacement, "
                                "each lightly perturbed (drop / swap / repeat a word, add a number or a same-label "
                                "word), all distinct; smaller sizes are prefixes of larger ones"),
        "embedding_cache": "fresh database per size: every embedding computed, nothing reused",
        "memory_target_gib": MEMORY_TARGET_GIB,
        "peak_rss_max_gib": round(max(peaks) / 1024, 2) if peaks else None,
        "within_memory_target": all(p / 1024 <= MEMORY_TARGET_GIB for p in peaks) if peaks else None,
        "growth": "ms_per_text per stage and growth_vs_baseline = (time per text) / (time per text of the "
                  "smallest size in this invocation); 1.0 = linear",
        "runs": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
