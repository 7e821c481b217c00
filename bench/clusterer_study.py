"""Measurement study: which clusterer (fixed K) and which automatic-K rule should textclust use?

On the same cached all-MiniLM-L6-v2 embeddings of the first N rows of every corpus in
../shared/data (default 1000), for every label field (label, label2, label3):

- baseline: sklearn KMeans(K = gold, n_init=10, random_state=seed) on the raw embeddings
  (what textclust does today when told K);
- fixed-K candidates (K = gold): spectral clustering on a symmetric k-nearest-neighbour
  cosine graph (Ng-Jordan-Weiss: top eigenvectors of D^-1/2 A D^-1/2, rows normalised,
  k-means), with the neighbour count as hyperparameter, on raw and on centred embeddings;
  agglomerative Ward; k-means on centred (re-normalised) embeddings; k-means on
  PCA-whitened embeddings (dimension as hyperparameter);
- automatic-K candidates (no K given): eigengap of the kNN-graph normalised Laplacian;
  cosine silhouette of k-means (raw embeddings) over a K grid; cosine silhouette of the
  spectral partitions over the same grid; Louvain modularity communities of the kNN graph
  (resolution as hyperparameter); ``auto_silc``: K by the cosine silhouette of k-means
  (n_init=3) on centred embeddings over the grid, then the partition at that K from
  k-means or a spectral candidate (the partitioner as hyperparameter).

Every goal-blind partition is computed once per corpus and scored against each field with
textclust.evaluate.score_partition (as bench/quality.py does). Leave-one-corpus-out: for
every method family with a hyperparameter, each held-out corpus gets the setting that
maximises mean(ACC + NMI) over the ``label`` fields of the six other corpora.

    OMP_NUM_THREADS=1 PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/clusterer_study.py
    ... --max-rows 3000 --out bench/results/clusterer_study_3000.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed_cache import CachedEmbedder, EmbeddingCache, default_cache_dir  # noqa: E402
from textclust.config import RunConfig  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402
from textclust.ingest import corpus_from_texts  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
CORPORA = ("syngoalex", "ag_news", "banking77", "amazon_multidomain", "stackoverflow", "goemotions",
           "20newsgroups")
FIELDS = ("label", "label2", "label3")
BASE = "kmeans"

# Neighbour-count rules for the kNN graph: fixed counts and rules adapting to n.
NEIGHBOUR_RULES = {
    "m5": lambda n: 5, "m10": lambda n: 10, "m15": lambda n: 15, "m30": lambda n: 30, "m50": lambda n: 50,
    "log2n": lambda n: int(math.ceil(math.log2(n))),          # 10 at 1000, 12 at 3000
    "sqrt/2": lambda n: int(round(math.sqrt(n) / 2)),          # 16 at 1000, 27 at 3000
}
PCA_DIMS = (16, 32, 64, 128)
LOUVAIN = [(m, g) for m in ("m10", "m15", "m30") for g in (0.25, 0.5, 1.0)]
AUTO_SPECTRAL_RULES = ("m10", "m15", "m30", "sqrt/2")
LIGHT_SKIP = ("m5", "m10")  # --light: neighbour rules that lost at 1000 rows
SILC_PARTITIONERS = [(v, r) for v in ("spectral", "spectral_centred") for r in ("m15", "m30", "m50", "sqrt/2")]


def k_grid(n: int) -> list[int]:
    """Candidate K for the automatic rules, capped at n / 10."""
    grid = [2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 50, 60, 70, 80, 90, 100, 120, 150]
    return [k for k in grid if k <= max(2, n // 10)]


# --- embeddings -----------------------------------------------------------------------------


def load_corpus(name: str, max_rows: int, embedder) -> tuple[list[dict], np.ndarray]:
    """The first rows and one embedding per row, built as bench/quality.py builds them
    (corpus_from_texts normalises and de-duplicates; the model sees corpus.texts)."""
    with (SHARED / f"{name}.jsonl").open() as f:
        rows = [json.loads(line) for _, line in zip(range(max_rows), f)]
    corpus = corpus_from_texts([r["text"] for r in rows], name=name)
    ids = list(corpus.texts)
    X_unique = embedder.encode([corpus.texts[t] for t in ids])
    index = {t: i for i, t in enumerate(ids)}
    if any(t is None for t in corpus.row_text_ids):
        raise SystemExit(f"{name}: empty texts in the first rows; not handled by this study")
    X = X_unique[[index[t] for t in corpus.row_text_ids]].astype(np.float64)
    return rows, X / np.linalg.norm(X, axis=1, keepdims=True)


# --- fixed-K clusterers -----------------------------------------------------------------------


def kmeans(X, k, seed, n_init=10):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(X)


# Centring is the product's own (textclust.cluster.centred). The recorded results were made
# with an identical float32 copy of it that this import replaced.
from textclust.cluster import centred  # noqa: E402


def pca_whitened(X, d, seed):
    from sklearn.decomposition import PCA

    return PCA(n_components=min(d, X.shape[1], X.shape[0] - 1), whiten=True, random_state=seed).fit_transform(X)


def ward(X, k):
    """Ward on unit vectors (squared Euclidean = 2 - 2 cos). O(n^2) memory and time: fine to
    ~20k texts; past that the fallback is Ward on the centroids of a k-means with ~1000
    clusters (each text then takes its centroid's cluster)."""
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X)


