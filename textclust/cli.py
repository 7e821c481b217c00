"""The command line: a thin click layer over the importable core.

User-facing problems (:class:`TextclustError`) print one line on stderr and exit 2;
nothing the user types should ever show a traceback.

The library names settings, never flags: its messages say ``{k}``, ``{clusterer}``…
(see :mod:`textclust.errors`), and this module spells each as its flag (:func:`flag_for`).
The defaults of the settings are written once, in :mod:`textclust.config`; an option
left unset leaves its setting at that default, and ``--help`` shows it from there.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from .config import CLUSTERERS, REDUCTIONS, default_of
from .errors import TextclustError, register_settings, render_settings
from .llm.config import STRUCTURED_MODES, LLMConfig

DB_OPTION = click.option(
    "--db",
    "db_path",
    default=lambda: os.environ.get("TEXTCLUST_DB", "textclust.db"),
    show_default="textclust.db or $TEXTCLUST_DB",
    help="SQLite database that records corpora, runs and results: a file path or sqlite:///PATH.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


# Settings whose flag is not "--" + the name with "-" for "_".
FLAGS = {
    "random_state": "--seed",
    "seed": "--seed",  # the language model's seed is the run's --seed
    "candidates": "--candidate or --candidates",
    "candidate": "--candidate",  # one "NAME: explanation" string
    "candidates_file": "--candidates",  # the file of them
    "examples": "--example",
    "model": "--llm-model",
    "base_url": "--llm-base-url",
    "api_key_env": "--llm-api-key-env",
    "gguf": "--llm-gguf",
    "timeout": "--llm-timeout",
    "structured": "--llm-structured",
}


# Names of the CLI's own that library messages use ("{dry_run} estimates…": Pipeline.estimate is the
# dry run). The module raising such a message registers the name too, for Python callers' str(err).
register_settings(("dry_run",))


def flag_for(name: str) -> str:
    """The flag that sets setting ``name`` (how messages name it on the command line)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def spell(text: str | None) -> str | None:
    """Library text that names settings as ``{name}`` (stored stop reasons, notices, log
    lines), with each setting spelled as its flag."""
    return None if text is None else render_settings(text, flag_for)


def error_line(err: TextclustError) -> str:
    """The error's message with its settings spelled as flags."""
    plain = str(err)
    if render_settings(err.template, lambda name: name) != plain:
        return plain  # changed since it was raised (e.g. a key masked in it): show it as it is now
    return err.render(flag_for)


class SettingOption(click.Option):
    """An option that sets one setting of :class:`~textclust.config.RunConfig` (``setting``,
    its flat name). The option defaults to None, "not given", which leaves the setting at its
    default in :mod:`textclust.config`; ``--help`` shows that default, read from there."""

    def __init__(self, *args, setting: str, **kwargs):
        self.setting = setting
        value = default_of(setting)
        if value is not None:
            kwargs.setdefault("show_default", str(value))
        super().__init__(*args, default=None, **kwargs)

    def get_help_record(self, ctx):
        record = super().get_help_record(ctx)
        if record and isinstance(self.show_default, str):  # click writes a text default in parentheses
            record = (record[0], record[1].replace(f"[default: ({self.show_default})]",
                                                   f"[default: {self.show_default}]"))
        return record


def setting_option(*decls: str, setting: str | None = None, **kwargs):
    """``click.option`` for a setting; ``setting`` defaults to the option's name (``--n-samples``:
    ``n_samples``)."""
    setting = setting or decls[-1].lstrip("-").replace("-", "_")
    return click.option(*decls, cls=SettingOption, setting=setting, **kwargs)


def _llm_shown(name: str) -> str:
    """A language-model setting's default as ``--help`` shows it (read from LLMConfig)."""
    from dataclasses import fields

    value = next(f.default for f in fields(LLMConfig) if f.name == name)
    return f"{value:g}" if isinstance(value, float) else str(value)


class RunId(click.ParamType):
    """A run's id, or ``latest`` for the user's last run (the one a command last made, resumed or reused)."""

    name = "RUN_ID"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).strip().lower() == "latest":
            return value if isinstance(value, int) else "latest"
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a run id (a number, or latest)", param, ctx)


RUN_ID = RunId()


def _run_id(db, run_id) -> int:
    """``run_id`` itself, or for ``latest`` the id of the run a command last made, resumed or reused."""
    if run_id != "latest":
        return run_id
    latest = db.latest_run_id()
    if latest is None:
        raise TextclustError(f"no runs in {db.path} (run `textclust run` first)")
    return latest


