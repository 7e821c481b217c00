"""Cluster quality of textclust's default pipeline against peer baselines, in one run.

For every corpus and label field in ../shared/data (goal from goals.json) this runs,
on the same first N rows (3000, as in ../shared/BASELINES.md):

- textclust (default): automatic K, offline explainer, exactly as `textclust run`;
- textclust (HDBSCAN auto K): the default before issue 16 (UMAP → HDBSCAN, calibrated
  thresholds, a second round on the leftovers), as `--clusterer hdbscan --reduction umap`:
  the baseline the automatic-K targets are measured against, in the same run;
- textclust (k = gold): the same pipeline told the gold number of clusters;
- tfidf_kmeans: TF-IDF (sublinear, min_df 2, English stop words) + k-means, k = gold;
- minilm_kmeans: the same MiniLM embeddings + k-means, k = gold.

Scores: ACC after Hungarian matching, NMI, ARI, coverage (uncovered/noise texts are
wrong for ACC and one cluster of their own for NMI/ARI, as in BASELINES.md), the
number of clusters found, and texts per second. Embeddings are computed once per
corpus (cached in the benchmark database) and their time is reported separately;
each method's texts/s counts the embedding time when the method uses embeddings.

    python bench/quality.py                 # all corpora, writes bench/results/quality.json
    python bench/quality.py --corpora syngoalex --max-rows 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textclust.embed import Embedder, embed_texts  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402
from textclust.ingest import corpus_from_texts  # noqa: E402
from textclust.config import RunConfig  # noqa: E402
from textclust.pipeline import Pipeline  # noqa: E402
from textclust.results import load_run  # noqa: E402
from textclust.store import Database  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
AUTO, BEFORE = "textclust (auto K)", "textclust (HDBSCAN auto K)"
FIXED, MINILM = "textclust (k = gold)", "minilm_kmeans (k = gold)"


def tfidf_kmeans(texts, k, seed):
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    X = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)


def minilm_kmeans(X, k, seed):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)


def run_textclust(db, corpus, goal, settings):
    """Returns per-row predicted cluster ids (-1 = uncovered) and the run's stats."""
    run_id = Pipeline(db, settings, progress=False).run(corpus, goal)
    result = load_run(db, run_id)
    predicted = [r["explanation_id"] if r["explanation_id"] is not None else -1 for r in result.rows]
    return predicted, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--corpora", help="comma-separated corpus names (default: all in goals.json)")
    parser.add_argument("--max-rows", type=int, default=3000)
    parser.add_argument("--db", default="/tmp/textclust_bench_quality.db", help="benchmark database (embedding cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = parser.parse_args()

    if not args.data.is_dir():
        sys.exit(f"bench/quality.py: {args.data} not found (the labelled corpora live in ../shared/data)")
    goals = json.loads((args.data / "goals.json").read_text())
    names = args.corpora.split(",") if args.corpora else list(goals)
    db = Database(args.db)
    embedder = Embedder(progress=False)
    records = []
    for name in names:
        rows = [json.loads(line) for line in (args.data / f"{name}.jsonl").open()][: args.max_rows]
        texts = [r["text"] for r in rows]
        corpus = corpus_from_texts(texts, name=name)
        db.save_corpus(corpus)
        start = time.perf_counter()
        X_unique, report = embed_texts(db, embedder, corpus.text_ids, [corpus.texts[t] for t in corpus.text_ids])
        embed_seconds = time.perf_counter() - start
        index = {t: i for i, t in enumerate(corpus.text_ids)}
        X = X_unique[[index[t] for t in corpus.row_text_ids]]  # one vector per row
        # Embedding cost per text, measured now or (if cached) from a fresh encode of 200 texts.
        if report.computed == 0:
            sample = texts[:200]
            t0 = time.perf_counter()
            embedder.encode(sample)
            per_text = (time.perf_counter() - t0) / len(sample)
        else:
            per_text = embed_seconds / report.computed
        embed_cost = per_text * len(texts)

        for field, goal in goals[name].items():
            gold = [str(r[field]) for r in rows]
            k_gold = len(set(gold))
            methods = []
            clusters_of = {}  # method -> the run's explanations (textclust runs only)
            t0 = time.perf_counter()
            predicted, result = run_textclust(db, corpus, goal, RunConfig.from_flat(random_state=args.seed))
            methods.append((AUTO, predicted, time.perf_counter() - t0 + embed_cost, result.stats))
            clusters_of[AUTO] = result.clusters
            t0 = time.perf_counter()
            before = RunConfig.from_flat(clusterer="hdbscan", reduction="umap", random_state=args.seed)
            predicted, result = run_textclust(db, corpus, goal, before)
            methods.append((BEFORE, predicted, time.perf_counter() - t0 + embed_cost, result.stats))
            clusters_of[BEFORE] = result.clusters
            t0 = time.perf_counter()
            predicted, result = run_textclust(db, corpus, goal, RunConfig.from_flat(k=k_gold, random_state=args.seed))
            methods.append((FIXED, predicted, time.perf_counter() - t0 + embed_cost, result.stats))
            clusters_of[FIXED] = result.clusters
            t0 = time.perf_counter()
            methods.append(("tfidf_kmeans (k = gold)", tfidf_kmeans(texts, k_gold, args.seed), time.perf_counter() - t0, {}))
            t0 = time.perf_counter()
            methods.append((MINILM, minilm_kmeans(X, k_gold, args.seed),
                            time.perf_counter() - t0 + embed_cost, {}))
            for method, predicted, seconds, stats in methods:
                scores = score_partition(gold, list(predicted))
                record = {
                    "corpus": name,
                    "field": field,
                    "goal": goal,
                    "n": len(texts),
                    "k_gold": k_gold,
                    "method": method,
                    **scores.to_dict(),
                    "seconds": round(seconds, 2),
                    "texts_per_second": round(len(texts) / seconds, 1),
                }
                if stats:
                    record["n_candidates"] = stats.n_candidates
                    record["rounds_used"] = stats.rounds_used
                    # Issue 15: how often each offline "mentions …" explanation is true of its texts.
                    truths = [c.truth for c in clusters_of[method] if c.truth is not None]
                    record["n_predicates"] = len(truths)
                    record["min_truth"] = round(min(truths), 4) if truths else None
                records.append(record)
                print(
                    f"{name:>18} {field:<6} {method:<26} ACC {scores.acc:.3f} NMI {scores.nmi:.3f} "
                    f"ARI {scores.ari:.3f} cov {scores.coverage:.2f} k {scores.n_clusters:>3} "
                    f"{record['texts_per_second']:>8.1f} texts/s",
                    flush=True,
                )

    print()
    print(markdown_table(records))
    print()
    print(summary_table(records))
    targets = automatic_k_targets(records)
    print()
    print(targets["table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "max_rows": args.max_rows,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "automatic_k_targets": {k: v for k, v in targets.items() if k != "table"},
        "records": records,
    }, indent=2))
    print(f"\nwrote {args.out}")


