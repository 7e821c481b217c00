"""Numbered schema migrations.

A new database is created directly at the latest schema (``schema.Base.metadata``)
and stamped with every version up to :data:`schema.SCHEMA_VERSION`. A database at
an older version is brought forward by running ``UPGRADES[v]`` for each missing
version ``v`` in order, inside one transaction. Version 1 is the first release;
version 2 adds ``text_results.reason`` (why a text's explanation fits it); version 3
adds the language-model record (``llm_calls``, the ``llm_responses`` cache) and
``explanations.parent_id`` / ``explanations.goal_similarity`` / ``assignments.evidence``;
version 4 stores each run's settings as the configuration tree
(:meth:`textclust.config.RunConfig.to_dict`, upgraded from the flat settings of earlier
versions) and moves the claim of the process working on a run (pid, host) from
``runs.stats`` into its own column, ``runs.claimed_by``; version 5 adds
``runs.last_used_at`` (when a command last made, resumed or reused the run: ``latest`` is
the most recently used run), set to each run's ``created_at`` on upgrade, so that
``latest`` names the same run as before the upgrade; version 6 adds ``string_embeddings``,
the cache of vectors of strings that are no corpus text (goals, candidate terms).

The DDL of each step is frozen here, as it was at that version, rather than taken
from the models: a later change to a model must not change what an old step does.
(Step 4 rewrites data with :func:`textclust.config.upgrade_flat_settings`, the one reader
of the old flat settings; that function must keep producing a tree later versions read.)
"""

from __future__ import annotations

import json
from typing import Callable

from sqlalchemy import Connection, inspect, select, text

from ..config import upgrade_flat_settings
from ..errors import TextclustError
from .schema import SCHEMA_VERSION, Base, SchemaMigration

# version -> (name, function(connection)). Each step moves the schema from v-1 to v.
def _add_reason(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE text_results ADD COLUMN reason VARCHAR(40)"))


_V3_STATEMENTS = [
    "ALTER TABLE explanations ADD COLUMN parent_id INTEGER REFERENCES explanations (id) ON DELETE SET NULL",
    "ALTER TABLE explanations ADD COLUMN goal_similarity FLOAT",
    "ALTER TABLE assignments ADD COLUMN evidence TEXT",
    """CREATE TABLE llm_calls (
	id INTEGER NOT NULL,
	run_id INTEGER,
	stage VARCHAR(40) NOT NULL,
	model VARCHAR(300) NOT NULL,
	server VARCHAR(500) NOT NULL,
	messages JSON NOT NULL,
	response_format VARCHAR(20) NOT NULL,
	response TEXT,
	finish_reason VARCHAR(40),
	prompt_tokens INTEGER,
	completion_tokens INTEGER,
	latency_s FLOAT,
	waited_s FLOAT NOT NULL,
	status VARCHAR(20) NOT NULL,
	error TEXT,
	retries INTEGER NOT NULL,
	repair_of INTEGER,
	cache_key VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE SET NULL,
	FOREIGN KEY(repair_of) REFERENCES llm_calls (id) ON DELETE SET NULL
)""",
    "CREATE INDEX ix_llm_calls_cache_key ON llm_calls (cache_key)",
    "CREATE INDEX ix_llm_calls_run_id ON llm_calls (run_id)",
    """CREATE TABLE llm_responses (
	cache_key VARCHAR(64) NOT NULL,
	server VARCHAR(500) NOT NULL,
	model VARCHAR(300) NOT NULL,
	response TEXT,
	finish_reason VARCHAR(40),
	refusal TEXT,
	prompt_tokens INTEGER,
	completion_tokens INTEGER,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (cache_key)
)""",
]


def _add_llm_record(conn: Connection) -> None:
    # Each statement is skipped when what it adds is already there, so a database whose
    # version stamps were rolled back by hand (as some tests do) upgrades cleanly too.
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in ("explanations", "assignments")}
    for statement in _V3_STATEMENTS:
        words = statement.split()
        if words[0] == "ALTER" and words[5] in columns[words[2]]:
            continue
        if words[:2] == ["CREATE", "TABLE"] and words[2] in tables:
            continue
        if words[:2] == ["CREATE", "INDEX"] and words[4] in tables:
            continue
        conn.execute(text(statement))