class CliError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"textclust: error: {self.message}", err=True)


class TextclustCommand(click.Command):
    """A command whose usage errors always know their command: click raises some parser errors
    ("Option '--format' requires an argument", "… does not take a value") without a context, and
    the one-line message would then point at ``textclust --help`` instead of the command's."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            if err.ctx is None:
                err.ctx = ctx
            raise


class TextclustGroup(click.Group):
    """The command group; a usage error (unknown flag, missing option, bad value, unknown command)
    prints one line like every other error, ``textclust: error: <message> (see textclust <command>
    --help)``, instead of click's usage block. ``--help`` is unchanged."""

    command_class = TextclustCommand

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            raise _usage_error(err) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise _usage_error(err) from None


def _usage_error(err: click.UsageError) -> click.ClickException:
    if isinstance(err, click.exceptions.NoArgsIsHelpError):  # bare `textclust`: click shows the help
        return err
    names = []
    ctx = err.ctx
    while ctx is not None and ctx.parent is not None:  # the command's path, under the name textclust
        names.append(ctx.info_name)
        ctx = ctx.parent
    message = " ".join(err.format_message().split())  # one line, whatever click wrote
    if message.endswith(".") and not message.endswith(".."):
        message = message[:-1]
    return CliError(f"{message} (see {' '.join(['textclust', *reversed(names)])} --help)")


