"""Which language model to use, and how: :class:`LLMConfig`.

Settings come from, highest precedence first:

1. explicit arguments (``model=``, ``base_url=``, …: the command line's flags or a Python caller's keywords);
2. the environment: ``TEXTCLUST_LLM_MODEL``, ``OPENAI_BASE_URL``, and the API key from the
   variable named by ``api_key_env`` (default ``OPENAI_API_KEY``);
3. the ``[llm]`` table of a TOML file: ``config_path``, else ``$TEXTCLUST_CONFIG``, else
   ``./textclust.toml``, else ``~/.config/textclust/config.toml``.

No model configured anywhere means no language model: :meth:`LLMConfig.resolve` returns
None and textclust uses its offline explainer. The key itself never lives in a file nor
in this object: only the *name* of the environment variable holding it, so the config
can be stored with a run (:meth:`LLMConfig.public_dict`).

Example ``textclust.toml``::

    [llm]
    model = "gpt-4o-mini"
    # base_url = "http://127.0.0.1:8080/v1"   # llama.cpp server, vLLM, Ollama, LM Studio…
    api_key_env = "OPENAI_API_KEY"
    max_calls = 200
    concurrency = 4
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

from ..errors import SettingsError, register_settings

STRUCTURED_MODES = ("auto", "json_schema", "json_object_schema", "json_object", "none")
CONFIG_ENV = "TEXTCLUST_CONFIG"
MODEL_ENV = "TEXTCLUST_LLM_MODEL"
BASE_URL_ENV = "OPENAI_BASE_URL"
LOCAL_CONFIG = "textclust.toml"


@dataclass
class LLMConfig:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    seed: int | None = 0
    timeout: float = 60.0
    max_retries: int = 5
    concurrency: int = 4
    max_calls: int | None = None
    max_tokens: int | None = None  # budget: prompt + completion tokens of the whole stage
    max_output_tokens: int | None = 2048  # per answer
    structured: str = "auto"  # auto | json_schema | json_object_schema | json_object | none
    price_prompt_per_mtok: float | None = None  # USD per million prompt tokens
    price_completion_per_mtok: float | None = None
    gguf: str | None = None  # a local model file, run in-process (textclust.llm.local)

    def __post_init__(self) -> None:
        _check_all(self, {})

    @classmethod
    def from_stored(cls, values: dict) -> "LLMConfig":
        """A stored run's model settings read back as they were (unknown keys ignored). Reading a
        run starts nothing, so a local model file that has since moved is no error here; it is
        when the run is resumed (``RunConfig.for_resume`` checks the settings again)."""
        known = {k: v for k, v in values.items() if k in {f.name for f in fields(cls)}}
        config = cls(**{**known, "gguf": None})
        config.gguf = known.get("gguf")
        return config

    def __repr__(self) -> str:
        return f"LLMConfig({', '.join(f'{k}={v!r}' for k, v in self.public_dict().items())})"

    def api_key(self, env: Mapping[str, str] = os.environ) -> str | None:
        """The key, read from the environment variable named ``api_key_env`` (None if unset)."""
        value = (env.get(self.api_key_env) or "").strip()
        return value or None

    def public_dict(self) -> dict:
        """Every setting, safe to store and show: the key is not part of it (only its variable's
        name), and credentials written into the base URL are masked."""
        values = asdict(self)
        if values["base_url"]:
            from .transport import public_url

            values["base_url"] = public_url(values["base_url"])
        return values

    @classmethod
    def resolve(cls, *, model: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
                config_path: str | os.PathLike | None = None, gguf: str | None = None,
                env: Mapping[str, str] = os.environ, **overrides) -> "LLMConfig | None":
        """Combine flags, environment and config file; None when no model is configured."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown LLM setting(s): {', '.join(sorted(unknown))}")
        values: dict = {}
        origin: dict[str, str] = {}

        path = _config_file(config_path, env)
        if path is not None:
            file_values = _read_toml(path)
            values.update(file_values)
            origin.update({k: f"{path} [llm] {k}" for k in file_values})

        if env.get(MODEL_ENV, "").strip():
            values["model"], origin["model"] = env[MODEL_ENV].strip(), MODEL_ENV
        if env.get(BASE_URL_ENV, "").strip():
            values["base_url"], origin["base_url"] = env[BASE_URL_ENV].strip(), BASE_URL_ENV

        explicit = dict(overrides, model=model, base_url=base_url, api_key_env=api_key_env, gguf=gguf)
        for key, value in explicit.items():
            if value is not None:
                values[key], origin[key] = value, _setting(key)

        if values.get("gguf") and "model" not in values:
            values["model"] = Path(str(values["gguf"])).name
            origin["model"] = origin["gguf"]
        if not values.get("model"):
            # A base URL given to textclust itself (flag or file) without a model is a mistake;
            # OPENAI_BASE_URL alone in the environment (set for other tools) is not.
            if values.get("base_url") and origin.get("base_url") != BASE_URL_ENV:
                raise SettingsError(
                    f"{origin['base_url']} needs {{model}} (or {MODEL_ENV}, or model in [llm] of a config "
                    "file): which model should the server run?"
                )
            return None
        if values.get("gguf") and values.get("base_url") and origin.get("base_url") != BASE_URL_ENV:
            raise SettingsError(
                f"{origin['gguf']} and {origin['base_url']} both name a model backend; give only one"
            )
        if values.get("gguf"):
            values.pop("base_url", None)  # an OPENAI_BASE_URL meant for other tools does not apply
        config = object.__new__(cls)
        for f in fields(cls):
            setattr(config, f.name, values.get(f.name, f.default))
        _check_all(config, origin)
        return config

    def make_transport(self):
        """The transport for this configuration (in-process for ``gguf``, else HTTP)."""
        if self.gguf:
            try:
                from .local import LlamaCppTransport
            except ModuleNotFoundError as err:
                raise SettingsError(f"{{gguf}} needs an optional package that is not installed: {err.name}") from None
            return LlamaCppTransport(self.gguf)
        from .transport import OpenAITransport

        key = self.api_key()
        if self.base_url is None and key is None:
            raise SettingsError(
                f"the OpenAI API needs a key: set {self.api_key_env} (or give {{base_url}} for a local server)"
            )
        return OpenAITransport(self.base_url, key, self.timeout)