class SpectralGraph:
    """Symmetric kNN cosine graph (connectivity, (A + A^T) / 2 as sklearn does), its normalised
    adjacency M = D^-1/2 A D^-1/2 and M's top eigenpairs (eigsh, sparse).

    Scales: the kNN search here is brute force (O(n^2 d) time, chunked memory); past ~50k texts
    use an approximate index (pynndescent, already a dependency through umap). eigsh on the
    sparse graph is ~O(n m k) per iteration, fine to 100k with k <= ~150."""

    def __init__(self, X, m: int, n_eig: int, seed: int):
        from scipy.sparse import diags
        from scipy.sparse.linalg import eigsh
        from sklearn.neighbors import kneighbors_graph

        t0 = time.perf_counter()
        n = X.shape[0]
        A = kneighbors_graph(X, n_neighbors=min(m, n - 1), metric="cosine", include_self=False)
        A = 0.5 * (A + A.T)
        self.A = A.tocsr()
        deg = np.asarray(A.sum(axis=1)).ravel()
        dinv = diags(1.0 / np.sqrt(deg))
        M = dinv @ A @ dinv
        v0 = np.random.RandomState(seed).uniform(size=n)
        vals, vecs = eigsh(M, k=min(n_eig, n - 2), which="LA", v0=v0, tol=1e-6)
        order = np.argsort(-vals)
        self.vals, self.vecs = vals[order], vecs[:, order]
        self.seconds = time.perf_counter() - t0

    def embedding(self, k):
        U = self.vecs[:, :k]
        return U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)

    def partition(self, k, seed):
        return kmeans(self.embedding(k), k, seed)

    def eigengap_k(self, kmax: int) -> int:
        """K maximising lambda_K - lambda_{K+1} of M (= the gap of the Laplacian I - M), K in 2..kmax."""
        gaps = self.vals[1:kmax] - self.vals[2:kmax + 1]  # gaps[i] = lambda_{i+2} - lambda_{i+3} (1-indexed)
        return int(np.argmax(gaps)) + 2


def louvain(A, resolution, seed):
    """Louvain modularity communities (networkx). Scales to ~1e6 edges in pure Python;
    igraph/leidenalg would be the faster drop-in."""
    import networkx as nx

    G = nx.from_scipy_sparse_array(A)
    comms = nx.community.louvain_communities(G, weight="weight", resolution=resolution, seed=seed)
    labels = np.empty(A.shape[0], dtype=int)
    for i, c in enumerate(comms):
        labels[list(c)] = i
    return labels


def silhouette(X, labels, seed):
    """Cosine silhouette; O(n^2): the product would use sample_size (e.g. 3000)."""
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2:
        return -1.0
    sample = 3000 if X.shape[0] > 3000 else None
    return float(silhouette_score(X, labels, metric="cosine", sample_size=sample, random_state=seed))


# --- one corpus -----------------------------------------------------------------------------