def user_errors(command):
    """Turn TextclustError (and stray bugs) into one line on stderr, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TextclustError as err:
            raise CliError(error_line(err)) from None
        except KeyboardInterrupt:
            click.echo("textclust: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except BrokenPipeError:  # the reader went away (`textclust export 1 | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush is silent too
            sys.exit(1)
        except Exception as err:  # a bug: still one line, the traceback on request
            if os.environ.get("TEXTCLUST_DEBUG"):
                raise
            raise CliError(f"internal error: {type(err).__name__}: {err} (set TEXTCLUST_DEBUG=1 for details)") from None

    return wrapper


LLM_OPTIONS = [
    click.option("--llm-model", help="Language model for propose/assign (any OpenAI-compatible server). "
                                     "Default: $TEXTCLUST_LLM_MODEL or the config file; none = offline."),
    click.option("--llm-base-url", help="The server's base URL, e.g. http://127.0.0.1:8080/v1 "
                                        "(default: $OPENAI_BASE_URL, else OpenAI)."),
    click.option("--llm-api-key-env", metavar="NAME",
                 help="Environment variable holding the API key (default OPENAI_API_KEY). The key is never stored."),
    click.option("--llm-gguf", type=click.Path(dir_okay=False),
                 help="Run a local GGUF model in-process instead of a server (needs textclust[local])."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False),
                 help="TOML file with an [llm] table (default: $TEXTCLUST_CONFIG, ./textclust.toml, "
                      "~/.config/textclust/config.toml)."),
    click.option("--no-llm", is_flag=True, help="Ignore any configured language model: run offline."),
    click.option("--example", "examples", multiple=True, metavar="TEXT",
                 help="An example of the kind of explanation you want, shown to the proposer (repeatable)."),
    setting_option("--depth", type=int,
                   help="2 = also propose sub-explanations inside each selected explanation."),
    setting_option("--n-samples", type=int, help="Texts the proposer reads per round."),
    setting_option("--n-explanations", type=int, help="Explanations asked for per proposal."),
    setting_option("--batch-size", type=int, help="Texts per assignment call."),
    setting_option("--prefilter", type=int,
                   help="Candidates each text is checked against, the most similar by embedding (0 = all)."),
    setting_option("--escalations", type=int,
                   help="A text that fits none of its checked candidates is asked about its next ones, "
                        "up to this many times a round."),
    setting_option("--merge-threshold", type=float,
                   help="Proposals at least this similar (cosine) to an existing candidate are merged into it."),
    setting_option("--review/--no-review", setting="review",
                   help="One model call a round keeps, rejects (off-goal, catch-all) or merges (near-duplicate) "
                        "the new candidates before texts are judged against them."),
    setting_option("--max-candidate-share", type=float,
                   help="Drop candidates matching more than this share of texts (GoalEx uses 0.4; off by default)."),
    setting_option("--max-chars", type=int, help="Longer texts are cut in prompts."),
    click.option("--max-calls", type=int, help="Stop after this many language-model calls (partial result kept)."),
    click.option("--max-tokens", type=int, help="Stop after this many prompt+completion tokens (partial result kept)."),
    click.option("--concurrency", type=int,
                 help=f"Parallel language-model requests (default {_llm_shown('concurrency')})."),
    click.option("--llm-timeout", type=float,
                 help=f"Seconds before a language-model request is retried (default {_llm_shown('timeout')})."),
    click.option("--llm-structured", type=click.Choice(list(STRUCTURED_MODES)),
                 help="How to ask for JSON (default auto: json_schema, falling back as the server requires)."),
]


def _llm_config(kwargs: dict):
    """The LLMConfig from flags, environment and config file; None = offline."""
    if kwargs.get("no_llm"):
        return None
    overrides = {name: kwargs[flag] for name, flag in (("max_calls", "max_calls"), ("max_tokens", "max_tokens"),
                                                       ("concurrency", "concurrency"), ("timeout", "llm_timeout"),
                                                       ("structured", "llm_structured"))
                 if kwargs.get(flag) is not None}
    # (Its seed is set to the run's by RunConfig.from_flat.)
    return LLMConfig.resolve(model=kwargs.get("llm_model"), base_url=kwargs.get("llm_base_url"),
                             api_key_env=kwargs.get("llm_api_key_env"), config_path=kwargs.get("config_path"),
                             gguf=kwargs.get("llm_gguf"), **overrides)


def run_options(command=None, *, goal_required: bool = True, format_flag: str = "--format"):
    """Options shared by `run`, `eval` and `summarize`: what changes a run's result. `summarize`
    (``run_options(goal_required=False, format_flag="--input-format")``) also reads a stored run,
    which needs no goal, and keeps --format for its output."""
    if command is None:
        return functools.partial(run_options, goal_required=goal_required, format_flag=format_flag)
    options = [
        click.option("--goal", required=goal_required, help="What the clusters should be about, in plain language."),
        click.option("--text-column", help="Column holding the text (default: the only text-like column)."),
        click.option("--id-column", help="Column holding a row id, kept in exports."),
        click.option(format_flag, "input_format", type=click.Choice(["csv", "tsv", "jsonl", "json", "txt", "parquet"]),
                     help="Input format (default: from the file extension)."),
        click.option("--skip-bad-rows", is_flag=True,
                     help="Skip malformed rows (a JSONL line that is not a JSON object, a CSV row the parser "
                          "rejects) and count them, instead of rejecting the file."),
        setting_option("--k", type=int, help="Exact number of explanations (default: chosen automatically)."),
        setting_option("--clusterer", type=click.Choice(list(CLUSTERERS)),
                       help="auto = spectral clustering of the centred embeddings offline, k-means with a language model "
                            "(K chosen by silhouette unless --k is given); hdbscan leaves outliers as noise."),
        setting_option("--reduction", type=click.Choice(list(REDUCTIONS)),
                       help="Dimensionality reduction before clustering (auto = none for spectral and with --k, else UMAP)."),
        setting_option("--n-components", type=int, help="Dimensions after reduction."),
        setting_option("--min-cluster-size", type=int,
                       help="Smallest cluster (default: max(10, 1% of texts)); also caps an automatic K at texts / this."),
        setting_option("--max-cluster-share", type=float,
                       help="HDBSCAN: largest share of the texts one cluster may hold."),
        setting_option("--embedding-model", help="sentence-transformers model name or local folder."),
        setting_option("--rounds", type=int,
                       help="Propose/assign/select rounds; later rounds explain what is still uncovered "
                            "(default: 2 offline, 3 with a language model)."),
        setting_option("--min-share", type=float,
                       help="Automatic K: the least share of texts an explanation must add to be kept."),
        setting_option("--seed", "random_state", type=int, help="Random seed."),
        click.option("--candidate", "candidate", multiple=True, metavar='"NAME: explanation"',
                     help="A seeded explanation, always kept (repeatable)."),
        click.option("--candidates", "candidates_file", type=click.Path(dir_okay=False),
                     help="Seeded explanations from a file: .txt (NAME: explanation per line), "
                          ".json (list of {name, explanation}) or .csv (columns name, explanation)."),
        click.option("--only-candidates", is_flag=True,
                     help="Propose nothing: each text gets the seeded explanations it fits, or none."),
    ] + LLM_OPTIONS
    for option in reversed(options):
        command = option(command)
    return command


# Settings set by an option of the same name (its flag: flag_for(name)); None = not given.
SETTING_OPTIONS = ("k", "clusterer", "reduction", "n_components", "min_cluster_size", "max_cluster_share",
                   "embedding_model", "rounds", "min_share", "random_state", "depth", "n_samples", "n_explanations",
                   "batch_size", "prefilter", "escalations", "merge_threshold", "review", "max_candidate_share",
                   "max_chars")


def run_config(kwargs: dict):
    """The run's :class:`~textclust.config.RunConfig` from the options of `run`/`eval`: the
    settings given, the model from flags, environment and config file (None = offline).
    Options not given keep the defaults of :mod:`textclust.config`."""
    from .config import RunConfig
    from .explain.user_candidates import collect_user_candidates

    flat = {name: kwargs[name] for name in SETTING_OPTIONS if kwargs.get(name) is not None}
    candidates = collect_user_candidates(kwargs.get("candidate") or (), kwargs.get("candidates_file"))
    if candidates:
        flat["candidates"] = candidates
    if kwargs.get("only_candidates"):
        flat["only_candidates"] = True
    if kwargs.get("examples"):
        flat["examples"] = list(kwargs["examples"])
    return RunConfig.from_flat(model=_llm_config(kwargs), **flat)


def _log(message: str) -> None:
    """The pipeline's progress lines (settings spelled as flags)."""
    click.echo(spell(message), err=True)