# Messages name these settings as {name} placeholders: the keyword here, the flag on the command line.
register_settings(f.name for f in fields(LLMConfig))


def _setting(key: str) -> str:
    """How a message names setting ``key`` given as an argument (see :mod:`textclust.errors`)."""
    return "{%s}" % key


# --- the config file ------------------------------------------------------------------------------


def _config_file(config_path, env: Mapping[str, str]) -> Path | None:
    """The config file to read: an explicit one must exist; the default places are optional."""
    explicit = config_path if config_path is not None else (env.get(CONFIG_ENV) or None)
    if explicit is not None:
        path = Path(explicit).expanduser()
        label = "config file" if config_path is not None else f"{CONFIG_ENV}"
        if not path.is_file():
            raise SettingsError(f"{label} {path}: {'is a directory' if path.is_dir() else 'not found'}")
        return path
    home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (Path.cwd() / LOCAL_CONFIG, home / "textclust" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise SettingsError(f"config file {path}: reading TOML needs Python 3.11+ or the tomli package") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"config file {path}: not UTF-8 text") from None
    except OSError as err:
        raise SettingsError(f"config file {path}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"config file {path}: not valid TOML ({' '.join(str(err).split())})") from None
    table = data.get("llm", {})
    if not isinstance(table, dict):
        raise SettingsError(f"config file {path}: llm must be a table ([llm])")
    if any(k.lower().replace("-", "_") in ("api_key", "key", "openai_api_key") for k in table):
        raise SettingsError(
            f"config file {path}: [llm] must not hold the API key itself; put the key in an environment variable "
            'and name that variable with api_key_env = "VARIABLE"'
        )
    known = [f.name for f in fields(LLMConfig)]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} in [llm]: {', '.join(unknown)} "
            f"(known: {', '.join(known)})"
        )
    values = dict(table)
    if isinstance(values.get("gguf"), str) and values["gguf"]:
        gguf = Path(values["gguf"]).expanduser()
        values["gguf"] = str(gguf if gguf.is_absolute() else path.parent / gguf)
    return values


# --- checking values -----------------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_all(config: LLMConfig, origin: dict[str, str]) -> None:
    def where(key: str) -> str:
        return origin.get(key, _setting(key))

    def fail(key: str, wanted: str) -> None:
        got = "" if key == "api_key_env" else f" (got {getattr(config, key)!r})"  # might be a pasted key
        raise SettingsError(f"{where(key)} must be {wanted}{got}")

    def number(key: str, low: float, high: float | None = None, optional: bool = False, integer: bool = False,
               above: bool = False) -> None:
        value = getattr(config, key)
        if value is None and optional:
            return
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if isinstance(value, str) and not integer:  # flags or env vars may arrive as text
            try:
                value = float(value)
                ok = True
            except ValueError:
                ok = False
        elif isinstance(value, str) and integer and value.strip().lstrip("-").isdigit():
            value, ok = int(value), True
        if ok:
            ok = (value > low if above else value >= low) and (high is None or value <= high)
        if not ok:
            bound = f"> {low:g}" if above else f"≥ {low:g}"
            fail(key, f"{kind} {bound}" + (f" and ≤ {high:g}" if high is not None else ""))
        setattr(config, key, int(value) if integer else float(value))

    if not isinstance(config.model, str) or not config.model.strip():
        fail("model", "a non-empty model name")
    config.model = config.model.strip()
    if config.base_url is not None:
        if not isinstance(config.base_url, str) or not re.match(r"^https?://\S+$", config.base_url.strip()):
            fail("base_url", "an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1")
        config.base_url = config.base_url.strip()
    if not isinstance(config.api_key_env, str) or not _ENV_NAME.match(config.api_key_env):
        fail("api_key_env", "the NAME of an environment variable (not the key itself)")
    number("temperature", 0.0, 2.0)
    number("seed", 0, optional=True, integer=True)
    number("timeout", 0.0, above=True)
    number("max_retries", 0, 20, integer=True)
    number("concurrency", 1, 64, integer=True)
    number("max_calls", 0, optional=True, integer=True)
    number("max_tokens", 0, optional=True, integer=True)
    number("max_output_tokens", 1, optional=True, integer=True)
    number("price_prompt_per_mtok", 0.0, optional=True)
    number("price_completion_per_mtok", 0.0, optional=True)
    if config.structured not in STRUCTURED_MODES:
        fail("structured", "one of " + ", ".join(STRUCTURED_MODES))
    if config.gguf is not None:
        if not isinstance(config.gguf, str) or not config.gguf:
            fail("gguf", "the path of a .gguf model file")
        path = Path(config.gguf).expanduser()
        if not path.is_file():
            raise SettingsError(f"{where('gguf')} {config.gguf}: model file not found")
        config.gguf = str(path)
