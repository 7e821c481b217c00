"""Study: which rule turns the silhouette curve into an automatic K (issue 23, item 1).

The product picks K as the argmax of the cosine silhouette of centred k-means over
``SILHOUETTE_GRID`` (``textclust.cluster.choose_k_centred``). On corpora without strong
structure (tweet emotions) the curve is flat and low, and its argmax falls to K = 2, which
costs NMI. This study scores, per shared corpus, rules that read the same curve:

* ``max``: the argmax (today's rule);
* ``tol<e>``: the largest K whose silhouette is at least (1 - e) × the maximum (a flat curve
  allows more clusters, a sharp peak keeps its K);
* ``from3``: the argmax over K ≥ 3.

Each K is partitioned as the product does (``spectral_partition`` of the centred vectors) and
scored with ``score_partition`` on every label field. Leave-one-corpus-out picks the rule on
six corpora (mean ACC + NMI over their ``label`` fields) and reports it on the seventh.
Embeddings come from the bench cache (bench/embed_cache.py), as in bench/quality.py.

    .venv/bin/python bench/k_rule_study.py [--max-rows 1000] [--out bench/results/k_rule_study.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clusterer_study import CORPORA, FIELDS, load_corpus  # noqa: E402
from bench.embed_cache import CachedEmbedder, EmbeddingCache, default_cache_dir  # noqa: E402
from textclust.cluster import (SILHOUETTE_SAMPLE, _best_silhouette, centred, default_min_cluster_size,  # noqa: E402
                               spectral_partition, SILHOUETTE_GRID)
from textclust.config import RunConfig  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402

TOLERANCES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def rules(scores: dict[int, float]) -> dict[str, int]:
    """K chosen by each rule from one silhouette curve {K: score}."""
    best = max(scores.values())
    chosen = {"max": max(scores, key=lambda k: (scores[k], -k))}
    for e in TOLERANCES:
        chosen[f"tol{e}"] = max(k for k, s in scores.items() if s >= (1 - e) * best)
    from3 = {k: s for k, s in scores.items() if k >= 3} or scores
    chosen["from3"] = max(from3, key=lambda k: (from3[k], -k))
    return chosen


def study(name: str, max_rows: int, embedder, seed: int) -> list[dict]:
    rows, X = load_corpus(name, max_rows, embedder)
    C = centred(X)
    n = len(C)
    largest = max(2, n // default_min_cluster_size(n))
    _, scores = _best_silhouette(C, largest, seed, SILHOUETTE_GRID, SILHOUETTE_SAMPLE, "cosine")
    chosen = rules(scores)
    partitions = {k: spectral_partition(C, k, seed) for k in sorted(set(chosen.values()))}
    records = []
    for field in FIELDS:
        if field not in rows[0]:
            continue
        gold = [str(r[field]) for r in rows]
        n_gold = len(set(gold))
        for rule, k in chosen.items():
            s = score_partition(gold, partitions[k].tolist())
            records.append({"corpus": name, "field": field, "rule": rule, "k": k, "n_gold": n_gold,
                            "acc": round(float(s.acc), 4), "nmi": round(float(s.nmi), 4),
                            "within_2x": n_gold / 2 <= k <= 2 * n_gold})
    print(f"{name}: silhouette {', '.join(f'{k}:{v:.3f}' for k, v in sorted(scores.items()))}", flush=True)
    print(f"  chosen K {chosen}", flush=True)
    return records


def summary(records: list[dict], corpora: list[str]) -> dict[str, dict]:
    out = {}
    for rule in dict.fromkeys(r["rule"] for r in records):
        mine = [r for r in records if r["rule"] == rule and r["corpus"] in corpora]
        label = [r for r in mine if r["field"] == "label"]
        out[rule] = {"acc": float(np.mean([r["acc"] for r in label])), "nmi": float(np.mean([r["nmi"] for r in label])),
                     "within_2x": sum(r["within_2x"] for r in mine), "fields": len(mine)}
    return out


def loco(records: list[dict], corpora: list[str]) -> list[dict]:
    """Per held-out corpus: the rule best on the others (mean ACC + NMI, label fields), its figures there."""
    held = []
    for out in corpora:
        others = summary(records, [c for c in corpora if c != out])
        rule = max(others, key=lambda r: (others[r]["acc"] + others[r]["nmi"], r == "max"))
        held += [dict(r, chosen_on_others=rule) for r in records if r["corpus"] == out and r["rule"] == rule]
    return held


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "k_rule_study.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    started, load_start = time.perf_counter(), list(os.getloadavg())
    cache = EmbeddingCache(default_cache_dir())
    embedder = CachedEmbedder(cache, model=RunConfig().embedding.model, progress=False)
    records = []
    for name in CORPORA:
        records += study(name, args.max_rows, embedder, args.seed)
    cache.close()
    table = summary(records, list(CORPORA))
    print(f"\n{'rule':<10} {'ACC':>6} {'NMI':>6}  within 2x   (label fields: mean over 7; within 2x: of all fields)")
    for rule, m in table.items():
        print(f"{rule:<10} {m['acc']:6.3f} {m['nmi']:6.3f}  {m['within_2x']:>3}/{m['fields']}")
    held = loco(records, list(CORPORA))
    label = [r for r in held if r["field"] == "label"]
    print(f"{'LOCO':<10} {np.mean([r['acc'] for r in label]):6.3f} {np.mean([r['nmi'] for r in label]):6.3f}  "
          f"{sum(r['within_2x'] for r in held):>3}/{len(held)}   rules chosen: "
          + ", ".join(f"{r['corpus']}={r['chosen_on_others']}" for r in held if r["field"] == "label"))
    args.out.write_text(json.dumps({"max_rows": args.max_rows, "seed": args.seed, "load_average_start": load_start,
                                    "load_average_end": list(os.getloadavg()),
                                    "wall_seconds": round(time.perf_counter() - started, 1),
                                    "summary": table, "loco": held, "records": records}, indent=1) + "\n")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f}s, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
