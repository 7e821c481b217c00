"""Cluster quality of textclust's default pipeline against peer baselines, in one run.

For every corpus and label field in ../shared/data (goal from goals.json) this runs,
on the same first N rows (3000, as in ../shared/BASELINES.md):

- textclust (default): automatic K, offline explainer, exactly as `textclust run`;
- textclust (HDBSCAN auto K): the default before issue 16 (UMAP → HDBSCAN, calibrated
  thresholds, a second round on the leftovers), as `--clusterer hdbscan --reduction umap`:
  the baseline the automatic-K targets are measured against, in the same run;
- textclust (k = gold): the same pipeline told the gold number of clusters;
- tfidf_kmeans: TF-IDF (sublinear, min_df 2, English stop words) + k-means, k = gold;
- minilm_kmeans: the same MiniLM embeddings + k-means, k = gold;
- bertopic: BERTopic defaults on the same embeddings with a seeded UMAP (BASELINES.md).

``--quick`` is the inner loop for quality work: the first 1,000 rows, textclust auto K,
textclust k = gold, minilm_kmeans and bertopic (no HDBSCAN-before, no tfidf), written to
bench/results/quality_quick.json. Its texts/s leave the embedding out (the full run's
count it, measured on the model even when the vectors come from the cache).

The methods that never see the goal (tfidf, minilm_kmeans, bertopic) are computed once
per corpus (and k) and scored against every field. Scores: ACC after Hungarian matching,
NMI, ARI, coverage (uncovered/noise texts, BERTopic's topic -1 included, are wrong for
ACC and one cluster of their own for NMI/ARI, as in BASELINES.md), the number of
clusters/explanations found, and texts per second.

Embeddings (texts, goals, candidate phrases) come from a persistent cache
(bench/embed_cache.py; --cache-dir, else $TEXTCLUST_BENCH_CACHE, else
~/.cache/textclust/bench), so a warm run never loads the model; the runs themselves go
to a throw-away database (--db to keep them). The JSON is rewritten after every field
("complete": false until the end), so a killed run keeps what it measured.

    python bench/quality.py --quick                        # ≤ 10 min fresh, ≤ 5 min warm (2 cores)
    python bench/quality.py --quick --compare OLD.json     # and print new − old per field
    python bench/quality.py                                # full: writes bench/results/quality.json
    python bench/quality.py --corpora syngoalex --max-rows 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

STARTED = time.perf_counter()  # the wall time reported counts the heavy imports below

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare_results import deltas_table, mean_deltas, quality_deltas  # noqa: E402
from bench.embed_cache import CachedEmbedder, EmbeddingCache, default_cache_dir  # noqa: E402
from bench.memo_cluster import MemoClusterer  # noqa: E402
from textclust.config import RunConfig  # noqa: E402
from textclust.embed import embed_texts  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402
from textclust.ingest import corpus_from_texts  # noqa: E402
from textclust.pipeline import Pipeline  # noqa: E402
from textclust.results import load_run  # noqa: E402
from textclust.store import open_store  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
AUTO, BEFORE = "textclust (auto K)", "textclust (HDBSCAN auto K)"
FIXED, MINILM = "textclust (k = gold)", "minilm_kmeans (k = gold)"
TFIDF, BERTOPIC = "tfidf_kmeans (k = gold)", "bertopic"
FULL_METHODS = (AUTO, BEFORE, FIXED, TFIDF, MINILM, BERTOPIC)
QUICK_METHODS = (AUTO, FIXED, MINILM, BERTOPIC)
QUICK_ROWS = 1000
GOAL_BLIND = (TFIDF, MINILM, BERTOPIC)
EMBEDS = (AUTO, BEFORE, FIXED, MINILM, BERTOPIC)  # methods whose cost includes the embeddings


def textclust_settings(method: str, k_gold: int, seed: int) -> RunConfig:
    if method == BEFORE:
        return RunConfig.from_flat(clusterer="hdbscan", reduction="umap", random_state=seed)
    if method == FIXED:
        return RunConfig.from_flat(k=k_gold, random_state=seed)
    return RunConfig.from_flat(random_state=seed)


# --- the goal-blind methods -------------------------------------------------------------------


def tfidf_kmeans(texts, X, k, seed):
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    T = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(T)


def minilm_kmeans(texts, X, k, seed):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)


def bertopic_topics(texts, X, k, seed):
    """BERTopic 0.17 defaults on our embeddings, UMAP seeded as in BASELINES.md; ``k`` unused.
    Topic -1 (its outliers) is what score_partition counts as "no cluster"."""
    from bertopic import BERTopic
    from umap import UMAP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap: "n_jobs overridden to 1 by setting random_state" (intended)
        umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
        topics, _ = BERTopic(umap_model=umap_model).fit_transform(list(texts), embeddings=X)
    return np.asarray(topics)


BLIND = {TFIDF: tfidf_kmeans, MINILM: minilm_kmeans, BERTOPIC: bertopic_topics}


class GoalBlind:
    """One corpus's goal-blind partitions, each computed once (per k where k matters) and
    handed to every field: they cannot depend on the goal, so recomputing them per field
    would only cost time (BERTopic: seconds per field)."""

    def __init__(self, texts: list[str], X: np.ndarray, seed: int):
        self.texts, self.X, self.seed = texts, X, seed
        self._done: dict = {}

    def predict(self, method: str, k: int) -> tuple[np.ndarray, float]:
        """(labels, seconds the first computation took)."""
        key = (method, None if method == BERTOPIC else k)
        if key not in self._done:
            t0 = time.perf_counter()
            labels = BLIND[method](self.texts, self.X, k, self.seed)
            self._done[key] = (labels, time.perf_counter() - t0)
        return self._done[key]


# --- textclust ------------------------------------------------------------------------------


def run_textclust(db, embedder, corpus, goal, settings: RunConfig):
    """Per-row predicted cluster ids (-1 = uncovered) and the run's result. The clustering sees
    only the embeddings, not the goal, so a corpus's fields share its fits (MemoClusterer)."""
    clusterer = MemoClusterer.for_config(db, settings)
    run_id = Pipeline(db, settings, progress=False, embedder=embedder, clusterer=clusterer).run(corpus, goal)
    result = load_run(db, run_id)
    predicted = [r["explanation_number"] if r["explanation_number"] is not None else -1 for r in result.rows]
    return predicted, result


