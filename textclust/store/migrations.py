"""Numbered schema migrations.

A new database is created directly at the latest schema (``schema.Base.metadata``)
and stamped with every version up to :data:`schema.SCHEMA_VERSION`. A database at
an older version is brought forward by running ``UPGRADES[v]`` for each missing
version ``v`` in order, inside one transaction. Version 1 is the first release;
version 2 adds ``text_results.reason`` (why a text's explanation fits it).
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Connection, inspect, select, text

from ..errors import TextclustError
from .schema import SCHEMA_VERSION, Base, SchemaMigration

# version -> (name, function(connection)). Each step moves the schema from v-1 to v.
def _add_reason(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE text_results ADD COLUMN reason VARCHAR(40)"))


UPGRADES: dict[int, tuple[str, Callable[[Connection], None]]] = {
    2: ("text_results.reason", _add_reason),
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