def study_corpus(name, rows, X, seed, log, light=False) -> list[dict]:
    """Every method's partition(s), scored on every field; a record per (field, method)."""
    n = X.shape[0]
    fields = [f for f in FIELDS if f in rows[0]]
    gold = {f: [str(r[f]) for r in rows] for f in fields}
    kgold = {f: len(set(gold[f])) for f in fields}
    ks = sorted(set(kgold.values()))
    grid = k_grid(n)
    records: list[dict] = []

    def add(method, family, hp, labels_by_k, seconds_by_k, auto=False, extra=None):
        for f in fields:
            k = None if auto else kgold[f]
            labels = labels_by_k if auto else labels_by_k[k]
            sec = seconds_by_k if auto else seconds_by_k[k]
            s = score_partition(gold[f], [int(x) for x in labels])
            records.append({"corpus": name, "field": f, "n": n, "k_gold": kgold[f], "method": method,
                            "family": family, "hp": hp, "auto": auto, "acc": s.acc, "nmi": s.nmi, "ari": s.ari,
                            "k_found": s.n_clusters, "seconds": round(sec, 3), **(extra or {})})

    def fixed(method, family, hp, fn):
        labels, secs = {}, {}
        for k in ks:
            t0 = time.perf_counter()
            labels[k] = fn(k)
            secs[k] = time.perf_counter() - t0
        add(method, family, hp, labels, secs)
        log(f"  {method:<22} " + " ".join(f"K={k}: {secs[k]:.2f}s" for k in ks))

    # Fixed K.
    fixed(BASE, BASE, None, lambda k: kmeans(X, k, seed))
    fixed("kmeans_centred", "kmeans_centred", None, lambda k: kmeans(centred(X), k, seed))
    for d in () if light else PCA_DIMS:
        fixed(f"kmeans_pcaw{d}", "kmeans_pcaw", d, lambda k, d=d: kmeans(pca_whitened(X, d, seed), k, seed))
    fixed("ward", "ward", None, lambda k: ward(X, k))
    fixed("ward_centred", "ward_centred", None, lambda k: ward(centred(X), k))

    n_eig = min(max(max(ks), grid[-1]) + 2, n - 2)
    graphs: dict[tuple[str, int], SpectralGraph] = {}
    for variant, Y in (("spectral", X), ("spectral_centred", centred(X))):
        for rule, f_m in NEIGHBOUR_RULES.items():
            if light and rule in LIGHT_SKIP:
                continue
            m = f_m(n)
            if (variant, m) not in graphs:
                graphs[(variant, m)] = SpectralGraph(Y, m, n_eig, seed)
            g = graphs[(variant, m)]
            labels, secs = {}, {}
            for k in ks:
                t0 = time.perf_counter()
                labels[k] = g.partition(k, seed)
                secs[k] = time.perf_counter() - t0 + g.seconds  # one product fit = graph + eig + k-means
            add(f"{variant}[{rule}]", variant, rule, labels, secs, extra={"neighbours": m})
        log(f"  {variant:<22} graphs+eig " + " ".join(f"m={m}: {g.seconds:.2f}s" for (v, m), g in graphs.items()
                                                      if v == variant))

    # Automatic K.
    if not light:  # (--light skips the slow automatic rules that lost at 1000 rows)
        t0 = time.perf_counter()
        sils, parts = [], {}
        for k in grid:
            parts[k] = kmeans(X, k, seed)
            sils.append(silhouette(X, parts[k], seed))
        best = grid[int(np.argmax(sils))]
        add("auto_sil_kmeans", "auto_sil_kmeans", None, parts[best], time.perf_counter() - t0, auto=True,
            extra={"curve": dict(zip(grid, np.round(sils, 4).tolist()))})
        log(f"  auto_sil_kmeans        K={best} {time.perf_counter() - t0:.1f}s")

    # K by the cosine silhouette of k-means on the centred embeddings (n_init=3 over the grid), then
    # the partition at that K from k-means itself or from a fixed-K spectral candidate.
    t0 = time.perf_counter()
    C = centred(X)
    sils, parts = [], {}
    for k in grid:
        parts[k] = kmeans(C, k, seed, n_init=3)
        sils.append(silhouette(C, parts[k], seed))
    best = grid[int(np.argmax(sils))]
    sel_seconds = time.perf_counter() - t0
    curve = dict(zip(grid, np.round(sils, 4).tolist()))
    t1 = time.perf_counter()
    labels = kmeans(C, best, seed)
    add("auto_silc[kmeans_centred]", "auto_silc", "kmeans_centred", labels, sel_seconds + time.perf_counter() - t1,
        auto=True, extra={"curve": curve})
    for variant, rule in SILC_PARTITIONERS:
        if (variant, NEIGHBOUR_RULES[rule](n)) not in graphs:
            continue
        g = graphs[(variant, NEIGHBOUR_RULES[rule](n))]
        t1 = time.perf_counter()
        labels = g.partition(best, seed)
        add(f"auto_silc[{variant}[{rule}]]", "auto_silc", f"{variant}[{rule}]", labels,
            sel_seconds + g.seconds + time.perf_counter() - t1, auto=True)
    log(f"  auto_silc              K={best} {sel_seconds:.1f}s")

    for rule, f_m in NEIGHBOUR_RULES.items():
        if ("spectral", f_m(n)) not in graphs:
            continue
        g = graphs[("spectral", f_m(n))]
        k = g.eigengap_k(grid[-1])
        t0 = time.perf_counter()
        labels = g.partition(k, seed)
        add(f"auto_eigengap[{rule}]", "auto_eigengap", rule, labels, time.perf_counter() - t0 + g.seconds, auto=True,
            extra={"neighbours": f_m(n), "eigenvalues": np.round(g.vals[:grid[-1] + 1], 4).tolist()})
    if light:
        return records
    for rule in AUTO_SPECTRAL_RULES:
        g = graphs[("spectral", NEIGHBOUR_RULES[rule](n))]
        t0 = time.perf_counter()
        sils, parts = [], {}
        for k in grid:
            parts[k] = g.partition(k, seed)
            sils.append(silhouette(X, parts[k], seed))
        best = grid[int(np.argmax(sils))]
        add(f"auto_sil_spectral[{rule}]", "auto_sil_spectral", rule, parts[best],
            time.perf_counter() - t0 + g.seconds, auto=True, extra={"curve": dict(zip(grid, np.round(sils, 4).tolist()))})
    log("  auto_sil_spectral      " + " ".join(f"{r['hp']}:K={r['k_found']}" for r in records
                                             if r["family"] == "auto_sil_spectral" and r["field"] == "label"))
    for rule, gamma in LOUVAIN:
        g = graphs[("spectral", NEIGHBOUR_RULES[rule](n))]
        t0 = time.perf_counter()
        labels = louvain(g.A, gamma, seed)
        add(f"auto_louvain[{rule},g{gamma}]", "auto_louvain", f"{rule},g{gamma}", labels,
            time.perf_counter() - t0 + g.seconds, auto=True)
    log("  auto_louvain           " + " ".join(f"{r['hp']}:K={r['k_found']}" for r in records
                                             if r["family"] == "auto_louvain" and r["field"] == "label"))
    return records