def _say(message: str) -> None:
    """A line of the CLI's own on stderr, printed as it is."""
    click.echo(message, err=True)


@click.group(cls=TextclustGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="textclust")
def cli():
    """Goal-driven, explainable text clustering.

    Give textclust a file of texts and a goal ("why is the customer unhappy?"); it
    returns clusters, each with a plain-language explanation of which texts belong.
    """


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@run_options
@click.option("--dry-run", is_flag=True,
              help="Print the estimated language-model calls and tokens per stage, then stop (nothing is sent).")
@click.option("--new", "new", is_flag=True,
              help="Make a new run even when a complete run with the same input, goal and settings exists "
                   "(by default that run is reused and shown).")
@DB_OPTION
@JSON_OPTION
@user_errors
def run(input_path, db_path, as_json, dry_run, new, **kwargs):
    """Cluster the texts in INPUT (CSV, TSV, JSONL, JSON, TXT or Parquet) for a goal."""
    from .pipeline import Pipeline

    if dry_run:  # from the corpus and the settings alone: no database is opened, nothing is sent
        corpus, config, _ = _corpus_and_config(input_path, kwargs, None)
        _print_estimate(Pipeline(None, config, log=_log).estimate(corpus, kwargs["goal"]), as_json)
        return
    corpus, config, db = _corpus_and_config(input_path, kwargs, db_path)
    pipeline = Pipeline(db, config, log=_log)
    run_id = _reused_or_new_run(pipeline, corpus, kwargs["goal"], new)
    _print_run(db, run_id, as_json)
    if not as_json:
        _say(next_steps(run_id, db_path))


def _corpus_and_config(input_path, kwargs: dict, db_path):
    """`run` and `summarize`: read INPUT, build and check the settings, open the database (none for
    ``db_path`` None: a dry run) and say what will be run: ``(corpus, config, db)``."""
    from .config import model_identity
    from .ingest import read_corpus
    from .store import open_store

    corpus = read_corpus(input_path, kwargs["text_column"], kwargs["id_column"], format=kwargs["input_format"],
                         skip_bad_rows=kwargs["skip_bad_rows"])
    config = run_config(kwargs)
    config.validate(corpus.n_texts, kwargs["goal"])  # before the database is touched
    # A run opens the database before saying anything (a bad setting fails in one line).
    db = None if db_path is None else open_store(db_path)
    _say(f"{corpus.source}: {corpus.n_rows} rows, {corpus.n_texts} distinct texts, "
         f"{corpus.n_empty} empty, {corpus.n_duplicate_rows} duplicate rows (column '{corpus.text_column}')")
    for note in corpus.notes:
        _say(note)
    if config.model is None:
        _say("no language model configured (--llm-model): offline explainer")
    else:
        _say(f"language model: {config.model.model} at {model_identity(config.model)['server']}")
    return corpus, config, db


