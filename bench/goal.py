"""Goal steering without a language model: seeded explanations vs. cosine zero-shot vs. goal-blind.

For each corpus/label field below, the seeds are plain explanations written from the
gold category names (no tuning on the labels beyond that). Three methods, same run:

(a) seeded   — textclust's offline seeded assigner (``--only-candidates``): pseudo-labels
               from the texts closest to each seed, a logistic regression on the embeddings,
               open set (a text may fit no seed: it is "uncovered");
(b) cosine   — zero-shot: each text goes to the seed whose explanation embedding is most similar;
(c) blind    — the default pipeline without seeds (goal-blind clustering, automatic K).

ACC (Hungarian matching) and NMI over the first ROWS rows of each corpus. These fields are
closed-set (every text has one of the seeded categories), but (a) may leave texts uncovered:
an uncovered text counts as WRONG for ACC and as one extra cluster of its own for NMI/ARI
(``textclust.evaluate``, the convention of ../shared/BASELINES.md); "cov" is the share covered.

Open set (``OPEN_TASK``): the sample corpus data/complaints.csv with seeds for 3 of its 6
gold reasons. A complaint of the other 3 reasons should fit no seed ("none"); reported:
precision and recall of "none" (positive class: a complaint of an unseeded reason) and, per
seed, the share of its reason's complaints that got that seed.

Every shared corpus and field, with leave-one-corpus-out settings: bench/seeded.py.

Embeddings are cached in a database under /tmp. Writes bench/results/goal.json.

    .venv/bin/python bench/goal.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from textclust.embed import Embedder, embed_texts  # noqa: E402
from textclust.evaluate import score_partition  # noqa: E402
from textclust.explain.user_classifier import cosine_zero_shot  # noqa: E402
from textclust.ingest import corpus_from_texts, read_corpus  # noqa: E402
from textclust.config import RunConfig  # noqa: E402
from textclust.embed import cached_or_encoded  # noqa: E402
from textclust.pipeline import Pipeline  # noqa: E402
from textclust.results import load_run  # noqa: E402
from textclust.store import open_store  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DB = Path("/tmp/textclust_bench_goal.db")
ROWS = 2000
OUT = REPO / "bench" / "results" / "goal.json"

# Seeds: one plain sentence per gold category name.
TASKS = [
    ("amazon_multidomain", "label2", "the reviewer's sentiment about the product", {
        "positive": "the reviewer is satisfied with the product",
        "negative": "the reviewer is dissatisfied with the product",
    }),
    ("goemotions", "label3", "the emotion the writer expresses", {
        "positive": "the writer expresses a positive emotion",
        "negative": "the writer expresses a negative emotion",
        "ambiguous": "the writer's emotion is ambiguous or mixed",
        "neutral": "the text is neutral and expresses no emotion",
    }),
    ("syngoalex", "label2", "the writing style of the text", {
        "screen play": "the text is written as a screen play",
        "rap": "the text is written as rap lyrics",
        "twitter": "the text is written as a twitter post",
        "poem": "the text is written as a poem",
    }),
    ("syngoalex", "label3", "the language the text is written in", {
        "Deutsch": "the text is written in German (Deutsch)",
        "English": "the text is written in English",
        "French": "the text is written in French",
        "Spanish": "the text is written in Spanish",
    }),
]


# Open set: seeds for 3 of the sample's 6 reasons, phrased from reading the complaints.
OPEN_TASK = ("complaints", "reason", "Cluster the complaints by why the customer is unhappy.", {
    "late delivery": "the parcel is late or has not arrived and tracking shows no progress",
    "refund": "the customer returned an item or cancelled the order and the refund has not arrived",
    "account access": "the customer cannot log in to their account, password reset or login fails",
}, {"late delivery": "late_delivery", "refund": "refund_delay", "account access": "account_access"})
SAMPLE = REPO / "data" / "complaints.csv"


def open_set(db) -> dict:
    """The open-set check on the sample corpus, through the real pipeline (--only-candidates)."""
    import pandas as pd

    name, field, goal, seeds, reason_of = OPEN_TASK
    corpus = read_corpus(SAMPLE)
    gold = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)[field].tolist()
    seed_list = [{"name": k, "explanation": v} for k, v in seeds.items()]
    result = load_run(db, Pipeline(db, RunConfig.from_flat(candidates=seed_list, only_candidates=True)).run(corpus, goal))
    pairs = [(label, row["explanation_name"] or None) for row, label in zip(result.rows, gold)
             if row["status"] != "empty"]
    seeded = set(reason_of.values())
    unseeded = [(label, got) for label, got in pairs if label not in seeded]
    none = [(label, got) for label, got in pairs if got is None]
    hit = sum(1 for label, got in none if label not in seeded)
    fit = {name: round(sum(1 for label, got in pairs if label == reason and got == name)
                       / max(1, sum(1 for label, _ in pairs if label == reason)), 3)
           for name, reason in reason_of.items()}
    return {
        "corpus": name, "field": field, "n": len(pairs), "seeds": seeds, "seeded_reasons": reason_of,
        "n_unseeded": len(unseeded), "n_none": len(none),
        "none_precision": round(hit / max(1, len(none)), 3), "none_recall": round(hit / max(1, len(unseeded)), 3),
        "own_seed_fit": fit, "coverage": round(1 - len(none) / len(pairs), 3),
    }


def load(name: str, field: str):
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").open(encoding="utf-8")][:ROWS]
    return [r["text"] for r in rows], [r[field] for r in rows]


def score_rows(result, gold):
    return result.score(gold).to_dict()


def main() -> None:
    db = open_store(DB)
    embedder = Embedder()
    blind_runs: dict[str, int] = {}
    table = []
    for name, field, goal, seeds in TASKS:
        texts, gold = load(name, field)
        corpus = corpus_from_texts(texts, name=name)
        db.save_corpus(corpus)
        t0 = time.perf_counter()
        X, _ = embed_texts(db, embedder, corpus.text_ids, [corpus.texts[t] for t in corpus.text_ids])
        embed_s = time.perf_counter() - t0
        seed_list = [{"name": k, "explanation": v} for k, v in seeds.items()]

        # (a) seeded, through the real pipeline
        t0 = time.perf_counter()
        run_a = Pipeline(db, RunConfig.from_flat(candidates=seed_list, only_candidates=True)).run(corpus, goal)
        seeded = score_rows(load_run(db, run_a), gold)
        seeded_s = time.perf_counter() - t0

        # (b) cosine zero-shot over the same vectors
        E = cached_or_encoded(db, embedder, [seed["explanation"] for seed in seed_list])
        position = {t: i for i, t in enumerate(corpus.text_ids)}
        best = cosine_zero_shot(X, E)
        g, p = [], []
        for text, label in zip(corpus.row_text_ids, gold):
            if text is not None:
                g.append(label)
                p.append(int(best[position[text]]))
        cosine = score_partition(g, p).to_dict()

        # (c) goal-blind: the default pipeline, once per corpus
        t0 = time.perf_counter()
        if name not in blind_runs:
            blind_runs[name] = Pipeline(db, RunConfig()).run(corpus, "goal-blind (no seeds)")
        blind = score_rows(load_run(db, blind_runs[name]), gold)
        blind_s = time.perf_counter() - t0

        entry = {
            "corpus": name, "field": field, "n": seeded["n"], "n_classes": len(set(gold)), "seeds": seeds,
            "seeded": seeded, "cosine": cosine, "blind": blind,
            "seconds": {"embed": round(embed_s, 1), "seeded": round(seeded_s, 1), "blind": round(blind_s, 1)},
        }
        table.append(entry)
        print(f"done {name}/{field}", file=sys.stderr, flush=True)

    opened = open_set(db)
    lines = [
        f"rows: first {ROWS} per corpus; seeds written from the category names; model all-MiniLM-L6-v2",
        "(a) counts an uncovered text as wrong for ACC and as a cluster of its own for NMI; cov = share covered",
        "| corpus / field | n | classes | (a) seeded ACC / NMI / cov | (b) cosine ACC / NMI | (c) goal-blind ACC / NMI / clusters |",
        "|---|---|---|---|---|---|",
    ]
    for e in table:
        a, b, c = e["seeded"], e["cosine"], e["blind"]
        lines.append(
            f"| {e['corpus']} / {e['field']} | {e['n']} | {e['n_classes']} | "
            f"{a['acc']:.3f} / {a['nmi']:.3f} / {a['coverage']:.2f} | {b['acc']:.3f} / {b['nmi']:.3f} | "
            f"{c['acc']:.3f} / {c['nmi']:.3f} / {c['n_clusters']} |"
        )
    lines += [
        "",
        f"open set: {opened['corpus']} ({opened['n']} texts), seeds for {', '.join(opened['seeded_reasons'].values())}; "
        f"{opened['n_unseeded']} texts of the other reasons",
        "| none precision | none recall | texts in none | coverage | own-seed fit |",
        "|---|---|---|---|---|",
        f"| {opened['none_precision']:.3f} | {opened['none_recall']:.3f} | {opened['n_none']} | {opened['coverage']:.3f} | "
        + ", ".join(f"{k} {v:.2f}" for k, v in opened["own_seed_fit"].items()) + " |",
    ]
    print("\n".join(lines))
    OUT.write_text(json.dumps({"rows": ROWS, "db": str(DB), "tasks": table, "open_set": opened}, indent=2) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