def markdown_table(records) -> str:
    lines = ["| corpus / field | n | k gold | method | ACC | NMI | ARI | coverage | k found | texts/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['corpus']} / {r['field']} | {r['n']} | {r['k_gold']} | {r['method']} | {r['acc']:.3f} | "
            f"{r['nmi']:.3f} | {r['ari']:.3f} | {r['coverage']:.2f} | {r['n_clusters']} | {r['texts_per_second']:.0f} |"
        )
    return "\n".join(lines)


def summary_table(records) -> str:
    methods = list(dict.fromkeys(r["method"] for r in records))
    lines = ["| method | mean ACC | mean NMI | mean ARI | mean coverage | fields |", "|---|---|---|---|---|---|"]
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        mean = {key: float(np.mean([r[key] for r in rs])) for key in ("acc", "nmi", "ari", "coverage")}
        lines.append(f"| {m} | {mean['acc']:.3f} | {mean['nmi']:.3f} | {mean['ari']:.3f} | {mean['coverage']:.2f} | {len(rs)} |")
    return "\n".join(lines)


def automatic_k_targets(records) -> dict:
    """Issue 16's targets for automatic K, the new default against the HDBSCAN baseline of the
    same run: K within 2× of gold on ≥ 10 fields; mean ACC and NMI ≥ 0.45 over the ``label``
    fields; no field's NMI more than 0.02 below the baseline's."""
    by = {(r["corpus"], r["field"], r["method"]): r for r in records}
    fields = list(dict.fromkeys((r["corpus"], r["field"]) for r in records))
    rows = [(f, by[(*f, AUTO)], by.get((*f, BEFORE))) for f in fields if (*f, AUTO) in by]
    within = [f for f, r, _ in rows if r["k_gold"] / 2 <= r["n_clusters"] <= 2 * r["k_gold"]]
    label_rows = [r for (c, field), r, _ in rows if field == "label"]
    mean_acc = float(np.mean([r["acc"] for r in label_rows])) if label_rows else float("nan")
    mean_nmi = float(np.mean([r["nmi"] for r in label_rows])) if label_rows else float("nan")
    regressions = [{"field": f"{c}/{field}", "nmi": r["nmi"], "baseline_nmi": b["nmi"]}
                   for (c, field), r, b in rows if b is not None and r["nmi"] < b["nmi"] - 0.02]
    lines = ["| automatic-K target (issue 16) | measured | met |", "|---|---|---|",
             f"| K within 2× of gold on ≥ 10 fields | {len(within)} of {len(rows)} | "
             f"{'yes' if len(within) >= 10 else 'NO'} |",
             f"| mean ACC over label fields ≥ 0.45 | {mean_acc:.3f} | {'yes' if mean_acc >= 0.45 else 'NO'} |",
             f"| mean NMI over label fields ≥ 0.45 | {mean_nmi:.3f} | {'yes' if mean_nmi >= 0.45 else 'NO'} |",
             f"| no field's NMI > 0.02 below HDBSCAN's | {len(regressions)} below: "
             + (", ".join(f"{x['field']} {x['nmi']:.3f} vs {x['baseline_nmi']:.3f}" for x in regressions) or "none")
             + f" | {'yes' if not regressions else 'NO'} |"]
    # Fixed K (issue 16, 4): textclust told the gold K against MiniLM + k-means, label fields.
    fixed = [by.get((c, field, FIXED)) for c, field in fields if field == "label"]
    peer = [by.get((c, field, MINILM)) for c, field in fields if field == "label"]
    fixed_acc, fixed_nmi, peer_acc, peer_nmi = (
        float(np.mean([r[key] for r in rs if r])) if any(rs) else float("nan")
        for rs, key in ((fixed, "acc"), (fixed, "nmi"), (peer, "acc"), (peer, "nmi")))
    lines.append(f"| k = gold: mean ACC / NMI (label) ≥ MiniLM + k-means | {fixed_acc:.3f} / {fixed_nmi:.3f} vs "
                 f"{peer_acc:.3f} / {peer_nmi:.3f} | {'yes' if fixed_acc >= peer_acc and fixed_nmi >= peer_nmi else 'NO'} |")
    # Truthful offline explanations (issue 15, 1): every "mentions …" explanation ≥ 0.9.
    truths = [(f"{r['corpus']}/{r['field']} {r['method']}", r["min_truth"]) for r in records
              if r.get("min_truth") is not None and r["method"] in (AUTO, FIXED)]
    lowest = min(truths, key=lambda x: x[1]) if truths else None
    n_pred = sum(r.get("n_predicates") or 0 for r in records if r["method"] in (AUTO, FIXED))
    lines.append(f"| every \"mentions …\" explanation true of ≥ 0.9 of its texts | {n_pred} predicates; lowest "
                 + (f"{lowest[1]:.3f} ({lowest[0]})" if lowest else "none") + f" | "
                 f"{'yes' if lowest is None or lowest[1] >= 0.9 else 'NO'} |")
    return {"within_2x": len(within), "fields": len(rows), "mean_acc_label": round(mean_acc, 4),
            "mean_nmi_label": round(mean_nmi, 4), "nmi_regressions": regressions,
            "fixed_k_label": {"acc": round(fixed_acc, 4), "nmi": round(fixed_nmi, 4)},
            "minilm_kmeans_label": {"acc": round(peer_acc, 4), "nmi": round(peer_nmi, 4)},
            "n_predicates": n_pred, "lowest_truth": lowest, "table": "\n".join(lines)}


if __name__ == "__main__":
    main()