def _reused_or_new_run(pipeline, corpus, goal: str, new: bool) -> int:
    """`run`: reuse the newest complete identical run (saying so), or with ``new`` make a new one
    (saying why when an identical one exists)."""
    if not new:
        return pipeline.run_or_reuse(corpus, goal, hint="; pass --new to make a new run")[0]
    same = pipeline.identical_run(corpus, goal, reuse=False)
    if same is not None:
        _say(f"making a new run (--new), although complete run {same} has the same input, goal and settings")
    return pipeline.run(corpus, goal)


def next_steps(run_id: int, db_path) -> str:
    """Where the run is stored and what to run next (the --db only when it is not the default)."""
    import shlex

    default = os.environ.get("TEXTCLUST_DB", "textclust.db")
    db = "" if str(db_path) == default else f" --db {shlex.quote(str(db_path))}"
    return (f"Saved as run {run_id} in {db_path}. Next: textclust show {run_id}{db} · "
            f"textclust report {run_id}{db} -o report.html · textclust export {run_id}{db} -o clusters.csv")


@cli.command()
@click.argument("run_id", type=int)
@click.option("--llm-api-key-env", metavar="NAME",
              help="Environment variable holding the API key (default: as when the run started, OPENAI_API_KEY).")
@click.option("--max-calls", type=int, help="Stop after this many language-model calls (partial result kept).")
@click.option("--max-tokens", type=int, help="Stop after this many prompt+completion tokens (partial result kept).")
@click.option("--concurrency", type=int, help="Parallel language-model requests.")
@DB_OPTION
@JSON_OPTION
@user_errors
def resume(run_id, llm_api_key_env, max_calls, max_tokens, concurrency, db_path, as_json):
    """Finish an interrupted, failed or budget-stopped run with its stored settings.

    Language-model answers the run already received come from the response cache: nothing
    is paid for twice.
    """
    from .pipeline import Pipeline

    db = _existing_db(db_path)
    run_id = Pipeline(db, log=_log).resume(run_id, api_key_env=llm_api_key_env, max_calls=max_calls,
                                           max_tokens=max_tokens, concurrency=concurrency)
    _print_run(db, run_id, as_json)


def _print_run(db, run_id: int, as_json: bool) -> None:
    """A run's summary (or its JSON); the stored texts that name settings (why it stopped,
    what to re-run with) name them by their flags."""
    from .report import print_summary
    from .report.model import spelled_result
    from .results import load_run

    result = load_run(db, run_id, include_rows=False)
    if as_json:
        data = spelled_result(result, flag_for).to_dict(include_rows=False)
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        print_summary(result, spell=flag_for)


def _print_estimate(estimate: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(estimate, indent=2))
        return
    click.echo("Estimated language-model use (dry run: nothing was sent, embedded or stored)")
    click.echo(f"{'stage':<10}{'calls':>8}{'prompt tokens':>16}{'completion tokens':>20}")
    for stage in ("propose", "assign", "total"):
        row = estimate.get(stage) or {}
        click.echo(f"{stage:<10}{row.get('calls', 0):>8}{row.get('prompt_tokens', 0):>16}"
                   f"{row.get('completion_tokens', 0):>20}")
    if estimate.get("note"):
        click.echo(spell(estimate["note"]))


YES_OPTION = click.option("--yes", "-y", is_flag=True, help="Delete without asking for confirmation.")


@cli.command()
@click.argument("run_ids", metavar="[ID]...", type=RUN_ID, nargs=-1)
@click.option("--delete", is_flag=True,
              help="Delete the runs ID… and what belongs only to them (results, explanations, assignments, "
                   "model-call records); texts, embeddings and cached model answers stay. Asks first.")
