"""Customer sites and their keys."""

from __future__ import annotations

from psycopg import AsyncConnection

from workhub.auth import hash_key, key_prefix, new_site_key
from workhub.db import queries as q


async def create_site(conn: AsyncConnection, *, name: str, webhook_url: str | None = None,
                      webhook_secret: str | None = None, actor: str = "admin") -> dict:
    """Create a site; the reply carries its key, the only time it is shown."""
    await q.set_actor(conn, actor)
    key = new_site_key()
    site = await q.fetch_one(conn, "create_site", {
        "name": name, "api_key_hash": hash_key(key), "api_key_prefix": key_prefix(key),
        "webhook_url": webhook_url, "webhook_secret": webhook_secret})
    return {**site, "api_key": key}
