"""Which language model is used: flags > environment > TOML config file; errors are one line."""

from __future__ import annotations

import os
import re

import pytest

from textclust.cli import error_line
from textclust.errors import SettingsError
from textclust.llm import LLMConfig
from textclust.llm.transport import OpenAITransport

SENTINEL = "sk-config-SENTINEL-0123456789abcdef"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty working directory and config home; a clean environment."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTCLUST_LLM_MODEL", "TEXTCLUST_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def env(**values):
    return {k: v for k, v in values.items()}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(match, **kwargs):
    """The error's line as the command line prints it (settings spelled as flags), which must
    match ``match``; ``str(err)``, what Python callers see, names the keywords and no flag."""
    with pytest.raises(SettingsError) as caught:
        LLMConfig.resolve(**kwargs)
    message, python = error_line(caught.value), str(caught.value)
    assert re.search(match, message), message
    assert "\n" not in message and "\n" not in python
    assert all(f"{{{name}}}" not in python for name in caught.value.settings)
    assert not re.search(r"(^|\s)--[a-z]", python), python
    return message


# --- where settings come from ---------------------------------------------------------------------------


def test_nothing_configured_means_offline(home):
    assert LLMConfig.resolve(env={}) is None
    # A key or a base URL in the environment, set for other tools, does not switch the model on.
    assert LLMConfig.resolve(env=env(OPENAI_API_KEY=SENTINEL, OPENAI_BASE_URL="http://localhost:1/v1")) is None
    # Neither do budget flags alone.
    assert LLMConfig.resolve(max_calls=5, concurrency=2, env={}) is None


def test_flags_only(home):
    config = LLMConfig.resolve(model="gpt-4o-mini", env={})
    assert config == LLMConfig(model="gpt-4o-mini")
    assert (config.temperature, config.seed, config.structured, config.max_output_tokens) == (0.0, 0, "auto", 2048)


def test_precedence_flags_over_env_over_file(home):
    write(home / "work" / "textclust.toml", """
[llm]
model = "file-model"
base_url = "http://file:1/v1"
concurrency = 2
max_calls = 10
timeout = 30
""")
    from_file = LLMConfig.resolve(env={})
    assert (from_file.model, from_file.base_url, from_file.concurrency, from_file.max_calls, from_file.timeout) == (
        "file-model", "http://file:1/v1", 2, 10, 30.0)
    from_env = LLMConfig.resolve(env=env(TEXTCLUST_LLM_MODEL="env-model", OPENAI_BASE_URL="http://env:2/v1"))
    assert (from_env.model, from_env.base_url, from_env.concurrency) == ("env-model", "http://env:2/v1", 2)
    from_flags = LLMConfig.resolve(model="flag-model", base_url="http://flag:3/v1", max_calls=3,
                                   env=env(TEXTCLUST_LLM_MODEL="env-model", OPENAI_BASE_URL="http://env:2/v1"))
    assert (from_flags.model, from_flags.base_url, from_flags.max_calls, from_flags.concurrency) == (
        "flag-model", "http://flag:3/v1", 3, 2)
    # A flag left unset (None) does not override anything.
    assert LLMConfig.resolve(max_calls=None, env={}).max_calls == 10


def test_config_file_locations(home):
    xdg = write(home / "xdg" / "textclust" / "config.toml", '[llm]\nmodel = "xdg-model"\n')
    assert LLMConfig.resolve(env={"XDG_CONFIG_HOME": str(home / "xdg")}).model == "xdg-model"
    write(home / "work" / "textclust.toml", '[llm]\nmodel = "local-model"\n')
    assert LLMConfig.resolve(env={"XDG_CONFIG_HOME": str(home / "xdg")}).model == "local-model"
    named = write(home / "named.toml", '[llm]\nmodel = "named-model"\n')
    assert LLMConfig.resolve(env={"TEXTCLUST_CONFIG": str(named)}).model == "named-model"
    assert LLMConfig.resolve(config_path=xdg, env={"TEXTCLUST_CONFIG": str(named)}).model == "xdg-model"


