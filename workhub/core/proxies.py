"""The proxy pool: import, listing (never with passwords) and life cycle."""

from __future__ import annotations

from psycopg import AsyncConnection

from workhub.db import queries as q


async def import_proxies(conn: AsyncConnection, proxies: list[dict], *, default_max_uses: int,
                         actor: str = "admin") -> list[int]:
    """Insert proxies (all or nothing); returns their ids in order."""
    await q.set_actor(conn, actor)
    ids = []
    for proxy in proxies:
        row = await q.fetch_one(conn, "create_proxy", {
            "host": proxy["host"], "port": proxy["port"], "protocol": proxy.get("protocol") or "http",
            "username": proxy.get("username"), "password": proxy.get("password"),
            "max_uses": proxy.get("max_uses") or default_max_uses})
        ids.append(row["id"])
    return ids