CLAIM_KEYS = ("pid", "host")  # what claims.claim wrote into runs.stats up to version 3


def _settings_tree_and_claims(conn: Connection) -> None:
    """Version 4: (a) every run's flat settings become the stored configuration tree
    (``settings_key`` is left as it is: it still finds the run); (b) the claim (pid, host)
    moves from ``runs.stats`` into the new column ``runs.claimed_by``."""
    columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    if "claimed_by" not in columns:
        conn.execute(text("ALTER TABLE runs ADD COLUMN claimed_by JSON"))
    rows = conn.execute(text("SELECT id, settings, stats, claimed_by FROM runs ORDER BY id")).all()
    for run_id, flat, stored_stats, claimed_by in rows:
        flat, stored_stats, claimed_by = _loads(flat), _loads(stored_stats), _loads(claimed_by)
        changes = {}
        if isinstance(flat, dict) and "explaining" not in flat:  # the flat shape of versions 1-3
            try:
                changes["settings"] = upgrade_flat_settings(flat)
            except (TextclustError, TypeError, ValueError, AttributeError) as err:
                raise TextclustError(f"cannot upgrade the stored settings of run {run_id}: {err}") from None
        if isinstance(stored_stats, dict) and any(key in stored_stats for key in CLAIM_KEYS):
            claim = {key: stored_stats.get(key) for key in CLAIM_KEYS}
            changes["stats"] = {k: v for k, v in stored_stats.items() if k not in CLAIM_KEYS}
            if claimed_by is None:
                changes["claimed_by"] = claim
        if changes:
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            conn.execute(text(f"UPDATE runs SET {assignments} WHERE id = :id"),
                         {"id": run_id, **{column: json.dumps(value) for column, value in changes.items()}})


def _add_last_used(conn: Connection) -> None:
    """Version 5: ``runs.last_used_at``; an existing run was last used when it was created
    (``latest`` stays the newest run, as it was). Skips the column when it is already there
    (a database whose version stamps were rolled back by hand) and fills only what is empty."""
    columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    if "last_used_at" not in columns:
        conn.execute(text("ALTER TABLE runs ADD COLUMN last_used_at DATETIME"))
    conn.execute(text("UPDATE runs SET last_used_at = created_at WHERE last_used_at IS NULL"))


def _add_string_embeddings(conn: Connection) -> None:
    """Version 6: the ``string_embeddings`` cache (empty: filled as runs embed strings)."""
    conn.execute(text("CREATE TABLE IF NOT EXISTS string_embeddings (model VARCHAR(500) NOT NULL, "
                      "key VARCHAR(64) NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
                      "PRIMARY KEY (model, key))"))


def _loads(value):
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


UPGRADES: dict[int, tuple[str, Callable[[Connection], None]]] = {
    2: ("text_results.reason", _add_reason),
    3: ("llm_calls, llm_responses; explanations.parent_id, goal_similarity; assignments.evidence", _add_llm_record),
    4: ("runs.settings as the configuration tree; runs.claimed_by", _settings_tree_and_claims),
    5: ("runs.last_used_at", _add_last_used),
    6: ("string_embeddings", _add_string_embeddings),
}

NAMES = {1: "initial schema"}


def current_version(conn: Connection) -> int | None:
    """The database's schema version; None for an empty database."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if SchemaMigration.__tablename__ not in tables:
        raise TextclustError("the database file was not created by textclust (no schema_migrations table)")
    version = conn.execute(select(SchemaMigration.version).order_by(SchemaMigration.version.desc())).scalar()
    return int(version or 0)


def migrate(conn: Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    found = current_version(conn)
    if found is None:
        Base.metadata.create_all(conn)
        for version in range(1, SCHEMA_VERSION + 1):
            conn.execute(SchemaMigration.__table__.insert().values(version=version, name=_name(version)))
        return 0
    if found > SCHEMA_VERSION:
        raise TextclustError(
            f"the database is at schema version {found}, newer than this textclust ({SCHEMA_VERSION}); upgrade textclust"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        name, upgrade = UPGRADES[version]
        upgrade(conn)
        conn.execute(SchemaMigration.__table__.insert().values(version=version, name=name))
    return found


def _name(version: int) -> str:
    return UPGRADES[version][0] if version in UPGRADES else NAMES.get(version, f"version {version}")