# --- summaries ------------------------------------------------------------------------------


def _label(records):
    return {(r["corpus"], r["method"]): r for r in records if r["field"] == "label"}


def means_table(records, corpora) -> tuple[str, list[dict]]:
    """Per method over the label fields: mean ACC / NMI, fields beating k-means on ACC (and on
    NMI), K within 2x of gold over all fields (automatic K), mean seconds / k-means seconds."""
    lab = _label(records)
    methods = list(dict.fromkeys(r["method"] for r in records))
    base_sec = np.mean([r["seconds"] for r in records if r["method"] == BASE])
    out, rows = [], []
    out.append("| method | mean ACC | mean NMI | ACC > k-means | NMI > k-means | K within 2x (all fields) | time / k-means |")
    out.append("|---|---|---|---|---|---|---|")
    for m in methods:
        rs = [lab[(c, m)] for c in corpora if (c, m) in lab]
        bs = [lab[(c, BASE)] for c in corpora if (c, m) in lab]
        allf = [r for r in records if r["method"] == m]
        row = {"method": m, "acc": float(np.mean([r["acc"] for r in rs])), "nmi": float(np.mean([r["nmi"] for r in rs])),
               "acc_wins": sum(r["acc"] > b["acc"] for r, b in zip(rs, bs)),
               "nmi_wins": sum(r["nmi"] > b["nmi"] for r, b in zip(rs, bs)),
               "within2x": sum(r["k_gold"] / 2 <= r["k_found"] <= 2 * r["k_gold"] for r in allf), "n_fields": len(allf),
               "time_ratio": float(np.mean([r["seconds"] for r in allf]) / base_sec)}
        rows.append(row)
        out.append(f"| {m} | {row['acc']:.3f} | {row['nmi']:.3f} | {row['acc_wins']}/{len(rs)} | {row['nmi_wins']}/{len(rs)} | "
                   f"{row['within2x']}/{row['n_fields']} | {row['time_ratio']:.1f}x |")
    return "\n".join(out), rows


