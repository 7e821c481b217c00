"""bench/quality.py's bookkeeping, without a model or the shared corpora: the --compare
arithmetic, the results file written after every field, the targets table in --quick,
and the persistent embedding cache seen from a second process (a second cache object)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import compare_results, embed_cache, quality


def record(corpus, field, method, acc, nmi, k, n=1000, **extra):
    return {"corpus": corpus, "field": field, "method": method, "n": n, "k_gold": 4,
            "acc": acc, "nmi": nmi, "ari": 0.0, "coverage": 1.0, "n_clusters": k, **extra}


OLD = [  # the old full format: more methods, extra keys
    record("ag_news", "label", quality.AUTO, 0.60, 0.50, 3, n=3000, goal="g", seconds=9.0, texts_per_second=1.0),
    record("ag_news", "label", quality.BEFORE, 0.10, 0.30, 41, n=3000),
    record("ag_news", "label", quality.MINILM, 0.80, 0.60, 4, n=3000),
    record("goemotions", "label3", quality.AUTO, 0.20, 0.05, 13, n=3000),
]
NEW = [
    record("ag_news", "label", quality.AUTO, 0.65, 0.45, 5),
    record("ag_news", "label", quality.MINILM, 0.80, 0.61, 4),
    record("ag_news", "label", quality.BERTOPIC, 0.30, 0.40, 9),  # not in OLD: left out
    record("goemotions", "label3", quality.AUTO, 0.30, 0.10, 4),
    record("banking77", "label", quality.AUTO, 0.60, 0.80, 60),  # field not in OLD: left out
]


def test_compare_is_new_minus_old_for_what_both_have():
    rows = compare_results.quality_deltas(OLD, NEW)
    got = {(r["corpus"], r["field"], r["method"]): (r["d_acc"], r["d_nmi"], r["d_n_clusters"]) for r in rows}
    assert got == {
        ("ag_news", "label", quality.AUTO): (0.05, -0.05, 2),
        ("ag_news", "label", quality.MINILM): (0.0, 0.01, 0),
        ("goemotions", "label3", quality.AUTO): (0.1, 0.05, -9),
    }
    means = compare_results.mean_deltas(rows)
    assert means[quality.AUTO] == {"fields": 2, "d_acc": 0.075, "d_nmi": 0.0, "d_n_clusters": -3.5}
    assert means[quality.MINILM] == {"fields": 1, "d_acc": 0.0, "d_nmi": 0.01, "d_n_clusters": 0.0}
    assert quality.BERTOPIC not in means and quality.BEFORE not in means


def test_compare_table_shows_signed_differences_and_warns_about_row_counts():
    table = compare_results.deltas_table(compare_results.quality_deltas(OLD, NEW))
    assert "| ag_news / label | textclust (auto K) | 0.650 (+0.050) | 0.450 (-0.050) | 5 (+2) |" in table
    assert "| mean Δ over 2 fields | textclust (auto K) | +0.075 | +0.000 | -3.5 |" in table
    assert "3000 → 1000" in table
    assert compare_results.deltas_table([]) == "no (corpus, field, method) in both files"


def test_compare_results_cli_quality_mode(tmp_path, capsys, monkeypatch):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"records": OLD}))
    new.write_text(json.dumps({"complete": False, "records": NEW}))
    monkeypatch.setattr("sys.argv", ["compare_results.py", "--quality", str(old), str(new)])
    compare_results.main()
    assert "0.300 (+0.100)" in capsys.readouterr().out


def test_results_are_written_after_each_field_marked_incomplete(tmp_path):
    out = tmp_path / "results" / "quality_quick.json"
    meta = {"mode": "quick", "max_rows": 1000}
    started = quality.time.perf_counter()
    quality.save_results(out, quality.results_payload(meta, NEW[:2], False, started))
    first = json.loads(out.read_text())
    assert first["complete"] is False and first["fields_done"] == 1 and first["records"] == NEW[:2]
    assert first["mode"] == "quick" and len(first["load_average"]) == 3 and first["wall_seconds"] >= 0
    quality.save_results(out, quality.results_payload(meta, NEW, True, started, automatic_k_targets={}))
    final = json.loads(out.read_text())
    assert final["complete"] is True and final["fields_done"] == 3 and "automatic_k_targets" in final
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "q.json"
    quality.save_results(out, {"complete": False, "records": NEW[:1]})

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(quality.os, "replace", broken)
    with pytest.raises(OSError):
        quality.save_results(out, {"complete": False, "records": NEW})
    assert json.loads(out.read_text())["records"] == NEW[:1]
    assert [p.name for p in tmp_path.iterdir()] == ["q.json"]


def test_targets_without_the_hdbscan_baseline_say_not_measured():
    records = [r for r in NEW if r["method"] != quality.BERTOPIC]
    targets = quality.automatic_k_targets(records)
    assert "| no field's NMI > 0.02 below HDBSCAN's | not measured in --quick | – |" in targets["table"]
    assert targets["nmi_regressions"] is None
    with_baseline = quality.automatic_k_targets(OLD)
    assert with_baseline["nmi_regressions"] == []
    assert "0 below: none | yes |" in with_baseline["table"]


def test_means_table_counts_clusters_against_gold():
    table = quality.means_table(NEW)
    # auto K: k 5, 4, 60 against gold 4 each: mean 23.0 / 4.0, within 2× on two fields.
    assert f"| {quality.AUTO} | 3 | 0.517 | 0.450 | 0.000 | 1.00 | 23.0 / 4.0 | 2 |" in table


def test_quick_defaults():
    args = quality.parse_args(["--quick"])
    assert args.max_rows == 1000 and args.out.name == "quality_quick.json"
    assert quality.parse_args([]).out.name == "quality.json"


def test_embedding_cache_is_reused_by_a_second_process(tmp_path, monkeypatch):
    calls = []

    def fake_encode(self, texts, bar=None):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(embed_cache.SentenceTransformerEmbedder, "encode", fake_encode)
    first = embed_cache.CachedEmbedder(embed_cache.EmbeddingCache(tmp_path), model="m")
    a = first.encode(["one", "three", "one"])
    assert calls == [["one", "three"]] and first.computed == 2
    first.cache.close()
    second = embed_cache.CachedEmbedder(embed_cache.EmbeddingCache(tmp_path), model="m")  # a new process
    b = second.encode(["three", "one", "four"])
    assert calls[1:] == [["four"]] and second.computed == 1
    np.testing.assert_array_equal(b[:2], a[[1, 0]])
    other_model = embed_cache.CachedEmbedder(embed_cache.EmbeddingCache(tmp_path), model="other")
    other_model.encode(["one"])
    assert calls[-1] == ["one"]  # keyed by model too


def test_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(embed_cache.CACHE_ENV, str(tmp_path / "c"))
    assert embed_cache.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(embed_cache.CACHE_ENV)
    assert embed_cache.default_cache_dir().parts[-3:] == (".cache", "textclust", "bench")


def test_memo_clusterer_answers_a_repeated_fit_from_memory_with_its_own_copy(monkeypatch):
    """The benches' clustering memo: the second fit of the same data and settings is not
    computed again, gives the same labels, and a caller changing its labels spoils nothing."""
    import numpy as np

    from bench.memo_cluster import MemoClusterer
    from textclust.cluster import EmbeddingClusterer

    X = np.vstack([np.random.default_rng(0).normal(c, 0.1, (20, 4)) for c in (0.0, 3.0)])
    MemoClusterer.forget()
    fits = []
    real_fit = EmbeddingClusterer.fit
    monkeypatch.setattr(EmbeddingClusterer, "fit", lambda self, Z: fits.append(1) or real_fit(self, Z))
    template = EmbeddingClusterer(algorithm="kmeans", k=2, reduction="none")
    first = MemoClusterer.like(template).fit(X)
    labels = first.labels_.copy()
    first.labels_[:] = 7
    second = MemoClusterer.like(template).fit(X)
    assert len(fits) == 1
    assert (second.labels_ == labels).all() and len(set(labels.tolist())) == 2
    MemoClusterer.like(EmbeddingClusterer(algorithm="kmeans", k=3, reduction="none")).fit(X)
    assert len(fits) == 2  # other settings: computed
    MemoClusterer.forget()