def textclust_extras(result) -> dict:
    truths = [c.truth for c in result.clusters if c.truth is not None]
    return {
        "n_candidates": result.stats.n_candidates,
        "rounds_used": result.stats.rounds_used,
        # Issue 15: how often each offline "mentions …" explanation is true of its texts.
        "n_predicates": len(truths),
        "min_truth": round(min(truths), 4) if truths else None,
    }


# --- one corpus, one field ----------------------------------------------------------------------


class CorpusData:
    """A corpus's first rows, stored and embedded once, with its goal-blind partitions."""

    def __init__(self, data_dir: Path, name: str, max_rows: int, db, embedder, seed: int, embed_cost: bool):
        with (data_dir / f"{name}.jsonl").open() as f:
            self.rows = [json.loads(line) for _, line in zip(range(max_rows), f)]
        self.name = name
        self.texts = [r["text"] for r in self.rows]
        self.corpus = corpus_from_texts(self.texts, name=name)
        db.save_corpus(self.corpus)
        computed_before = embedder.computed
        t0 = time.perf_counter()
        ids = self.corpus.text_ids
        X_unique, _ = embed_texts(db, embedder, ids, [self.corpus.texts[t] for t in ids])
        self.embed_seconds = time.perf_counter() - t0
        self.computed = embedder.computed - computed_before
        index = {t: i for i, t in enumerate(ids)}
        self.X = X_unique[[index[t] for t in self.corpus.row_text_ids]]  # one vector per row
        self.embed_cost = self._embedding_cost(embedder) if embed_cost else 0.0
        self.blind = GoalBlind(self.texts, self.X, seed)

    def _embedding_cost(self, embedder) -> float:
        """The model's time for all rows: measured now, or (if cached) on a fresh encode of 200 texts."""
        if self.computed:
            return self.embed_seconds / self.computed * len(self.texts)
        sample = self.texts[:200]
        t0 = time.perf_counter()
        embedder.encode_uncached(sample)
        return (time.perf_counter() - t0) / len(sample) * len(self.texts)

    def info(self) -> dict:
        return {"n": len(self.texts), "embeddings_computed": self.computed,
                "embed_seconds": round(self.embed_seconds, 2)}


