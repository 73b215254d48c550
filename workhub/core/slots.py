"""Work slots: what customers register (keyword + code + dates + daily count + settings)."""

from __future__ import annotations

from datetime import date, timedelta

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.core.sites import site_exists
from workhub.db import queries as q
from workhub.errors import invalid, not_found

SLOT_FIELDS = ("keyword", "code", "start_date", "end_date", "daily_work_count", "cart_click_enabled",
               "block_mercury", "block_image_cdn", "block_img1a_cdn", "block_thumbnail_cdn", "is_active",
               "external_ref", "max_daily_attempts", "pace")
# fields that may not be set to null by a PATCH
REQUIRED_FIELDS = set(SLOT_FIELDS) - {"external_ref", "max_daily_attempts"}
MAX_PROGRESS_DAYS = 400


def _field_error(field: str, message: str):
    return invalid("The request is not valid; see details for each field.",
                   [{"field": field, "location": "body", "message": message, "type": "value_error"}])


async def create_slot(conn: AsyncConnection, fields: dict, *, site_id: int | None, actor: str) -> tuple[dict, bool]:
    """Create a slot; idempotent on (site, external_ref). Returns (slot, created)."""
    await q.set_actor(conn, actor)
    if site_id is not None and not await site_exists(conn, site_id):
        raise _field_error("site_id", f"no site with id {site_id}")
    params = {name: fields.get(name) for name in SLOT_FIELDS}
    params["site_id"] = site_id
    row = await q.fetch_one(conn, "create_slot", params)
    if row is not None:
        return row, True
    existing = await q.fetch_one(conn, "slot_by_ref", {"site_id": site_id, "external_ref": params["external_ref"]})
    return existing, False


async def get_slot(conn: AsyncConnection, slot_id: int, *, site_id: int | None,
                   work_date: date | None = None) -> dict:
    """One slot (with today's ledger row when work_date is given); another site's slot is not found."""
    slot = await q.fetch_one(conn, "get_slot", {"slot_id": slot_id, "site_id": site_id})
    if slot is None:
        raise not_found("slot", slot_id)
    if work_date is not None:
        slot["today"] = await q.fetch_one(conn, "slot_today", {"slot_id": slot_id, "work_date": work_date})
    return slot


async def list_slots(conn: AsyncConnection, *, site_id: int | None, work_date: date, is_active: bool | None = None,
                     keyword: str | None = None, code: str | None = None, external_ref: str | None = None,
                     active_on: date | None = None, after_id: int = 0, limit: int = 100) -> list[dict]:
    return await q.fetch_all(conn, "list_slots", {
        "site_id": site_id, "work_date": work_date, "is_active": is_active, "keyword": keyword, "code": code,
        "external_ref": external_ref, "active_on": active_on, "after_id": after_id, "limit": limit})


async def update_slot(conn: AsyncConnection, slot_id: int, changes: dict, *, site_id: int | None, actor: str,
                      work_date: date | None = None) -> dict:
    """Apply a partial change; the tracking trigger moves today's target at once when the count changes."""
    await q.set_actor(conn, actor)
    current = await q.fetch_one(conn, "lock_slot", {"slot_id": slot_id, "site_id": site_id})
    if current is None:
        raise not_found("slot", slot_id)
    for field, value in changes.items():
        if field not in SLOT_FIELDS:
            raise _field_error(field, "this field cannot be changed")
        if value is None and field in REQUIRED_FIELDS:
            raise _field_error(field, "may not be null")
    merged = {**{f: current[f] for f in SLOT_FIELDS}, **changes}
    if merged["end_date"] < merged["start_date"]:
        field = "end_date" if "end_date" in changes else "start_date"
        raise _field_error(field, "end_date must not be before start_date")
    if any(merged[f] != current[f] for f in SLOT_FIELDS):
        await q.fetch_one(conn, "update_slot", {"slot_id": slot_id, **merged})
    return await get_slot(conn, slot_id, site_id=site_id, work_date=work_date)


async def deactivate_slot(conn: AsyncConnection, slot_id: int, *, site_id: int | None, actor: str,
                          work_date: date | None = None) -> dict:
    """DELETE keeps the slot and its history; it just stops being handed out."""
    return await update_slot(conn, slot_id, {"is_active": False}, site_id=site_id, actor=actor, work_date=work_date)


async def slot_progress(conn: AsyncConnection, settings: Settings, slot_id: int, *, site_id: int | None,
                        date_from: date | None = None, date_to: date | None = None) -> dict:
    """The daily ledger rows and the rank history of a slot over a date range (default: the last 7 days)."""
    today = settings.work_date()
    date_to = date_to or today
    if date_from is None:
        if date_to < date.min + timedelta(days=6):  # the 7-day default would start before year 1
            raise invalid("The request is not valid; see details for each field.",
                          [{"field": "to", "location": "query", "message": "to is too early for the default range",
                            "type": "value_error"}])
        date_from = date_to - timedelta(days=6)
    if date_to < date_from:
        raise invalid("The request is not valid; see details for each field.",
                      [{"field": "to", "location": "query", "message": "to must not be before from",
                        "type": "value_error"}])
    if (date_to - date_from).days >= MAX_PROGRESS_DAYS:
        raise invalid("The request is not valid; see details for each field.",
                      [{"field": "from", "location": "query",
                        "message": f"the range may span at most {MAX_PROGRESS_DAYS} days", "type": "value_error"}])
    slot = await get_slot(conn, slot_id, site_id=site_id, work_date=today)
    params = {"slot_id": slot_id, "date_from": date_from, "date_to": date_to}
    days = await q.fetch_all(conn, "slot_progress_days", params)
    ranks = await q.fetch_all(conn, "slot_rank_history", params)
    totals = {k: sum(d[k] for d in days) for k in ("target_count", "success_count", "failed_count",
                                                    "blocked_count", "expired_count")}
    return {"slot": slot, "from": date_from, "to": date_to, "days": days, "rank_history": ranks, "totals": totals}
