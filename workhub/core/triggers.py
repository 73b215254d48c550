"""The external-trigger log: one row per customer-API request (site, type, payload, status, slot, source IP)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from workhub.db import queries as q

MAX_PAYLOAD_CHARS = 16_000
# never stored, whatever a caller puts in a body or query string
SECRET_FIELDS = {"api_key", "password", "webhook_secret", "authorization", "token", "key"}


def scrub(value: Any) -> Any:
    """Mask secrets; drop NUL characters, which jsonb cannot store."""
    if isinstance(value, dict):
        return {scrub(str(k)): ("***" if str(k).lower() in SECRET_FIELDS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return value.replace("\x00", "")[:MAX_PAYLOAD_CHARS]
    return value


async def record_trigger(conn: AsyncConnection, *, site_id: int | None, trigger_type: str, payload: Any,
                         response_status: int, slot_id: int | None, source_ip: str | None,
                         created_at: datetime) -> None:
    await q.execute(conn, "record_external_trigger", {
        "site_id": site_id, "trigger_type": trigger_type[:100], "payload": Jsonb(scrub(payload)),
        "response_status": response_status, "slot_id": slot_id, "source_ip": source_ip, "created_at": created_at})