def field_table(records, methods) -> str:
    """Per field: ACC / NMI (and K found for automatic methods) of the chosen methods."""
    fields = list(dict.fromkeys((r["corpus"], r["field"]) for r in records))
    by = {(r["corpus"], r["field"], r["method"]): r for r in records}
    out = ["| field | K gold | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for c, f in fields:
        cells = []
        for m in methods:
            r = by.get((c, f, m))
            cells.append("–" if r is None else f"{r['acc']:.3f} / {r['nmi']:.3f}" + (f" (K {r['k_found']})" if r["auto"] else ""))
        out.append(f"| {c}/{f} | {by[(c, f, BASE)]['k_gold']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def loco(records, corpora) -> tuple[str, dict]:
    """Leave-one-corpus-out per family (and over all fixed-K / all automatic-K candidates):
    the held-out corpus's label field scored with the setting that maximises mean(ACC + NMI)
    over the label fields of the other corpora."""
    lab = _label(records)
    families: dict[str, list[str]] = {}
    for r in records:
        if r["method"] != BASE:
            families.setdefault(r["family"], [])
            if r["method"] not in families[r["family"]]:
                families[r["family"]].append(r["method"])
    families["ANY fixed-K candidate"] = [m for fam, ms in families.items() if not fam.startswith("auto") for m in ms]
    families["ANY auto-K candidate"] = [m for fam, ms in families.items() if fam.startswith("auto") and not fam.startswith("ANY")
                                        for m in ms]
    allrec = {(r["corpus"], r["field"], r["method"]): r for r in records}

    def score(m, cs):
        return float(np.mean([lab[(c, m)]["acc"] + lab[(c, m)]["nmi"] for c in cs]))

    out = ["| family | in-sample best | its mean ACC / NMI | LOCO mean ACC / NMI | LOCO ACC > k-means | "
           "LOCO NMI > k-means | LOCO K within 2x (all fields) | settings chosen per held-out corpus |",
           "|---|---|---|---|---|---|---|---|"]
    result = {}
    for fam, ms in families.items():
        ms = [m for m in ms if all((c, m) in lab for c in corpora)]
        if not ms:
            continue
        best = max(ms, key=lambda m: score(m, corpora))
        chosen = {c: max(ms, key=lambda m: score(m, [o for o in corpora if o != c])) for c in corpora}
        held = [lab[(c, chosen[c])] for c in corpora]
        base = [lab[(c, BASE)] for c in corpora]
        held_all = [r for (c, f, m), r in allrec.items() if m == chosen.get(c)]
        res = {"in_sample_best": best, "in_sample_acc": float(np.mean([lab[(c, best)]["acc"] for c in corpora])),
               "in_sample_nmi": float(np.mean([lab[(c, best)]["nmi"] for c in corpora])),
               "loco_acc": float(np.mean([r["acc"] for r in held])), "loco_nmi": float(np.mean([r["nmi"] for r in held])),
               "loco_acc_wins": sum(r["acc"] > b["acc"] for r, b in zip(held, base)),
               "loco_nmi_wins": sum(r["nmi"] > b["nmi"] for r, b in zip(held, base)),
               "loco_within2x": sum(r["k_gold"] / 2 <= r["k_found"] <= 2 * r["k_gold"] for r in held_all),
               "loco_fields": len(held_all), "chosen": chosen}
        result[fam] = res
        distinct = sorted(set(chosen.values()))
        out.append(f"| {fam} | {best} | {res['in_sample_acc']:.3f} / {res['in_sample_nmi']:.3f} | "
                   f"{res['loco_acc']:.3f} / {res['loco_nmi']:.3f} | {res['loco_acc_wins']}/{len(corpora)} | "
                   f"{res['loco_nmi_wins']}/{len(corpora)} | {res['loco_within2x']}/{res['loco_fields']} | "
                   + (distinct[0] + " (all)" if len(distinct) == 1 else
                      ", ".join(f"{c}: {chosen[c]}" for c in corpora)) + " |")
    return "\n".join(out), result


def save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--out", type=Path, default=RESULTS / "clusterer_study.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpora", help="comma-separated subset (default: all seven)")
    p.add_argument("--light", action="store_true",
                   help="skip the candidates that lost at 1000 rows (PCA-whitening, m5/m10 graphs, k-means and "
                        "spectral silhouette on raw embeddings, Louvain): for the larger confirmation runs")
    p.add_argument("--resume", action="store_true",
                   help="keep the corpora already in --out (same --max-rows and --seed) and measure the rest")
    args = p.parse_args(argv)
    corpora = args.corpora.split(",") if args.corpora else list(CORPORA)
    started = time.perf_counter()
    warnings.filterwarnings("ignore", category=UserWarning)
    cache = EmbeddingCache(default_cache_dir())
    embedder = CachedEmbedder(cache, model=RunConfig().embedding.model, progress=False)
    meta = {"max_rows": args.max_rows, "seed": args.seed, "light": args.light, "load_average_start": list(os.getloadavg()),
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    records: list[dict] = []
    done = []
    if args.resume and args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("max_rows") == args.max_rows and old.get("seed") == args.seed:
            done = [c for c in old["corpora_done"] if c in corpora]
            records = [r for r in old["records"] if r["corpus"] in done]
            print(f"resuming {args.out}: {', '.join(done)} already measured", flush=True)
    for name in [c for c in corpora if c not in done]:
        t0 = time.perf_counter()
        rows, X = load_corpus(name, args.max_rows, embedder)
        print(f"{name}: {len(rows)} rows ({embedder.computed} strings encoded so far) {time.perf_counter() - t0:.1f}s",
              flush=True)
        records += study_corpus(name, rows, X, args.seed, lambda s: print(s, flush=True), light=args.light)
        done.append(name)
        save(args.out, {"complete": False, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta,
                        "corpora_done": done, "load_average": list(os.getloadavg()), "records": records})
    cache.close()

    table, means = means_table(records, done)
    fixed_methods = [BASE] + [r["method"] for r in means if not r["method"].startswith("auto") and r["method"] != BASE]
    best_fixed = sorted((r for r in means if r["method"] in fixed_methods[1:]), key=lambda r: -(r["acc"] + r["nmi"]))[:4]
    best_auto = sorted((r for r in means if r["method"].startswith("auto")), key=lambda r: -(r["acc"] + r["nmi"]))[:4]
    shown = [BASE] + [r["method"] for r in best_fixed] + [r["method"] for r in best_auto]
    loco_table, loco_res = loco(records, done)
    print("\nmeans over the label fields (ACC > k-means: fields where ACC beats k-means, K = gold)\n" + table)
    print("\nper field (ACC / NMI), k-means, the best fixed-K and automatic-K methods\n" + field_table(records, shown))
    print("\nleave-one-corpus-out (setting chosen on the other corpora's label fields)\n" + loco_table)
    wall = time.perf_counter() - started
    save(args.out, {"complete": True, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta,
                    "corpora_done": done, "load_average": list(os.getloadavg()), "wall_seconds": round(wall, 1),
                    "means_label_fields": means, "loco": loco_res, "records": records})
    print(f"\nwrote {args.out} in {wall:.0f}s, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
