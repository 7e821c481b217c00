"""Latency a user feels (issue "Fast: a result in seconds", item 1), every figure from a fresh process.

In one bench run, on the shipped sample (data/complaints.csv) and on the first N texts of a
shared corpus (default 3,000 of ag_news), each measured as its own ``python`` process:

* ``textclust --help``;
* the first ``textclust run`` (empty database: the model loads and embeds every text);
* the cached re-run of the same command (``--new``, so it is computed again from the caches
  rather than reused as an identical finished run);
* plain ``SentenceTransformer.encode`` of the same texts (import, load, encode: what any tool
  pays to embed them);
* BERTopic's ``fit_transform`` on the same texts with the same precomputed embeddings (the
  peer a user would otherwise pick), its defaults with a seeded UMAP as in bench/quality.py.

It prints the wall times and the issue's ratios, with the load average, and writes JSON
(after every measurement, so a killed run keeps what it measured). Seconds depend on the
machine and its load; the ratios, measured in the same run, are the figures to read.

    .venv/bin/python bench/latency.py [--rows 3000] [--corpus ag_news] [--out bench/results/latency.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "data" / "complaints.csv"
SAMPLE_GOAL = "Cluster the complaints by why the customer is unhappy."
PY = sys.executable

ENCODE = r"""
import csv, sys, time
import numpy as np
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
from textclust.embed import resolve_model
texts = [r["text"] for r in csv.DictReader(open(sys.argv[1], encoding="utf-8")) if r["text"].strip()]
texts = list(dict.fromkeys(" ".join(t.split()) for t in texts))
model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
t1 = time.perf_counter()
X = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
t2 = time.perf_counter()
np.save(sys.argv[2], X.astype(np.float32))
with open(sys.argv[3], "w", encoding="utf-8") as f:
    f.write("\n".join(texts))
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""

BERTOPIC = r"""
import sys, time
import numpy as np
t0 = time.perf_counter()
from bertopic import BERTopic
from umap import UMAP
X = np.load(sys.argv[1])
texts = open(sys.argv[2], encoding="utf-8").read().split("\n")
umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=0)
t1 = time.perf_counter()
topics, _ = BERTopic(umap_model=umap_model).fit_transform(texts, embeddings=X)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {len(set(topics))}")
"""


def timed(argv: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of one fresh process, and its stdout; a failure stops the bench."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv[:6])} …\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def corpus_csv(name: str, rows: int, folder: Path) -> Path:
    """The first ``rows`` texts of a shared corpus as a CSV with a text column."""
    path = folder / f"{name}_{rows}.csv"
    with (SHARED / f"{name}.jsonl").open(encoding="utf-8") as f, path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text"])
        for _, line in zip(range(rows), f):
            writer.writerow([json.loads(line)["text"]])
    return path


def goal_of(name: str) -> str:
    goals = json.loads((SHARED / "goals.json").read_text()) if (SHARED / "goals.json").is_file() else {}
    entry = goals.get(name)
    if isinstance(entry, dict):
        entry = entry.get("label") or next(iter(entry.values()), None)
    return entry if isinstance(entry, str) else "Cluster the texts by their topic."


def measure(label: str, csv_path: Path, goal: str, folder: Path, env: dict) -> dict:
    """The first run, the cached re-run, plain encode and BERTopic on one corpus."""
    db = folder / f"{label}.db"
    run = [PY, "-m", "textclust", "run", str(csv_path), "--goal", goal, "--db", str(db), "--json"]
    out: dict = {"corpus": label}
    out["first_run_s"], first_json = timed(run, env)
    out["first_run_timings"] = json.loads(first_json).get("timings", {})
    out["rerun_s"], rerun_json = timed(run + ["--new"], env)
    out["rerun_timings"] = json.loads(rerun_json).get("timings", {})
    vectors, texts = folder / f"{label}.npy", folder / f"{label}.txt"
    out["encode_process_s"], encode_out = timed([PY, "-c", ENCODE, str(csv_path), str(vectors), str(texts)], env)
    out["encode_load_s"], out["encode_only_s"] = map(float, encode_out.split())
    out["bertopic_process_s"], bt_out = timed([PY, "-c", BERTOPIC, str(vectors), str(texts)], env)
    load, fit, n_topics = bt_out.split()
    out["bertopic_import_s"], out["bertopic_fit_transform_s"], out["bertopic_topics"] = float(load), float(fit), int(n_topics)
    # What textclust spends beyond embedding: the first run's wall less its embed stage (model
    # load included) less the process start-up that `--help` pays as well.
    out["first_run_embed_s"] = out["first_run_timings"].get("embed")
    return out


def ratios(m: dict, help_s: float) -> dict:
    beyond_embedding = m["first_run_s"] - (m["first_run_embed_s"] or 0.0) - help_s
    return {
        "rerun_over_first": round(m["rerun_s"] / m["first_run_s"], 3),
        "cluster_explain_store_over_bertopic_fit": round(beyond_embedding / m["bertopic_fit_transform_s"], 3),
        "first_run_beyond_plain_encode": round((m["first_run_s"] - m["encode_process_s"]) / m["first_run_s"], 3),
        "cluster_explain_store_s": round(beyond_embedding, 2),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=3000, help="texts of the shared corpus (default 3000)")
    p.add_argument("--corpus", default="ag_news", help="shared corpus (default ag_news)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency.json")
    args = p.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("TEXTCLUST_DB", None)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "load_average_start": list(os.getloadavg()), "measurements": {}, "complete": False}

    def save() -> None:
        result["load_average_now"] = list(os.getloadavg())
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="textclust-latency-") as tmp:
        folder = Path(tmp)
        help_s, _ = timed([PY, "-m", "textclust", "--help"], env)
        result["help_s"] = round(help_s, 3)
        save()
        targets = [("sample", SAMPLE, SAMPLE_GOAL)]
        if (SHARED / f"{args.corpus}.jsonl").is_file():
            targets.append((f"{args.corpus}_{args.rows}", corpus_csv(args.corpus, args.rows, folder), goal_of(args.corpus)))
        else:
            print(f"{SHARED} has no {args.corpus}.jsonl: the {args.rows}-text measurement is skipped")
        for label, path, goal in targets:
            m = measure(label, path, goal, folder, env)
            m["ratios"] = ratios(m, help_s)
            result["measurements"][label] = m
            save()
            print(f"{label}: first run {m['first_run_s']:.1f} s, re-run {m['rerun_s']:.1f} s, "
                  f"plain encode {m['encode_process_s']:.1f} s, BERTopic fit_transform {m['bertopic_fit_transform_s']:.1f} s",
                  flush=True)
    result["complete"] = True
    save()
    targets_text = {"rerun_over_first": "<= 0.25 (sample), <= 0.10 (3,000)",
                    "cluster_explain_store_over_bertopic_fit": "<= 0.3",
                    "first_run_beyond_plain_encode": "<= 0.15 (3,000)"}
    print(f"\n`textclust --help`: {help_s:.2f} s (target < 1 s on a quiet machine)")
    print(f"{'ratio':<42}" + "".join(f"{label:>16}" for label in result["measurements"]) + "   target")
    for key, target in targets_text.items():
        print(f"{key:<42}" + "".join(f"{m['ratios'][key]:>16.3f}" for m in result["measurements"].values())
              + f"   {target}")
    load = result["load_average_now"]
    print(f"\nload average {result['load_average_start'][0]:.2f} at the start, {load[0]:.2f} at the end; wrote {args.out}")


if __name__ == "__main__":
    main()
