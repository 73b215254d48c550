"""Schema migrations: numbered SQL files in workhub/sql/migrations, applied by yoyo-migrations.

yoyo records what is applied and runs each file in its own transaction; we add a PostgreSQL advisory
lock around the whole run so that hub processes starting together apply each migration once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from workhub.db import queries as q
from workhub.db.urls import redact

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x776B6875_62  # "wkhub"


def migrations_dir() -> Path:
    return Path(str(resources.files("workhub") / "sql" / "migrations"))


def _yoyo_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest if scheme in ("postgresql", "postgres") else url


@dataclass
class MigrationState:
    id: str
    applied_at: datetime | None


def status(url: str) -> list[MigrationState]:
    from yoyo import read_migrations

    migrations = read_migrations(str(migrations_dir()))
    applied = {}
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute(q.sql("migrations_table_exists")).fetchone()[0]:
            applied = dict(conn.execute(q.sql("applied_migrations")).fetchall())
    return [MigrationState(m.id, applied.get(m.id)) for m in migrations]


def pending(url: str) -> list[str]:
    return [m.id for m in status(url) if m.applied_at is None]


def migrate(url: str, timezone: str, *, months_ahead: int = 2, weeks_ahead: int = 2) -> list[str]:
    """Apply pending migrations, set the database TimeZone and create the current partitions.

    Returns the ids applied (empty when the schema was current: running it twice is a no-op)."""
    from yoyo import get_backend, read_migrations

    with psycopg.connect(url, autocommit=True) as lock_conn:
        lock_conn.execute(q.sql("advisory_lock"), {"lock_id": MIGRATION_LOCK_ID})
        try:
            backend = get_backend(_yoyo_url(url))
            migrations = read_migrations(str(migrations_dir()))
            with backend.lock():
                todo = backend.to_apply(migrations)
                applied = [m.id for m in todo]
                if todo:
                    log.info("applying migrations %s to %s", applied, redact(url))
                    backend.apply_migrations(todo)
            backend.connection.close()
            _set_timezone(lock_conn, timezone)
            lock_conn.execute(q.sql("set_session_timezone"), {"timezone": timezone})
            lock_conn.execute(q.sql("ensure_partitions_from_now"),
                              {"months_ahead": months_ahead, "weeks_ahead": weeks_ahead})
        finally:
            lock_conn.execute(q.sql("advisory_unlock"), {"lock_id": MIGRATION_LOCK_ID})
    return applied


def _set_timezone(conn: psycopg.Connection, timezone: str) -> None:
    """So that CURRENT_DATE in an operator's ad-hoc query is the hub's work date."""
    try:
        conn.execute(pgsql.SQL(q.sql("set_database_timezone")).format(
            database=pgsql.Identifier(conn.info.dbname), timezone=pgsql.Literal(timezone)))
    except psycopg.Error as exc:  # not the owner (hosted databases): the hub sets it per connection anyway
        log.warning("could not set the database TimeZone: %s", exc)
