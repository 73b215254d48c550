"""Customer sites and their keys."""

from __future__ import annotations

from psycopg import AsyncConnection

from workhub.db import queries as q
from workhub.errors import invalid, not_found
from workhub.keys import hash_key, key_prefix, new_site_key, new_webhook_secret

_UNSET = object()


async def create_site(conn: AsyncConnection, *, name: str, webhook_url: str | None = None,
                      webhook_secret: str | None = None, actor: str = "admin") -> dict:
    """Create a site; the reply carries its key (and a generated webhook secret), the only time they are shown."""
    await q.set_actor(conn, actor)
    key = new_site_key()
    generated_secret = webhook_url is not None and webhook_secret is None
    if generated_secret:
        webhook_secret = new_webhook_secret()
    site = await q.fetch_one(conn, "create_site", {
        "name": name, "api_key_hash": hash_key(key), "api_key_prefix": key_prefix(key),
        "webhook_url": webhook_url, "webhook_secret": webhook_secret})
    return {**site, "api_key": key, "webhook_secret": webhook_secret if generated_secret else None,
            "has_webhook_secret": webhook_secret is not None}


async def list_sites(conn: AsyncConnection, *, is_active: bool | None = None, after_id: int = 0,
                     limit: int = 100) -> list[dict]:
    return await q.fetch_all(conn, "list_sites", {"is_active": is_active, "after_id": after_id, "limit": limit})


async def get_site(conn: AsyncConnection, site_id: int) -> dict:
    site = await q.fetch_one(conn, "get_site", {"site_id": site_id})
    if site is None:
        raise not_found("site", site_id)
    return site


async def update_site(conn: AsyncConnection, site_id: int, *, actor: str, name=_UNSET, is_active=_UNSET,
                      webhook_url=_UNSET, webhook_secret=_UNSET) -> dict:
    """Change a site's name, active flag or webhook; a webhook URL without a secret gets a generated one,
    returned in the reply as `webhook_secret` (the only time it is shown)."""
    await q.set_actor(conn, actor)
    current = await q.fetch_one(conn, "lock_site", {"site_id": site_id})
    if current is None:
        raise not_found("site", site_id)
    row = dict(current)
    for field, value in (("name", name), ("is_active", is_active), ("webhook_url", webhook_url),
                         ("webhook_secret", webhook_secret)):
        if value is not _UNSET:
            row[field] = value
    if row["webhook_url"] is None:
        row["webhook_secret"] = None
    generated = None
    if row["webhook_url"] is not None and row["webhook_secret"] is None:
        generated = row["webhook_secret"] = new_webhook_secret()
    if row["is_active"] is None:
        raise invalid("is_active may not be null.", [{"field": "is_active", "message": "must be true or false"}])
    if row != dict(current):
        await q.execute(conn, "update_site", {"site_id": site_id, **{k: row[k] for k in (
            "name", "is_active", "webhook_url", "webhook_secret")}})
    site = await get_site(conn, site_id)
    return {**site, "webhook_secret": generated}


async def rotate_key(conn: AsyncConnection, site_id: int, *, actor: str) -> dict:
    """Issue a new key; the old one stops working when this transaction commits."""
    await q.set_actor(conn, actor)
    key = new_site_key()
    if await q.fetch_val(conn, "rotate_site_key", {"site_id": site_id, "api_key_hash": hash_key(key),
                                                   "api_key_prefix": key_prefix(key)}) is None:
        raise not_found("site", site_id)
    return {**await get_site(conn, site_id), "api_key": key}


async def site_exists(conn: AsyncConnection, site_id: int) -> bool:
    return bool(await q.fetch_val(conn, "site_exists", {"site_id": site_id}))