def test_a_file_without_llm_table_is_fine(home):
    write(home / "work" / "textclust.toml", '[embed]\nmodel = "all-MiniLM-L6-v2"\n')
    assert LLMConfig.resolve(env={}) is None


def test_api_key_comes_from_the_named_variable(home):
    config = LLMConfig.resolve(model="m", api_key_env="MY_LLM_KEY", env={})
    assert config.api_key({"MY_LLM_KEY": SENTINEL, "OPENAI_API_KEY": "other"}) == SENTINEL
    assert config.api_key({}) is None
    assert config.api_key({"MY_LLM_KEY": "  "}) is None
    public = config.public_dict()
    assert public["api_key_env"] == "MY_LLM_KEY" and "api_key" not in public
    assert SENTINEL not in repr(config) and SENTINEL not in str(public)


def test_settings_arrive_as_text_from_the_command_line(home):
    config = LLMConfig.resolve(model="m", temperature="0.2", max_calls="7", env={})
    assert (config.temperature, config.max_calls) == (0.2, 7)


# --- mistakes are one-line SettingsErrors ---------------------------------------------------------------


def test_base_url_without_model_is_refused(home):
    message = one_line_error("needs --llm-model", base_url="http://127.0.0.1:8080/v1", env={})
    assert message.startswith("--llm-base-url needs --llm-model")
    with pytest.raises(SettingsError, match=r"^base_url needs model \(or TEXTCLUST_LLM_MODEL"):
        LLMConfig.resolve(base_url="http://127.0.0.1:8080/v1", env={})  # Python: the keywords
    write(home / "work" / "textclust.toml", '[llm]\nbase_url = "http://127.0.0.1:8080/v1"\n')
    message = one_line_error("needs --llm-model", env={})
    assert "textclust.toml [llm] base_url needs --llm-model" in message


def test_bad_toml(home):
    write(home / "work" / "textclust.toml", '[llm]\nmodel = "unterminated\n')
    message = one_line_error(r"textclust\.toml: not valid TOML", env={})
    assert message.startswith("config file ")


def test_unknown_key_in_file(home):
    write(home / "work" / "textclust.toml", '[llm]\nmodel = "m"\nmodle = "typo"\n')
    one_line_error(r"unknown key in \[llm\]: modle \(known: model, base_url", env={})


def test_key_in_file_is_refused_without_echoing_it(home):
    write(home / "work" / "textclust.toml", f'[llm]\nmodel = "m"\napi_key = "{SENTINEL}"\n')
    message = one_line_error("must not hold the API key itself", env={})
    assert SENTINEL not in message and "api_key_env" in message


def test_key_pasted_as_the_variable_name_is_not_echoed(home):
    message = one_line_error("the NAME of an environment variable", model="m", api_key_env=SENTINEL, env={})
    assert SENTINEL not in message


@pytest.mark.parametrize("line, match", [
    ("concurrency = 0", r"\[llm\] concurrency must be an integer ≥ 1 and ≤ 64 \(got 0\)"),
    ("temperature = \"hot\"", r"temperature must be a number ≥ 0 and ≤ 2"),
    ("max_calls = -1", r"max_calls must be an integer ≥ 0"),
    ("max_retries = 2.5", r"max_retries must be an integer"),
    ("timeout = 0", r"timeout must be a number > 0"),
    ("structured = \"xml\"", r"structured must be one of auto, json_schema, json_object_schema, json_object, none"),
    ("base_url = \"localhost:8080\"", r"base_url must be an http:// or https:// URL"),
    ("seed = true", r"seed must be an integer"),
    ("llm = 3", r"unknown key in \[llm\]: llm"),
])
def test_bad_values_in_file(home, line, match):
    write(home / "work" / "textclust.toml", f'[llm]\nmodel = "m"\n{line}\n')
    one_line_error(match, env={})


def test_bad_flag_value_names_the_flag(home):
    one_line_error(r"^--concurrency must be an integer ≥ 1", model="m", concurrency=0, env={})
    one_line_error(r"^--max-calls must be an integer ≥ 0", model="m", max_calls=-3, env={})
    one_line_error(r"^--llm-timeout must be a number > 0", model="m", timeout=0, env={})
    one_line_error(r"^--seed must be an integer ≥ 0", model="m", seed=-1, env={})


