"""The run's configuration tree: defaults written once (in textclust.config), settings named by
their keyword in Python and by their flag on the command line, stored and read back whole."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import pytest

import textclust
from textclust.cli import SETTING_OPTIONS, SettingOption, cli, error_line, flag_for, run_config, spell
from textclust.config import FLAT, RunConfig, Settings, default_of, model_identity
from textclust.errors import InputError, SettingsError
from textclust.explain.user_candidates import (UserCandidate, collect_user_candidates, parse_user_candidate,
                                               read_user_candidates_file)
from textclust.llm.config import LLMConfig

GOOD_CSV = "id,text\n1,my parcel never arrived\n2,the box was crushed\n3,charged twice for one order\n"
TEXTS = ["my parcel never arrived", "the box was crushed", "charged twice for one order"]
# Settings a Python caller may give that have no flag (the CLI never sets them).
PYTHON_ONLY = {"min_samples", "lambda_miss", "lambda_overlap"}
# The language model's settings the CLI passes to LLMConfig.resolve (their messages name them).
CLI_MODEL_SETTINGS = ("model", "base_url", "api_key_env", "gguf", "timeout", "structured", "max_calls",
                      "max_tokens", "concurrency", "seed")


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch):
    """No language model from the environment or a config file."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTCLUST_LLM_MODEL", "TEXTCLUST_CONFIG", "TEXTCLUST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return work


def params(*args: str, command: str = "run") -> dict:
    """What click hands the command for ``textclust COMMAND in.csv --goal g ARGS``."""
    extra = ["--label-column", "reason"] if command == "eval" else []
    return cli.commands[command].make_context(command, ["in.csv", "--goal", "g", *extra, *args]).params


def run_flags(command: str = "run") -> set[str]:
    return {opt for param in cli.commands[command].params for opt in param.opts}


# --- defaults are written once ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "eval"])
def test_no_flags_give_the_dataclass_defaults(command):
    config = run_config(params(command=command))
    assert config == RunConfig()
    assert config.model is None
    assert config.to_dict() == RunConfig().to_dict()


def test_setting_options_default_to_not_given_and_show_the_config_default(cli_invoke):
    options = [p for p in cli.commands["run"].params if isinstance(p, SettingOption)]
    assert sorted(o.setting for o in options) == sorted(SETTING_OPTIONS)
    help_text = " ".join(cli_invoke("run", "--help").stdout.split())
    for option in options:
        assert option.default is None, option.opts
        value = default_of(option.setting)
        if value is not None:
            assert f"[default: {value}]" in help_text, option.opts


def test_flags_set_their_settings():
    config = run_config(params("--k", "5", "--clusterer", "kmeans", "--reduction", "pca", "--n-components", "4",
                               "--min-cluster-size", "7", "--max-cluster-share", "0.6", "--embedding-model", "e",
                               "--rounds", "4", "--min-share", "0.01", "--seed", "7", "--candidate", "refund: money",
                               "--only-candidates", "--example", "an example", "--depth", "2", "--n-samples", "11",
                               "--n-explanations", "3", "--batch-size", "2", "--prefilter", "0",
                               "--escalations", "1", "--merge-threshold", "0.8", "--max-candidate-share", "0.4",
                               "--max-chars", "300"))
    assert config.flat() == {**RunConfig().flat(),
                             "k": 5, "clusterer": "kmeans", "reduction": "pca", "n_components": 4,
                             "min_cluster_size": 7, "max_cluster_share": 0.6, "embedding_model": "e", "rounds": 4,
                             "min_share": 0.01, "random_state": 7,
                             "candidates": [{"name": "refund", "explanation": "money"}], "only_candidates": True,
                             "examples": ["an example"], "depth": 2, "n_samples": 11, "n_explanations": 3,
                             "batch_size": 2, "prefilter": 0, "escalations": 1, "merge_threshold": 0.8,
                             "max_candidate_share": 0.4, "max_chars": 300}


def test_the_models_seed_is_the_runs_seed(clean):
    (clean / "textclust.toml").write_text('[llm]\nmodel = "file-model"\nseed = 5\n', encoding="utf-8")
    config = run_config(params("--llm-base-url", "http://127.0.0.1:9/v1"))
    assert config.model.model == "file-model" and config.model.base_url == "http://127.0.0.1:9/v1"
    assert config.model.seed == default_of("random_state") == config.random_state  # --seed not given: 0, as ever
    assert run_config(params("--seed", "3")).model.seed == 3
    assert run_config(params("--no-llm")).model is None