def measure_field(data: CorpusData, field: str, goal: str, methods, db, embedder, seed: int) -> list[dict]:
    """Every method's record for one label field, printed as measured."""
    gold = [str(r[field]) for r in data.rows]
    k_gold = len(set(gold))
    records = []
    for method in methods:
        extras = {}
        if method in GOAL_BLIND:
            predicted, seconds = data.blind.predict(method, k_gold)
        else:
            t0 = time.perf_counter()
            predicted, result = run_textclust(db, embedder, data.corpus, goal, textclust_settings(method, k_gold, seed))
            seconds = time.perf_counter() - t0
            extras = textclust_extras(result)
        seconds += data.embed_cost if method in EMBEDS else 0.0
        scores = score_partition(gold, list(predicted))
        record = {"corpus": data.name, "field": field, "goal": goal, "n": len(gold), "k_gold": k_gold,
                  "method": method, **scores.to_dict(), "seconds": round(seconds, 2),
                  "texts_per_second": round(len(gold) / max(seconds, 1e-9), 1), **extras}
        records.append(record)
        print(f"{data.name:>18} {field:<6} {method:<26} ACC {scores.acc:.3f} NMI {scores.nmi:.3f} "
              f"ARI {scores.ari:.3f} cov {scores.coverage:.2f} k {scores.n_clusters:>3}/{k_gold:<3} "
              f"{seconds:7.1f} s", flush=True)
    return records


# --- the results file ---------------------------------------------------------------------------


