"""Size and load time of the HTML report for 1k / 10k / 50k texts.

Synthetic runs, no embedding model: each corpus is made of sentences drawn from
topic vocabularies, its vectors are Gaussian blobs (plus 5% scattered outliers)
stored in the embedding cache beforehand, and the real pipeline runs on it
(k-means, k = 12, offline explainer). Then `write_report` writes the HTML, Markdown
and JSON reports, and headless Chromium (as in tests/test_report_browser.py) opens
the HTML report from disk three times; the median time from navigation until the
page has loaded and both charts are drawn is reported.

    .venv/bin/python bench/report_size.py [--sizes 1000 10000 50000] [--map umap|pca]

Prints a Markdown table and writes bench/results/report_size.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODEL = "bench-fake-32d"
N_TOPICS = 12
WORDS = ("refund delivery password invoice battery screen shipping courier login account price discount "
         "warranty repair size colour subscription cancel app crash email support manager store voucher "
         "order parcel broken late charged twice code reset update missing wrong item box damaged").split()
FILLER = ("i the my and it was is to a of for have not but this that with on they we again still never "
          "after days weeks today please your when what why").split()


def synthetic_corpus(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dim = 32
    centres = rng.normal(size=(N_TOPICS, dim))
    topic_words = [rng.choice(WORDS, size=6, replace=False) for _ in range(N_TOPICS)]
    texts, vectors = [], []
    for i in range(n):
        t = int(rng.integers(N_TOPICS))
        outlier = rng.random() < 0.05
        length = int(rng.integers(12, 40))
        words = [str(rng.choice(topic_words[t])) if rng.random() < 0.35 else str(rng.choice(FILLER))
                 for _ in range(length)]
        texts.append(f"{' '.join(words).capitalize()} (ticket {i}).")
        v = rng.normal(size=dim) if outlier else centres[t] + 0.45 * rng.normal(size=dim)
        vectors.append(v / np.linalg.norm(v))
    return texts, np.asarray(vectors, dtype=np.float32)


def make_run(folder: Path, n: int):
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.store import open_store

    texts, X = synthetic_corpus(n)
    db = open_store(folder / f"bench_{n}.db")
    corpus = corpus_from_texts(texts, name=f"synthetic-{n}")
    db.save_corpus(corpus)
    db.store_embeddings(MODEL, corpus.text_ids, X)
    start = time.perf_counter()
    run_id = Pipeline(db, RunConfig.from_flat(k=N_TOPICS, reduction="none", embedding_model=MODEL, rounds=1)).run(
        corpus, "what the ticket is about")
    return db, run_id, time.perf_counter() - start


def measure(sizes: list[int], reduction: str, loads: int = 3) -> list[dict]:
    from test_report_browser import browser_missing, chromium, open_report
    from textclust.report.html import write_report
    from textclust.report.model import ReportOptions

    missing = browser_missing()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            db, run_id, pipeline_s = make_run(folder, n)
            row = {"texts": n, "pipeline_s": round(pipeline_s, 1), "map": reduction}
            for fmt in ("html", "md", "json"):
                path = folder / f"report_{n}.{fmt}"
                start = time.perf_counter()
                write_report(db, run_id, path, fmt, ReportOptions(reduction=reduction))
                row[f"{fmt}_write_s"] = round(time.perf_counter() - start, 2)
                row[f"{fmt}_mb"] = round(path.stat().st_size / 1e6, 2)
            if missing:
                row["load_s"] = None
                print(f"  (no browser: {missing})", file=sys.stderr)
            else:
                times = []
                for _ in range(loads):
                    with chromium() as driver:
                        times.append(open_report(driver, folder / f"report_{n}.html"))
                        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                        assert not errors, errors
                row["load_s"] = round(statistics.median(times), 2)
                row["load_s_all"] = [round(t, 2) for t in times]
            db.close()
            print(f"  {n} texts: {row}", file=sys.stderr)
            results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--map", choices=["umap", "pca"], default="umap")
    args = parser.parse_args()
    results = measure(args.sizes, args.map)
    print("| texts | HTML size | HTML load in Chromium (median of 3) | writing the HTML | Markdown | JSON |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        load = "n/a" if r["load_s"] is None else f"{r['load_s']:.2f} s"
        print(f"| {r['texts']:,} | {r['html_mb']:.1f} MB | {load} | {r['html_write_s']:.1f} s "
              f"({r['map']} map) | {r['md_mb']:.2f} MB | {r['json_mb']:.1f} MB |")
    out = ROOT / "bench" / "results" / "report_size.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