def test_the_python_api_gives_the_model_the_runs_seed_too():
    """The rule lives in the configuration, not only in the CLI: textclust.run(random_state=7, llm=…)."""
    mine = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", seed=5)
    config = RunConfig.from_flat(model=mine, random_state=7)
    assert config.model.seed == 7 and config.model.model == "m"
    assert mine.seed == 5  # the caller's configuration is left as it was
    assert RunConfig.from_flat(model=mine).model.seed == default_of("random_state")


def test_settings_is_from_flat():
    assert Settings(k=4, clusterer="kmeans") == RunConfig.from_flat(k=4, clusterer="kmeans")
    assert Settings(seeds=[{"name": "a", "explanation": "b"}]).explaining.user_candidates == [
        {"name": "a", "explanation": "b"}]
    assert textclust.Settings is Settings and textclust.RunConfig is RunConfig
    for name in ("Pipeline", "Settings", "RunConfig", "LLMConfig", "Database", "RunResult", "ClusterSummary",
                 "load_run", "run", "run_texts", "TextclustError", "__version__"):
        assert name in textclust.__all__ and getattr(textclust, name) is not None


# --- every setting has its flag -------------------------------------------------------------------


def test_every_flat_name_maps_to_a_flag_of_run():
    flags = run_flags()
    for name in FLAT:
        if name in PYTHON_ONLY:
            continue
        for flag in flag_for(name).split(" or "):
            assert flag in flags, (name, flag)
    for name in (*CLI_MODEL_SETTINGS, "goal", "candidate", "candidates_file"):
        assert flag_for(name) in flags, name
    assert flag_for("k") == "--k" and flag_for("random_state") == "--seed"
    assert flag_for("embedding_model") == "--embedding-model" and flag_for("model") == "--llm-model"
    assert flag_for("candidates") == "--candidate or --candidates" and flag_for("examples") == "--example"


def test_every_setting_option_is_named_by_its_flag():
    for param in cli.commands["run"].params:
        if isinstance(param, SettingOption):
            assert param.setting in FLAT and flag_for(param.setting) == param.opts[0], param.opts


def test_other_commands_flags():
    for command, names in {"resume": ("api_key_env", "max_calls", "max_tokens", "concurrency"),
                           "report": ("max_points", "max_listed", "format"), "export": ("format",)}.items():
        for name in names:
            assert flag_for(name) in run_flags(command), (command, name)
    assert flag_for("dry_run") in run_flags("run") and flag_for("db") in run_flags("run")
    for name in ("text_column", "id_column", "format"):
        assert flag_for(name) in run_flags("run")


# --- messages: flags on the command line, keywords in Python ---------------------------------------


CASES = [
    # (flags, keywords, the CLI's line, Python's message)
    (("--k", "0"), dict(k=0), "--k must be at least 1 (got 0)", "k must be at least 1 (got 0)"),
    (("--rounds", "0"), dict(rounds=0), "--rounds must be at least 1", "rounds must be at least 1"),
    (("--only-candidates",), dict(only_candidates=True), "--only-candidates needs --candidate or --candidates",
     "only_candidates needs candidates"),
    (("--depth", "2"), dict(depth=2), "--depth 2 needs a language model (--llm-model)",
     "depth 2 needs a language model (model)"),
    (("--example", "x"), dict(examples=["x"]), "--example needs a language model (--llm-model)",
     "examples needs a language model (model)"),
    (("--min-cluster-size", "1"), dict(min_cluster_size=1), "--min-cluster-size must be at least 2 (got 1)",
     "min_cluster_size must be at least 2 (got 1)"),
    (("--max-chars", "5"), dict(max_chars=5), "--max-chars must be at least 20 (got 5)",
     "max_chars must be at least 20 (got 5)"),
    (("--k", "1", "--candidate", "a: one", "--candidate", "b: two"),
     dict(k=1, candidates=[{"name": "a", "explanation": "one"}, {"name": "b", "explanation": "two"}]),
     "--k 1 is less than the 2 seeded explanations", "k 1 is less than the 2 seeded explanations"),
    (("--llm-model", "m", "--llm-base-url", "http://127.0.0.1:9/v1", "--concurrency", "0"),
     dict(llm={"model": "m", "base_url": "http://127.0.0.1:9/v1", "concurrency": 0}),
     "--concurrency must be an integer ≥ 1 and ≤ 64 (got 0)",
     "concurrency must be an integer ≥ 1 and ≤ 64 (got 0)"),
    (("--llm-model", "m", "--llm-base-url", "http://127.0.0.1:9/v1", "--max-calls", "-1"),
     dict(llm={"model": "m", "base_url": "http://127.0.0.1:9/v1", "max_calls": -1}),
     "--max-calls must be an integer ≥ 0 (got -1)", "max_calls must be an integer ≥ 0 (got -1)"),
    (("--llm-base-url", "http://127.0.0.1:9/v1"), None, "--llm-base-url needs --llm-model", None),
]


