"""Seeded assignment (``--only-candidates``) against plain cosine argmax to the seeds, on every
shared corpus and label field (issue 23, items 3 and 4).

Seeds: one candidate per gold category, written from the category name (no gold text is
ever a seed). The four fields of ``bench/goal.py``'s ``TASKS`` keep their hand-written
sentences; every other field gets the corpus's sentence template below filled with the
category name (``_ . / -`` read as spaces), e.g. ag_news "Sports" → "a news article about Sports".

On the same embeddings (the benchmark cache, ``bench/embed_cache.py``; first ``--max-rows``
rows, default 1,000) it measures, per field:

* ``pipeline`` — textclust with ``--only-candidates`` through the real pipeline (whatever
  ``textclust/explain/user_classifier.py`` does now; an uncovered text counts as wrong);
* ``argmax``   — each text to the seed whose embedding has the highest cosine;
* ``centred``  — the same after taking the corpus mean off texts and seeds;
* ``km w=W t=T`` — seeded k-means on the centred vectors (start from ``centred``; prototype =
  W × seed + (1 − W) × mean direction of its texts; at most T steps);

and, for the seed weight W and steps T, the leave-one-corpus-out choice: for each held-out
corpus, the (W, T) with the best mean ACC over the fields of the *other* corpora, scored on
the held-out one (the "held-out" column), beside the in-sample best setting.

Open set: the sample's complaints with seeds for 3 of its 6 reasons (``bench/goal.py``'s
``OPEN_TASK``), through the pipeline: precision / recall of "none".

Writes JSON after every corpus (default ``bench/results/seeded.json``).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/seeded.py [--max-rows 1000] [--corpora a,b] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.embed_cache import CachedEmbedder, EmbeddingCache, default_cache_dir  # noqa: E402
from bench.goal import OPEN_TASK, SAMPLE, TASKS  # noqa: E402
from textclust.config import RunConfig  # noqa: E402
from textclust.embed import embed_texts  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402
from textclust.explain.user_classifier import centre, cosine_zero_shot, seeded_kmeans  # noqa: E402
from textclust.ingest import corpus_from_texts, read_corpus  # noqa: E402
from textclust.pipeline import Pipeline  # noqa: E402
from textclust.results import load_run  # noqa: E402
from textclust.store import open_store  # noqa: E402

DATA = REPO.parent / "shared" / "data"
OUT = REPO / "bench" / "results" / "seeded.json"
WEIGHTS = (0.25, 0.5, 0.75)
STEPS = (1, 3, 10)

# One sentence template per corpus for the fields without hand-written seeds.
TEMPLATES = {
    ("syngoalex", "label"): "the text talks about {}",
    ("ag_news", "label"): "a news article about {}",
    ("banking77", "label"): "the customer asks the bank about {}",
    ("amazon_multidomain", "label"): "a review of a {} product",
    ("stackoverflow", "label"): "a programming question about {}",
    ("goemotions", "label"): "the writer expresses {}",
    ("goemotions", "label2"): "the writer expresses {}",
    ("20newsgroups", "label"): "a newsgroup post about {}",
    ("20newsgroups", "label2"): "a newsgroup post about {}",
}


def seeds_for(name: str, field: str, labels: list[str]) -> dict[str, str]:
    for task_name, task_field, _, seeds in TASKS:
        if (task_name, task_field) == (name, field):
            return dict(seeds)
    template = TEMPLATES[(name, field)]
    return {label: template.format(re.sub(r"[_./-]+", " ", label).strip()) for label in sorted(set(labels))}


def variants(X: np.ndarray, E: np.ndarray) -> dict[str, np.ndarray]:
    out = {"argmax": cosine_zero_shot(X, E)}
    Xc, Ec = centre(X, E)
    out["centred"] = (Xc @ Ec.T).argmax(axis=1)
    for w in WEIGHTS:
        for t in STEPS:
            out[f"km w={w} t={t}"] = seeded_kmeans(Xc, Ec, iterations=t, seed_weight=w)[0]
    return out


def acc(gold, predicted) -> float:
    return score_partition(list(gold), list(predicted)).acc


def pipeline_scores(db, embedder, corpus, gold, seeds, goal) -> dict:
    seed_list = [{"name": k, "explanation": v} for k, v in seeds.items()]
    config = RunConfig.from_flat(candidates=seed_list, only_candidates=True)
    result = load_run(db, Pipeline(db, config, embedder=embedder).run(corpus, goal))
    _, p, _ = result.scored_rows(gold)
    s = result.score(gold)
    return {"acc": s.acc, "coverage": s.coverage, "none_rate": round(sum(x == -1 for x in p) / len(p), 4)}


def open_set(db, embedder) -> dict:
    import pandas as pd

    _, field, goal, seeds, reason_of = OPEN_TASK
    corpus = read_corpus(SAMPLE)
    gold = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)[field].tolist()
    seed_list = [{"name": k, "explanation": v} for k, v in seeds.items()]
    config = RunConfig.from_flat(candidates=seed_list, only_candidates=True)
    result = load_run(db, Pipeline(db, config, embedder=embedder).run(corpus, goal))
    pairs = [(label, row["explanation_name"] or None) for row, label in zip(result.rows, gold)
             if row["status"] != "empty"]
    seeded = set(reason_of.values())
    none = [label for label, got in pairs if got is None]
    hit = sum(label not in seeded for label in none)
    n_unseeded = sum(label not in seeded for label, _ in pairs)
    fit = {name: round(sum(label == reason and got == name for label, got in pairs)
                       / max(1, sum(label == reason for label, _ in pairs)), 3) for name, reason in reason_of.items()}
    return {"n": len(pairs), "n_none": len(none), "none_precision": round(hit / max(1, len(none)), 3),
            "none_recall": round(hit / max(1, n_unseeded), 3), "own_seed_fit": fit}


def leave_one_corpus_out(fields: list[dict], names: list[str]) -> dict:
    """For each held-out corpus: the k-means setting with the best mean ACC on the other corpora's fields."""
    settings = [k for k in fields[0]["acc"] if k.startswith("km ")]
    held = {}
    for name in names:
        train = [f for f in fields if f["corpus"] != name]
        test = [f for f in fields if f["corpus"] == name]
        if not train or not test:
            continue
        best = max(settings, key=lambda s: (np.mean([f["acc"][s] for f in train]), s))
        held[name] = {"setting": best, "fields": {f["field"]: f["acc"][best] for f in test}}
    in_sample = max(settings, key=lambda s: (np.mean([f["acc"][s] for f in fields]), s))
    return {"in_sample_setting": in_sample, "held_out": held}