@YES_OPTION
@DB_OPTION
@JSON_OPTION
@user_errors
def runs(run_ids, delete, yes, db_path, as_json):
    """List the runs stored in the database; with --delete ID…, delete those runs."""
    from .stats import RunStats

    if run_ids and not delete:
        raise TextclustError("run ids are taken only with --delete (textclust runs --delete ID…)")
    if delete and not run_ids:
        raise TextclustError("--delete needs the ids of the runs to delete (textclust runs --delete ID…)")
    db = _existing_db(db_path)
    if delete:
        _delete(db, db.plan_delete([_run_id(db, r) for r in run_ids]), yes, as_json)
        return
    rows = []
    for run, corpus in db.list_runs():
        stats = RunStats.from_dict(run.stats)
        written = stats.n_texts > 0  # a result's stats (a run still working has only its claim)
        rows.append({
            "id": run.id,
            "created_at": run.created_at.isoformat(timespec="seconds"),
            "status": run.status,
            "corpus": corpus.name,
            "n_rows": corpus.n_rows,  # input rows (the unit of coverage)
            "n_texts": corpus.n_texts,  # distinct texts
            "goal": run.goal,
            "explainer": run.explainer,
            "n_selected": stats.n_selected if written else None,
            "coverage": stats.coverage if written else None,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs in {db_path}")
    else:
        from .report import print_run_list

        print_run_list(rows)


@cli.command()
@YES_OPTION
@DB_OPTION
@JSON_OPTION
@user_errors
def prune(yes, db_path, as_json):
    """Delete failed, incomplete (budget-stopped) and interrupted runs, and complete runs that
    a newer complete run with the same input, goal and settings repeats. Shows what it would
    delete and asks first; a run a live process is working on is never deleted."""
    db = _existing_db(db_path)
    doomed = db.plan_prune()
    if not doomed:
        if as_json:
            click.echo(json.dumps({"deleted": [], "corpora_deleted": 0}, indent=2))
        else:
            click.echo("nothing to prune: no failed, incomplete or interrupted run and no older duplicate")
        return
    _delete(db, doomed, yes, as_json)


def _stdin_is_interactive() -> bool:
    return sys.stdin.isatty()


def _delete(db, doomed: list, yes: bool, as_json: bool) -> None:
    """List the runs ``doomed`` (``maintenance.Doomed``), ask (unless ``yes``), delete them."""
    n = len(doomed)
    runs_word = "run" if n == 1 else "runs"
    for d in doomed:
        click.echo(f"run {d.run_id} · {d.status} · {d.corpus} · {_clip(d.goal, 50)} · {d.reason}", err=as_json)
    if not yes:
        if not _stdin_is_interactive():
            raise TextclustError(f"not deleting {n} {runs_word} without confirmation: standard input is not "
                                 "a terminal (pass --yes)")
        if not click.confirm(f"Delete {n} {runs_word}?", default=False, err=as_json):
            click.echo("nothing deleted", err=True)
            click.get_current_context().exit(1)
    deleted = db.delete_runs([d.run_id for d in doomed])
    if as_json:
        click.echo(json.dumps({"deleted": [d.to_dict() for d in doomed], "corpora_deleted": deleted["corpora"]},
                              indent=2))
        return
    corpora = deleted["corpora"]
    also = f" and {corpora} {'corpus' if corpora == 1 else 'corpora'} no run uses any more" if corpora else ""
    click.echo(f"deleted {n} {runs_word} ({', '.join(str(d.run_id) for d in doomed)}){also}")


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
@click.argument("run_id", type=RUN_ID)
@DB_OPTION
@JSON_OPTION
@user_errors
def show(run_id, db_path, as_json):
    """Show the explanations and counts of one run (RUN_ID, or latest)."""
    db = _existing_db(db_path)
    _print_run(db, _run_id(db, run_id), as_json)


# `summarize --run`: the flags that choose the model writing the overview (the others make a run from INPUT).
SUMMARY_MODEL_FLAGS = ("llm_model", "llm_base_url", "llm_api_key_env", "llm_gguf", "config_path", "no_llm",
                       "max_calls", "max_tokens", "concurrency", "llm_timeout", "llm_structured")


@cli.command()
@click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(dir_okay=False))
@click.option("--run", "run_id", type=RUN_ID, help="Summarize this stored run (RUN_ID, or latest) instead of INPUT.")
@click.option("--format", "fmt", type=click.Choice(["md", "text", "json"]), default="md", show_default=True,
              help="Markdown, plain text, or JSON (the facts, the overview and where it came from).")
@run_options(goal_required=False, format_flag="--input-format")
@DB_OPTION
@user_errors
def summarize(input_path, run_id, fmt, db_path, **kwargs):
    """Summarize a corpus in one step: run (or reuse) the pipeline on INPUT for --goal, or read
    --run RUN_ID, and print an overview paragraph, one bullet per explanation with its share and a
    representative quote, and what fits nowhere.

    The overview is a template built from the run's figures; with a language model (the run's, or
    --llm-model with --run) one extra call writes it, and it is shown only if every number in it is
    one of the run's. That call is recorded under the run (textclust log) and cached."""
    from .api import summarize as summarize_run
    from .pipeline import Pipeline

    if (input_path is None) == (run_id is None):
        raise TextclustError("give INPUT (with --goal) or --run RUN_ID, not both"
                             if input_path else "give INPUT (with --goal) to summarize, or --run RUN_ID for a stored run")
    if input_path is not None:
        if not kwargs["goal"]:
            raise TextclustError("INPUT needs --goal: what the clusters should be about")
        corpus, config, db = _corpus_and_config(input_path, kwargs, db_path)
        run_id = _reused_or_new_run(Pipeline(db, config, log=_log), corpus, kwargs["goal"], False)
        model = config.model  # the run's own
    else:
        given = [name for name, value in kwargs.items()
                 if name not in SUMMARY_MODEL_FLAGS and value not in (None, False, ())]
        if given:
            raise TextclustError(f"{flag_for(given[0])} makes a run from INPUT; a stored run (--run) keeps its "
                                 "settings")
        db = _existing_db(db_path)
        run_id = _run_id(db, run_id)
        model = True  # the run's own, unless a flag names another
        if kwargs["no_llm"]:
            model = None
        elif any(kwargs[name] for name in ("llm_model", "llm_base_url", "llm_gguf", "config_path")):
            model = _llm_config(kwargs)
    summary = summarize_run(run_id, db=db, llm=model, spell=flag_for)
    click.echo(summary.render(fmt), nl=False)


@cli.command(name="log")
@click.argument("run_id", type=RUN_ID, default="latest")
@click.option("--stage", help="Only the calls of this stage (propose, assign…).")
@DB_OPTION
@JSON_OPTION
@user_errors
def log_command(run_id, stage, db_path, as_json):
    """The language-model calls of one run (RUN_ID, default latest): when, stage, model, status,
    tokens, sent or cached, and the start of the prompt and of the answer; --json: the full
    records. The API key is never recorded."""
    from .report.calls import call_record, print_calls

    db = _existing_db(db_path)
    run_id = _run_id(db, run_id)
    db.get_run(run_id)  # a run that does not exist is an error, not "no calls"
    records = [call_record(call) for call in db.calls_for_run(run_id)]
    stages = list(dict.fromkeys(r["stage"] for r in records))
    if stage is not None:
        records = [r for r in records if r["stage"] == stage]
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    if not records:  # a note, on standard error under --json (whose output stays a list)
        if stage is not None and stages:
            note = f"run {run_id} made no {stage} calls (its calls are: {', '.join(stages)})"
        else:
            note = f"run {run_id} made no language-model calls (it ran offline or stopped before any)"
        click.echo(note, err=as_json)
        return
    if not as_json:
        print_calls(run_id, records, stage=stage)


FORMAT_NAMES = {"csv": "CSV", "json": "JSON", "md": "Markdown"}


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "md"]),
              help="Default: from the -o file's extension (.csv, .json, .md or .markdown); csv on standard "
                   "output or for any other extension.")