@pytest.mark.parametrize("flags, keywords, cli_line, python_message", CASES, ids=[c[2][:40] for c in CASES])
def test_messages_name_flags_on_the_command_line(flags, keywords, cli_line, python_message, cli_invoke, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(GOOD_CSV, encoding="utf-8")
    db = tmp_path / "cli.db"
    result = cli_invoke("run", source, "--goal", "g", "--db", db, *flags)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith(f"textclust: error: {cli_line}"), line
    assert "\n" not in line and "{" not in line
    assert not db.exists()


@pytest.mark.parametrize("flags, keywords, cli_line, python_message",
                         [c for c in CASES if c[1] is not None], ids=[c[3][:40] for c in CASES if c[1] is not None])
def test_messages_name_keywords_in_python(flags, keywords, cli_line, python_message, tmp_path):
    db = tmp_path / "py.db"
    with pytest.raises(SettingsError) as caught:
        textclust.run_texts(TEXTS, goal="g", db=db, **keywords)
    message = str(caught.value)
    assert message.startswith(python_message), message
    assert not re.search(r"(^|[\s(])--[a-z]", message) and "{" not in message, message
    assert not db.exists()


def test_goal_and_unknown_keyword(tmp_path, cli_invoke):
    db = tmp_path / "g.db"
    with pytest.raises(SettingsError, match=r"^goal must not be empty$"):
        textclust.run_texts(TEXTS, goal="  ", db=db)
    with pytest.raises(SettingsError, match=r"^unknown setting 'colour'"):
        textclust.run_texts(TEXTS, goal="g", db=db, colour="blue")
    assert not db.exists()


def test_user_candidate_messages(tmp_path, cli_invoke):
    missing = tmp_path / "missing.json"
    with pytest.raises(InputError) as caught:
        read_user_candidates_file(missing)
    assert str(caught.value) == f"candidates_file {missing}: no such file"
    assert error_line(caught.value) == f"--candidates {missing}: no such file"
    with pytest.raises(InputError) as caught:
        collect_user_candidates([":x"])
    assert str(caught.value) == "candidate ':x': ':x' has a name or an explanation missing around ':'"
    assert error_line(caught.value) == "--candidate ':x': ':x' has a name or an explanation missing around ':'"
    with pytest.raises(InputError, match=r"^candidate: empty explanation$"):
        parse_user_candidate("  ")
    assert collect_user_candidates(["a: one"]) == [UserCandidate("a", "one")]
    source = tmp_path / "in.csv"
    source.write_text(GOOD_CSV, encoding="utf-8")
    result = cli_invoke("run", source, "--goal", "g", "--db", tmp_path / "x.db", "--candidates", missing)
    assert result.stderr == f"textclust: error: --candidates {missing}: no such file\n"


def test_model_messages_name_flags_in_the_cli_only():
    from textclust.llm.client import LLMClient

    class Transport:
        server = "http://127.0.0.1:9/v1"

    class Store:
        def structured_capability(self, server, model):
            return None

    for budget, flag in ((dict(max_calls=0), "--max-calls"), (dict(max_tokens=1), "--max-tokens")):
        client = LLMClient(LLMConfig(model="m", base_url=Transport.server, **budget), Store(), transport=Transport())
        with pytest.raises(textclust.TextclustError) as caught:
            client._reserve([{"role": "user", "content": "a text"}])
        name = flag[2:].replace("-", "_")
        assert str(caught.value).startswith(f"{name} ") and f"a higher {name} to continue" in str(caught.value)
        assert error_line(caught.value).startswith(f"{flag} ") and f"a higher {flag} to continue" in error_line(
            caught.value)
        # What a run stores as its stop reason keeps the names; the CLI spells them when it prints.
        assert spell(f"budget exceeded: {caught.value.template}").startswith(f"budget exceeded: {flag} ")


def test_a_message_changed_after_it_was_raised_is_printed_as_it_is():
    """The client masks keys in a copy of an error by replacing its text: the CLI must print that
    text, not re-render the unmasked template."""
    err = SettingsError("{k} sk-SECRET-0123456789 is wrong")
    err.args = ("k *** is wrong",)
    assert error_line(err) == "k *** is wrong"
    assert error_line(SettingsError("{k} is wrong")) == "--k is wrong"


# --- storing ----------------------------------------------------------------------------------------


def test_to_dict_from_dict_round_trip_with_a_model():
    model = LLMConfig(model="m", base_url="http://127.0.0.1:8080/v1", api_key_env="MY_KEY", temperature=0.2,
                      seed=7, timeout=30, concurrency=2, max_calls=50, max_tokens=10_000, structured="json_object",
                      price_prompt_per_mtok=0.15)
    config = RunConfig.from_flat(model=model, k=3, clusterer="kmeans", reduction="pca", embedding_model="e",
                                 candidates=[UserCandidate("refund", "money back")], examples=["an example"], depth=2,
                                 max_candidate_share=0.4, random_state=7)
    data = json.loads(json.dumps(config.to_dict()))
    again = RunConfig.from_dict(data)
    assert again == config
    assert again.model == model and again.explaining.user_candidates == [{"name": "refund",
                                                                          "explanation": "money back"}]
    assert again.to_dict() == data and again.result_key() == config.result_key()
    assert RunConfig.from_dict(json.loads(json.dumps(RunConfig().to_dict()))) == RunConfig()


def test_a_key_in_the_base_url_is_never_stored():
    url = "https://user:pw-SENTINEL-99@llm.example/v1?api-key=KEY-SENTINEL-1"
    config = RunConfig.from_flat(model={"model": "m", "base_url": url})
    stored = json.dumps(config.to_dict())
    assert "SENTINEL" not in stored
    assert "SENTINEL" not in json.dumps(config.result_key()) and "SENTINEL" not in json.dumps(
        model_identity(config.model))
    assert "SENTINEL" not in repr(config)
    assert json.loads(stored)["model"]["base_url"] == "https://user:***@llm.example/v1?api-key=***"
    assert "SENTINEL" not in json.dumps(RunConfig.from_dict(json.loads(stored)).to_dict())
    assert {f.name for f in fields(LLMConfig)} >= set(json.loads(stored)["model"])


# --- what the CLI and the Python API hand the pipeline ----------------------------------------------


class Stop(SettingsError):
    pass


class FakePipeline:
    """Records how it was built and called, then stops the command."""

    seen: dict = {}

    def __init__(self, db, config=None, **kwargs):
        FakePipeline.seen = {"db": db, "config": config, **kwargs}

    def identical_run(self, corpus, goal, reuse=True):
        return None  # nothing to reuse: the command goes on to run()

    def run(self, corpus, goal):
        FakePipeline.seen.update(corpus=corpus, goal=goal)
        raise Stop("stopped by the test")

    def run_or_reuse(self, corpus, goal, hint=""):
        return self.run(corpus, goal), False  # nothing to reuse

    def resume(self, run_id, **kwargs):
        FakePipeline.seen.update(run_id=run_id, **kwargs)
        raise Stop("stopped by the test")


@pytest.fixture
def fake_pipeline(monkeypatch):
    import textclust.pipeline

    monkeypatch.setattr(textclust.pipeline, "Pipeline", FakePipeline)
    FakePipeline.seen = {}
    return FakePipeline


def test_cli_run_hands_the_pipeline_its_config(fake_pipeline, cli_invoke, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(GOOD_CSV, encoding="utf-8")
    result = cli_invoke("run", source, "--goal", " g ", "--db", tmp_path / "x.db")
    assert result.stderr.strip().splitlines()[-1] == "textclust: error: stopped by the test"
    assert fake_pipeline.seen["config"] == RunConfig() and callable(fake_pipeline.seen["log"])
    assert fake_pipeline.seen["goal"] == " g " and fake_pipeline.seen["corpus"].n_texts == 3


def test_cli_resume_passes_the_budget_overrides(fake_pipeline, cli_invoke, monkeypatch, tmp_path):
    import textclust.cli

    monkeypatch.setattr(textclust.cli, "_existing_db", lambda path: "the database")
    result = cli_invoke("resume", "4", "--max-calls", "9", "--concurrency", "2", "--llm-api-key-env", "K",
                        "--db", tmp_path / "x.db")
    assert result.stderr.strip() == "textclust: error: stopped by the test"
    assert fake_pipeline.seen == {"db": "the database", "config": None, "log": textclust.cli._log, "run_id": 4,
                                  "api_key_env": "K", "max_calls": 9, "max_tokens": None, "concurrency": 2}


def test_python_api_hands_the_pipeline_its_config_and_components(fake_pipeline, tmp_path):
    embedder, clusterer, client = object(), object(), object()
    with pytest.raises(Stop):
        textclust.run_texts(TEXTS, goal="g", db=tmp_path / "x.db", k=2, llm={"model": "m", "base_url": "http://h/v1"},
                            embedder=embedder, clusterer=clusterer, client=client)
    seen = fake_pipeline.seen
    assert seen["config"] == RunConfig.from_flat(model=LLMConfig(model="m", base_url="http://h/v1"), k=2)
    assert (seen["embedder"], seen["clusterer"], seen["client"]) == (embedder, clusterer, client)
    with pytest.raises(Stop):  # a string is the setting, the algorithm's name
        textclust.run_texts(TEXTS, goal="g", db=tmp_path / "x.db", k=2, clusterer="kmeans")
    assert fake_pipeline.seen["config"].clustering.algorithm == "kmeans" and fake_pipeline.seen.get("clusterer") is None


# The flat settings runs were keyed by before the tree (schema ≤ 3), as Settings().to_dict() gave them.
OLD_DEFAULT_SETTINGS = {
    "k": None, "clusterer": "auto", "reduction": "umap", "n_components": 10, "min_cluster_size": None,
    "min_samples": 5, "max_cluster_share": 0.5, "embedding_model": "all-MiniLM-L6-v2", "rounds": None,
    "min_share": 0.005, "lambda_miss": 1.0, "lambda_overlap": 0.5, "random_state": 0, "seeds": None,
    "only_candidates": False, "llm": None, "examples": None, "depth": 1, "n_samples": 40, "n_explanations": 8,
    "batch_size": 10, "prefilter": 5, "escalations": 3, "merge_threshold": 0.9, "max_candidate_share": None,
    "max_chars": 1000,
}


def test_a_run_stored_before_the_tree_is_found_by_the_same_command():
    """The result key keeps the old flat shape, so re-running a command resumes (or `eval`
    reuses) a run that an earlier version stored."""
    from textclust.store.database import settings_key

    # Same shape and names; the reduction's default became "auto" (issue 16: the default
    # clusterer changed), so an old default run is not taken for a new one.
    assert settings_key(1, "g", RunConfig().result_key()) == settings_key(1, "g", {**OLD_DEFAULT_SETTINGS,
                                                                                   "reduction": "auto"})
    assert settings_key(1, "g", RunConfig().result_key()) != settings_key(1, "g", OLD_DEFAULT_SETTINGS)
    changed = RunConfig.from_flat(k=4, reduction="umap", candidates=[{"name": "x", "explanation": "y"}])
    old = {**OLD_DEFAULT_SETTINGS, "k": 4, "seeds": [{"name": "x", "explanation": "y"}]}
    assert settings_key(1, "g", changed.result_key()) == settings_key(1, "g", old)


def test_reading_a_stored_run_whose_local_model_file_moved_is_no_error(tmp_path):
    """Validation belongs to starting a run: a stored run's settings read back even when its .gguf
    file is gone (show, export, report still work); resuming it says the file is missing."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    stored = RunConfig.from_flat(model=LLMConfig(model="local", gguf=str(gguf))).to_dict()
    gguf.unlink()
    config = RunConfig.from_dict(json.loads(json.dumps(stored)))
    assert config.model.gguf == str(gguf)
    with pytest.raises(SettingsError, match="model file not found"):
        config.for_resume()
