"""Reading the audit trail (rows are written by the v1_hub_audit trigger) and the external-trigger log."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection

from workhub.db import queries as q


async def query_audit_log(conn: AsyncConnection, *, table_name: str | None = None, record_id: int | None = None,
                          action: str | None = None, changed_by: str | None = None, since: datetime | None = None,
                          until: datetime | None = None, before_id: int | None = None, limit: int = 100) -> dict:
    items = await q.fetch_all(conn, "query_audit_log", {
        "table_name": table_name, "record_id": record_id, "action": action, "changed_by": changed_by,
        "since": since, "until": until, "before_id": before_id, "limit": limit})
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}


async def query_external_triggers(conn: AsyncConnection, *, site_id: int | None = None, slot_id: int | None = None,
                                  trigger_type: str | None = None, since: datetime | None = None,
                                  before_id: int | None = None, limit: int = 100) -> dict:
    items = await q.fetch_all(conn, "query_external_triggers", {
        "site_id": site_id, "slot_id": slot_id, "trigger_type": trigger_type, "since": since,
        "before_id": before_id, "limit": limit})
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}