@click.option("-o", "--output", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="File to write; - is standard output.")
@DB_OPTION
@user_errors
def export(run_id, fmt, output, db_path):
    """Write one row per input row with its cluster and explanation (CSV, JSON or Markdown),
    of RUN_ID (or latest), to a file or standard output."""
    from .report import export_run
    from .report.export import export_format_of
    from .results import load_run

    named = None if output == "-" else export_format_of(output)  # the format the file's extension names
    if fmt and named and fmt != named:
        raise TextclustError(f"--format {fmt} contradicts -o {output}, whose extension means {named}: "
                             f"drop --format, or name the file .{fmt}")
    fmt = fmt or named or "csv"
    db = _existing_db(db_path)
    run_id = _run_id(db, run_id)
    result = load_run(db, run_id)
    if output == "-":
        export_run(result, fmt, sys.stdout, spell=flag_for)
        _say(f"wrote {len(result.rows)} rows of run {run_id} to standard output")
        return
    export_run(result, fmt, output, spell=flag_for)
    # The format is said when the extension did not name it (rows.txt, clusters).
    _say(f"wrote {len(result.rows)} rows of run {run_id} to {output}" + ("" if named else f" as {FORMAT_NAMES[fmt]}"))


@cli.command(name="eval")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("--label-column", required=True, help="Column with the gold category of each text.")
@run_options
@DB_OPTION
@JSON_OPTION
@user_errors
def eval_command(input_path, label_column, db_path, as_json, **kwargs):
    """Run (or reuse) the pipeline on INPUT and score it against a gold label column."""
    from .api import evaluate_corpus
    from .ingest import read_corpus

    corpus = read_corpus(input_path, kwargs["text_column"], kwargs["id_column"], (label_column,),
                         format=kwargs["input_format"], skip_bad_rows=kwargs["skip_bad_rows"])
    config = run_config(kwargs)
    config.validate(corpus.n_texts, kwargs["goal"])  # before the database is touched
    for note in corpus.notes:
        _say(note)
    scores = evaluate_corpus(corpus, kwargs["goal"], label_column, config, db_path, log=_log)
    reused, n_gold, notice = (scores.pop(k) for k in ("reused", "n_gold_classes", "notice"))  # (reuse: said)
    run_id = scores["run_id"]
    if as_json:
        click.echo(json.dumps(scores, indent=2))
    else:
        click.echo(f"run {run_id}: {scores['n']} labelled texts, {n_gold} gold classes, "
                   f"{scores['n_clusters']} clusters")
        click.echo(f"ACC {scores['acc']:.3f}  NMI {scores['nmi']:.3f}  ARI {scores['ari']:.3f}  "
                   f"coverage {scores['coverage']:.3f}")
        if notice:
            click.echo(f"Note: {spell(notice)}")



