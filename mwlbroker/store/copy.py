"""Copy a whole broker database to another, e.g. from the embedded SQLite file to PostgreSQL.

Both databases must be at this version's schema revision (the target is migrated first) and
the target must hold no rows yet, so nothing is merged or overwritten. Tables are copied parent
before child, a batch of rows per statement, in one transaction on the target: a copy that
fails half-way leaves the target empty. PostgreSQL identity sequences are moved past the copied
ids afterwards, so the target goes on numbering where the source stopped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, func, insert, select, text, update

from mwlbroker.store import migrate
from mwlbroker.store.db import Database
from mwlbroker.store.tables import metadata

BATCH = 1000


class CopyRefused(Exception):
    """The copy cannot start: say why, change nothing."""


def copy_database(
    source: Database, target: Database, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every table of ``source`` into the empty ``target``; returns rows per table."""
    head = migrate.head_revision()
    revision = migrate.current_revision(source)
    if revision != head:
        raise CopyRefused(
            f"the source is at schema revision {revision or 'none'}, not {head}: "
            "run `mwlbroker db upgrade` on it first"
        )
    migrate.upgrade(target)
    tables = metadata.sorted_tables
    with target.engine.connect() as connection:
        for table in tables:
            if connection.execute(select(func.count()).select_from(table)).scalar():
                raise CopyRefused(
                    f"the target already holds rows in {table.name}: copy only into an empty "
                    "database"
                )
    copied: dict[str, int] = {}
    with source.engine.connect() as reading, target.engine.begin() as writing:
        for table in tables:
            # A row may point to a later row of its own table (a merged patient to its
            # survivor): such links are written once every row of the table is in.
            own = [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]
            links: list[dict[str, object]] = []
            count = 0
            rows = reading.execute(select(table).order_by(*table.primary_key.columns))
            while batch := rows.fetchmany(BATCH):
                values = [dict(row._mapping) for row in batch]
                for row in values:
                    if any(row[name] is not None for name in own):
                        links.append({"pk": row["id"], **{name: row[name] for name in own}})
                        row.update(dict.fromkeys(own))
                writing.execute(insert(table), values)
                count += len(batch)
            if links:
                writing.execute(
                    update(table)
                    .where(table.c.id == bindparam("pk"))
                    .values({name: bindparam(name) for name in own}),
                    links,
                )
            copied[table.name] = count
            if progress is not None:
                progress(table.name, count)
        if not target.is_sqlite:
            _move_sequences(writing)
    return copied


def _move_sequences(connection: object) -> None:
    """Set each identity sequence past the largest id copied (PostgreSQL)."""
    for table in metadata.sorted_tables:
        if "id" not in table.c or not table.c.id.autoincrement:
            continue
        connection.execute(  # type: ignore[attr-defined]
            text(
                "SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
            ),
            {"table": table.name},
        )
