"""The one module that talks to PostgreSQL.

Every statement the hub runs is a named query in ``workhub/sql/queries/*.sql`` (blocks that start
with ``-- name: some_name``), as procrastinate keeps its ``queries.sql``. Core modules call
``fetch_one(conn, "some_name", params)`` and friends; nothing else builds SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# `-- plan: custom` in a query: never prepared on the server, so each run is planned with its values
_CUSTOM_PLAN = re.compile(r"^--\s*plan:\s*custom\s*$", re.MULTILINE)

Params = Mapping[str, Any] | None


@lru_cache
def all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("workhub") / "sql" / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        marks = list(_NAME.finditer(text))
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = text[mark.end():end].strip().rstrip(";").strip()
            name = mark.group("name")
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice (second in {entry.name})")
            queries[name] = body
    return queries


def sql(name: str) -> str:
    try:
        return all_queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in workhub/sql/queries") from None


@lru_cache
def _prepare(name: str) -> bool | None:
    """False (never prepare) for `-- plan: custom` queries, else the connection's prepare_threshold."""
    return False if _CUSTOM_PLAN.search(sql(name)) else None


async def fetch_one(conn: AsyncConnection, name: str, params: Params = None) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql(name), params, prepare=_prepare(name))
        return await cur.fetchone()


async def fetch_all(conn: AsyncConnection, name: str, params: Params = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql(name), params, prepare=_prepare(name))
        return await cur.fetchall()


async def fetch_val(conn: AsyncConnection, name: str, params: Params = None) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql(name), params, prepare=_prepare(name))
        row = await cur.fetchone()
        return None if row is None else row[0]


async def execute(conn: AsyncConnection, name: str, params: Params = None) -> int:
    """Run a statement; returns the affected row count."""
    async with conn.cursor() as cur:
        await cur.execute(sql(name), params, prepare=_prepare(name))
        return cur.rowcount


async def set_actor(conn: AsyncConnection, actor: str) -> None:
    """Name the acting key for the audit trigger, for the rest of this transaction."""
    await execute(conn, "set_actor", {"actor": actor})