def test_bad_keyword_value_names_the_keyword(home):
    """From Python the same mistakes name the keyword (of resolve, or of LLMConfig itself)."""
    with pytest.raises(SettingsError, match=r"^concurrency must be an integer ≥ 1 and ≤ 64 \(got 0\)$"):
        LLMConfig.resolve(model="m", concurrency=0, env={})
    with pytest.raises(SettingsError, match=r"^max_calls must be an integer ≥ 0 \(got -3\)$"):
        LLMConfig(model="m", max_calls=-3)
    with pytest.raises(SettingsError) as caught:
        LLMConfig(model="m", timeout=0)
    assert error_line(caught.value).startswith("--llm-timeout must be")  # the CLI spells it as its flag


def test_llm_not_a_table(home):
    write(home / "work" / "textclust.toml", 'llm = "gpt"\n')
    one_line_error(r"llm must be a table", env={})


def test_explicit_config_file_must_exist(home):
    one_line_error(r"^config file .*missing\.toml: not found", config_path=home / "missing.toml", env={})
    one_line_error(r"^TEXTCLUST_CONFIG .*gone\.toml: not found", env={"TEXTCLUST_CONFIG": str(home / "gone.toml")})


def test_unknown_override_is_a_programming_error(home):
    with pytest.raises(TypeError):
        LLMConfig.resolve(model="m", colour="blue", env={})


# --- local model file ------------------------------------------------------------------------------------


def test_gguf_names_the_model_and_must_exist(home):
    model_file = write(home / "models" / "tiny.Q4_K_M.gguf", "not really a model")
    config = LLMConfig.resolve(gguf=str(model_file), env={"OPENAI_BASE_URL": "http://elsewhere/v1"})
    assert config.model == "tiny.Q4_K_M.gguf" and config.gguf == str(model_file)
    assert config.base_url is None  # OPENAI_BASE_URL meant for other tools does not apply
    one_line_error(r"--llm-gguf .*nothing\.gguf: model file not found", gguf=str(home / "nothing.gguf"), env={})
    one_line_error(r"both name a model backend", gguf=str(model_file), base_url="http://x/v1", env={})


def test_gguf_relative_to_the_config_file(home):
    write(home / "conf" / "models" / "m.gguf", "x")
    path = write(home / "conf" / "textclust.toml", '[llm]\ngguf = "models/m.gguf"\n')
    config = LLMConfig.resolve(config_path=path, env={})
    assert config.gguf == str(home / "conf" / "models" / "m.gguf")


# --- transports -------------------------------------------------------------------------------------------


def test_openai_needs_a_key_local_servers_do_not(home, monkeypatch):
    with pytest.raises(SettingsError, match="the OpenAI API needs a key: set OPENAI_API_KEY"):
        LLMConfig(model="gpt-4o-mini").make_transport()
    local = LLMConfig(model="qwen", base_url="http://127.0.0.1:8080/v1/").make_transport()
    assert isinstance(local, OpenAITransport) and local.server == "http://127.0.0.1:8080/v1"
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    remote = LLMConfig(model="gpt-4o-mini").make_transport()
    assert remote.server == "https://api.openai.com/v1"
    assert SENTINEL not in repr(remote) and SENTINEL not in remote.server
    assert os.environ["OPENAI_API_KEY"] == SENTINEL


def test_credentials_in_the_base_url_are_masked(home):
    config = LLMConfig.resolve(model="m", base_url="https://user:pw-SENTINEL-99@llm.example/v1?api-key=KEY-SENTINEL-1",
                               env={})
    public = config.public_dict()
    assert public["base_url"] == "https://user:***@llm.example/v1?api-key=***"
    assert "SENTINEL" not in repr(config)
    transport = config.make_transport()
    assert "SENTINEL" not in transport.server and transport.server.startswith("https://user:***@llm.example/v1")
