"""Client machines as the admin sees them: who is online, how much each has done."""

from __future__ import annotations

from datetime import timedelta

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.db import queries as q


async def list_clients(conn: AsyncConnection, settings: Settings, *, online: bool | None = None, after_id: int = 0,
                       limit: int = 100) -> dict:
    online_since = settings.now() - timedelta(seconds=settings.client_online_seconds)
    params = {"online_since": online_since, "online": online, "after_id": after_id, "limit": limit}
    items = await q.fetch_all(conn, "list_clients", params)
    counts = await q.fetch_one(conn, "client_counts", {"online_since": online_since})
    return {"items": items, "total": counts["total"], "online": counts["online"],
            "online_window_seconds": settings.client_online_seconds,
            "next_after_id": items[-1]["id"] if len(items) == limit else None}