def save_results(path: Path, payload: dict) -> None:
    """Write atomically (temp file, then os.replace): a run killed mid-write leaves the last
    complete file, never a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def results_payload(meta: dict, records: list[dict], complete: bool, started: float, **final) -> dict:
    """What save_results writes after every field (``complete`` False) and at the end."""
    return {"complete": complete, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta,
            "fields_done": len({(r["corpus"], r["field"]) for r in records}),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()], **final, "records": records}


def load_records(path: Path) -> list[dict]:
    """The records of a results file, ours or the old full format (any "records" list)."""
    return json.loads(path.read_text())["records"]


@contextmanager
def run_database(path: str | None):
    """The database the runs go to: ``path``, else a temporary one removed at the end (runs
    would only pile up in the cache)."""
    with tempfile.TemporaryDirectory(prefix="textclust-quality-") as folder:
        db = open_store(path or Path(folder) / "runs.db")
        try:
            yield db
        finally:
            db.close()


# --- main -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"the inner loop: first {QUICK_ROWS} rows, {', '.join(QUICK_METHODS)}")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--corpora", help="comma-separated corpus names (default: all in goals.json)")
    parser.add_argument("--max-rows", type=int, help=f"rows per corpus (default 3000; --quick {QUICK_ROWS})")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="persistent embedding cache (default $TEXTCLUST_BENCH_CACHE or ~/.cache/textclust/bench)")
    parser.add_argument("--db", help="keep the runs in this textclust database (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/quality.json; "
                                                 "--quick: bench/results/quality_quick.json)")
    parser.add_argument("--compare", type=Path, metavar="OLD.json",
                        help="print the differences (new − old) of ACC, NMI and clusters found against OLD.json")
    args = parser.parse_args(argv)
    args.max_rows = args.max_rows or (QUICK_ROWS if args.quick else 3000)
    args.out = args.out or RESULTS / ("quality_quick.json" if args.quick else "quality.json")
    args.cache_dir = args.cache_dir or default_cache_dir()
    return args


def main(argv=None) -> None:
    started, load_start = STARTED, [round(x, 2) for x in os.getloadavg()]
    args = parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"bench/quality.py: {args.data} not found (the labelled corpora live in ../shared/data)")
    if args.compare and not args.compare.is_file():
        sys.exit(f"bench/quality.py: --compare {args.compare}: no such file")
    old = load_records(args.compare) if args.compare else None  # now: --out may be the same file
    goals = json.loads((args.data / "goals.json").read_text())
    names = args.corpora.split(",") if args.corpora else list(goals)
    methods = QUICK_METHODS if args.quick else FULL_METHODS
    meta = {"mode": "quick" if args.quick else "full", "machine": {"nproc": os.cpu_count(),
            "python": platform.python_version()}, "max_rows": args.max_rows, "seed": args.seed,
            "methods": list(methods), "texts_per_second_include_embedding": not args.quick,
            "cache_dir": str(args.cache_dir), "load_average_start": load_start, "corpora": {}}
    cache = EmbeddingCache(args.cache_dir)
    embedder = CachedEmbedder(cache, model=RunConfig().embedding.model, progress=False)
    records: list[dict] = []
    with run_database(args.db) as db:
        for name in names:
            data = CorpusData(args.data, name, args.max_rows, db, embedder, args.seed, embed_cost=not args.quick)
            meta["corpora"][name] = data.info()
            print(f"{name}: {len(data.texts)} rows, {data.computed} embeddings computed, "
                  f"{data.embed_seconds:.1f} s", flush=True)
            for field, goal in goals[name].items():
                records += measure_field(data, field, goal, methods, db, embedder, args.seed)
                save_results(args.out, results_payload(meta, records, False, started))
            MemoClusterer.forget()  # the next corpus has other embeddings: nothing to share
    cache.close()
    # Proof that a warm run never needed the model (texts, goals and candidate phrases cached).
    meta.update(strings_encoded=embedder.computed, model_loaded=embedder._model is not None)
    finish(args, meta, records, old, started)


def finish(args, meta: dict, records: list[dict], old, started: float) -> None:
    if not args.quick:
        print("\n" + markdown_table(records))
    print("\nall fields\n" + means_table(records))
    print("\nlabel fields\n" + means_table([r for r in records if r["field"] == "label"]))
    targets = automatic_k_targets(records)
    print("\n" + targets["table"])
    final = {"automatic_k_targets": {k: v for k, v in targets.items() if k != "table"}}
    if old is not None:
        deltas = quality_deltas(old, records)
        print(f"\ncompared with {args.compare} (new − old)\n" + deltas_table(deltas))
        final["comparison"] = {"old": str(args.compare), "mean_deltas": mean_deltas(deltas)}
    payload = results_payload(meta, records, True, started, **final)
    save_results(args.out, payload)
    print(f"\n{meta['strings_encoded']} strings encoded by the model"
          + ("" if meta["model_loaded"] else " (the model was never loaded: everything came from the cache)"))
    print(f"wrote {args.out}: {payload['fields_done']} fields in {payload['wall_seconds']:.0f} s wall, "
          f"load average {' '.join(map(str, payload['load_average']))} "
          f"(at the start {' '.join(map(str, meta['load_average_start']))})")


# --- tables -----------------------------------------------------------------------------------


def markdown_table(records) -> str:
    lines = ["| corpus / field | n | k gold | method | ACC | NMI | ARI | coverage | k found | texts/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['corpus']} / {r['field']} | {r['n']} | {r['k_gold']} | {r['method']} | {r['acc']:.3f} | "
            f"{r['nmi']:.3f} | {r['ari']:.3f} | {r['coverage']:.2f} | {r['n_clusters']} | {r['texts_per_second']:.0f} |"
        )
    return "\n".join(lines)


def means_table(records) -> str:
    """Per method: mean ACC, NMI, ARI, coverage, mean clusters found against mean gold count,
    and on how many fields the count is within 2× of gold."""
    lines = ["| method | fields | mean ACC | mean NMI | mean ARI | mean coverage | k found / gold (mean) | "
             "k within 2× |", "|---|---|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == m]
        mean = {key: float(np.mean([r[key] for r in rs])) for key in ("acc", "nmi", "ari", "coverage", "n_clusters",
                                                                       "k_gold")}
        within = sum(r["k_gold"] / 2 <= r["n_clusters"] <= 2 * r["k_gold"] for r in rs)
        lines.append(f"| {m} | {len(rs)} | {mean['acc']:.3f} | {mean['nmi']:.3f} | {mean['ari']:.3f} | "
                     f"{mean['coverage']:.2f} | {mean['n_clusters']:.1f} / {mean['k_gold']:.1f} | {within} |")
    return "\n".join(lines)


def automatic_k_targets(records) -> dict:
    """Issue 16's targets for automatic K, the new default against the HDBSCAN baseline of the
    same run: K within 2× of gold on ≥ 10 fields; mean ACC and NMI ≥ 0.45 over the ``label``
    fields; no field's NMI more than 0.02 below the baseline's (not measured in --quick)."""
    by = {(r["corpus"], r["field"], r["method"]): r for r in records}
    fields = list(dict.fromkeys((r["corpus"], r["field"]) for r in records))
    rows = [(f, by[(*f, AUTO)], by.get((*f, BEFORE))) for f in fields if (*f, AUTO) in by]
    within = [f for f, r, _ in rows if r["k_gold"] / 2 <= r["n_clusters"] <= 2 * r["k_gold"]]
    label_rows = [r for (c, field), r, _ in rows if field == "label"]
    mean_acc = float(np.mean([r["acc"] for r in label_rows])) if label_rows else float("nan")
    mean_nmi = float(np.mean([r["nmi"] for r in label_rows])) if label_rows else float("nan")
    lines = ["| automatic-K target (issue 16) | measured | met |", "|---|---|---|",
             f"| K within 2× of gold on ≥ 10 fields | {len(within)} of {len(rows)} | "
             f"{'yes' if len(within) >= 10 else 'NO'} |",
             f"| mean ACC over label fields ≥ 0.45 | {mean_acc:.3f} | {'yes' if mean_acc >= 0.45 else 'NO'} |",
             f"| mean NMI over label fields ≥ 0.45 | {mean_nmi:.3f} | {'yes' if mean_nmi >= 0.45 else 'NO'} |"]
    measured = any(b is not None for _, _, b in rows)
    regressions = [{"field": f"{c}/{field}", "nmi": r["nmi"], "baseline_nmi": b["nmi"]}
                   for (c, field), r, b in rows if b is not None and r["nmi"] < b["nmi"] - 0.02]
    if measured:
        lines.append(f"| no field's NMI > 0.02 below HDBSCAN's | {len(regressions)} below: "
                     + (", ".join(f"{x['field']} {x['nmi']:.3f} vs {x['baseline_nmi']:.3f}" for x in regressions)
                        or "none") + f" | {'yes' if not regressions else 'NO'} |")
    else:
        lines.append("| no field's NMI > 0.02 below HDBSCAN's | not measured in --quick | – |")
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
            "mean_nmi_label": round(mean_nmi, 4), "nmi_regressions": regressions if measured else None,
            "fixed_k_label": {"acc": round(fixed_acc, 4), "nmi": round(fixed_nmi, 4)},
            "minilm_kmeans_label": {"acc": round(peer_acc, 4), "nmi": round(peer_nmi, 4)},
            "n_predicates": n_pred, "lowest_truth": lowest, "table": "\n".join(lines)}


if __name__ == "__main__":
    main()