def table(fields: list[dict], loco: dict) -> str:
    show = ["pipeline", "argmax", "centred", loco["in_sample_setting"]]
    lines = ["| corpus / field | n | K | pipeline ACC (none) | argmax | centred | "
             f"in-sample best ({loco['in_sample_setting']}) | held-out (setting) |", "|---|---|---|---|---|---|---|---|"]
    for f in fields:
        h = loco["held_out"].get(f["corpus"])
        held = f"{h['fields'][f['field']]:.3f} ({h['setting']})" if h else "-"
        a = f["acc"]
        lines.append(f"| {f['corpus']} / {f['field']} | {f['n']} | {f['k']} | {a['pipeline']:.3f} ({f['pipeline']['none_rate']:.2f}) "
                     f"| {a['argmax']:.3f} | {a['centred']:.3f} | {a[show[3]]:.3f} | {held} |")
    held_all = [h["fields"][f["field"]] for f in fields for h in [loco["held_out"].get(f["corpus"])] if h]
    means = {m: np.mean([f["acc"][m] for f in fields]) for m in show}
    lines.append(f"| mean | | | {means['pipeline']:.3f} | {means['argmax']:.3f} | {means['centred']:.3f} | "
                 f"{means[show[3]]:.3f} | {np.mean(held_all) if held_all else float('nan'):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--corpora", help="comma-separated (default: all in goals.json)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-open-set", action="store_true")
    args = parser.parse_args(argv)
    goals = json.loads((DATA / "goals.json").read_text())
    names = args.corpora.split(",") if args.corpora else list(goals)
    meta = {"max_rows": args.max_rows, "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M"), "weights": WEIGHTS, "steps": STEPS}
    cache = EmbeddingCache(default_cache_dir())
    embedder = CachedEmbedder(cache, model=RunConfig().embedding.model, progress=False)
    fields: list[dict] = []
    payload: dict = {}
    with tempfile.TemporaryDirectory(prefix="textclust-seeded-") as folder:
        db = open_store(Path(folder) / "runs.db")
        opened = None if args.no_open_set else open_set(db, embedder)
        if opened:
            print(f"open set: {opened}", flush=True)
        for name in names:
            with (DATA / f"{name}.jsonl").open() as f:
                rows = [json.loads(line) for _, line in zip(range(args.max_rows), f)]
            corpus = corpus_from_texts([r["text"] for r in rows], name=name)
            db.save_corpus(corpus)
            ids = corpus.text_ids
            Xu, _ = embed_texts(db, embedder, ids, [corpus.texts[t] for t in ids])
            index = {t: i for i, t in enumerate(ids)}
            keep = [i for i, t in enumerate(corpus.row_text_ids) if t is not None]
            X = np.asarray(Xu[[index[corpus.row_text_ids[i]] for i in keep]], dtype=np.float64)
            for field, goal in goals[name].items():
                gold_all = [str(r[field]) for r in rows]
                gold = [gold_all[i] for i in keep]
                seeds = seeds_for(name, field, gold)
                E = np.asarray(embedder.encode(list(seeds.values())), dtype=np.float64)
                t0 = time.perf_counter()
                pipe = pipeline_scores(db, embedder, corpus, gold_all, seeds, goal)
                seconds = time.perf_counter() - t0
                accs = {"pipeline": pipe["acc"]}
                accs.update({k: acc(gold, v) for k, v in variants(X, E).items()})
                fields.append({"corpus": name, "field": field, "n": len(gold), "k": len(seeds), "seeds": seeds,
                               "pipeline": pipe, "pipeline_seconds": round(seconds, 1),
                               "acc": {k: round(float(v), 4) for k, v in accs.items()}})
                print(f"{name}/{field}: pipeline {pipe['acc']:.3f} (none {pipe['none_rate']:.2f}) "
                      f"argmax {accs['argmax']:.3f} centred {accs['centred']:.3f} "
                      f"km .5/10 {accs['km w=0.5 t=10']:.3f}", flush=True)
            loco = leave_one_corpus_out(fields, names)
            payload = {**meta, "fields": fields, "loco": loco, "open_set": opened}
            args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        db.close()
    cache.close()
    payload["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table(fields, payload["loco"]))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
