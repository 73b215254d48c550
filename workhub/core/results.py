"""Result submission: idempotent, late-aware, one round trip (single or batch)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from workhub.config import Settings
from workhub.core.allocation import ledger_error, raise_for_ledger
from workhub.db import queries as q


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


async def submit_result(conn: AsyncConnection, settings: Settings, *, allocation_key: UUID, status: str,
                        execution_time_ms: int | None = None, rank: int | None = None,
                        page: int | None = None, block_type: str | None = None,
                        error_message: str | None = None, applied_settings: dict | None = None,
                        products: list[dict] | None = None, result_data: dict | None = None,
                        client_ip: str | None = None) -> dict:
    reply = await q.fetch_val(conn, "submit_result", {
        "allocation_key": allocation_key, "status": status, "execution_time_ms": execution_time_ms,
        "rank": rank, "page": page, "block_type": block_type, "error_message": error_message,
        "applied_settings": _jsonb(applied_settings), "products": _jsonb(products),
        "result_data": _jsonb(result_data), "client_ip": client_ip, "now": settings.now(),
        "cooldown_after": settings.proxy_cooldown_after_blocks,
        "cooldown_seconds": settings.proxy_cooldown_seconds,
    })
    return raise_for_ledger(reply)


async def submit_results(conn: AsyncConnection, settings: Settings, items: list[dict],
                         client_ip: str | None = None) -> list[dict]:
    """Many results in one transaction; each item gets its own outcome (or error)."""
    replies = await q.fetch_val(conn, "submit_results", {
        "items": Jsonb(items), "client_ip": client_ip, "now": settings.now(),
        "cooldown_after": settings.proxy_cooldown_after_blocks,
        "cooldown_seconds": settings.proxy_cooldown_seconds,
    })
    outcomes = []
    for reply in replies:
        error = ledger_error(reply)
        if error is not None:
            outcomes.append({"allocation_key": reply["allocation_key"], "status": "error",
                             "error": error.body()["error"]})
        else:
            outcomes.append(reply)
    return outcomes