@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write (report.html, report.md, report.json).")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]),
              help="html: one self-contained file with plots (works offline); md: the same content as Markdown "
                   "(no map); json: the full structured result. Default: from the file extension, else html.")
@click.option("--map", "map_reduction", type=click.Choice(["umap", "pca"]), default="umap", show_default=True,
              help="How the HTML map reduces the embeddings to 2-D.")
@click.option("--max-points", type=int, default=4000, show_default=True,
              help="The map shows a random sample of this many texts when there are more.")
@click.option("--max-listed", type=int, default=200, show_default=True,
              help="Longest list of uncovered / unclustered / multi-explanation texts written out.")
@DB_OPTION
@user_errors
def report(run_id, output, fmt, map_reduction, max_points, max_listed, db_path):
    """Write a readable report of one run (RUN_ID, or latest): HTML with a map and charts,
    Markdown or JSON."""
    from .progress import working
    from .report.html import report_target, write_report
    from .report.model import ReportOptions, ensure_reportable

    db = _existing_db(db_path)
    run_id = _run_id(db, run_id)
    options = ReportOptions(reduction=map_reduction, max_points=max_points, max_listed=max_listed, spell=flag_for)
    options.validate()  # every error before the line that says the report is being written
    report_target(output, fmt)
    ensure_reportable(db, run_id)
    # The HTML map reduces every embedding to 2-D: seconds on a large run, so say so first.
    with working("report", f"writing the report of run {run_id} to {output}…", _say):
        used = write_report(db, run_id, output, fmt, options)
    _say(f"wrote the {used} report of run {run_id} to {output}")


@cli.command()
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the comparison as an HTML file.")
@DB_OPTION
@JSON_OPTION
@user_errors
def compare(run_a, run_b, output, db_path, as_json):
    """Compare two runs (e.g. one corpus under two goals): contingency table and adjusted mutual information."""
    from .report.compare import compare_runs, print_comparison, write_compare_html

    data = compare_runs(_existing_db(db_path), run_a, run_b, spell=flag_for)
    if output:
        write_compare_html(data, output)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        print_comparison(data)
    if output:
        _say(f"wrote the comparison of runs {run_a} and {run_b} to {output}")


@cli.command()
@click.option("--fix", is_flag=True,
              help="Repair what can be repaired: mark runs whose process is gone as failed, upgrade an old "
                   "schema.")
@DB_OPTION
@JSON_OPTION
@user_errors
def doctor(fix, db_path, as_json):
    """Check the database: SQLite integrity, foreign keys, schema version, runs stuck in 'running'.

    Exit status 0 when healthy (or every problem was fixed), 1 when problems remain.
    """
    from .store.doctor import check_database

    found = check_database(db_path, fix=fix)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, default=str))
    else:
        click.echo("\n".join(found.lines()))
    click.get_current_context().exit(0 if found.healthy else 1)


def _existing_db(path: str):
    """Open a database that must already exist (reading commands never create one)."""
    from .store import open_store, store_path

    file = store_path(path)
    if file is not None and not file.exists():
        raise TextclustError(f"--db {path}: no such database (run `textclust run` first)")
    return open_store(path)


def main() -> None:
    cli(prog_name="textclust")


if __name__ == "__main__":
    main()
