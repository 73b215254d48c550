"""Work slots: what customers register (keyword + code + dates + daily count + settings)."""

from __future__ import annotations

from psycopg import AsyncConnection

from workhub.db import queries as q

SLOT_FIELDS = ("keyword", "code", "start_date", "end_date", "daily_work_count", "cart_click_enabled",
               "block_mercury", "block_image_cdn", "block_img1a_cdn", "block_thumbnail_cdn", "is_active",
               "external_ref", "max_daily_attempts", "pace")


async def create_slot(conn: AsyncConnection, fields: dict, *, site_id: int | None, actor: str) -> tuple[dict, bool]:
    """Create a slot; idempotent on (site, external_ref). Returns (slot, created)."""
    await q.set_actor(conn, actor)
    params = {name: fields.get(name) for name in SLOT_FIELDS}
    params["site_id"] = site_id
    row = await q.fetch_one(conn, "create_slot", params)
    if row is not None:
        return row, True
    existing = await q.fetch_one(conn, "slot_by_ref", {"site_id": site_id, "external_ref": params["external_ref"]})
    return existing, False
