"""Allocation of work packages and the lease life cycle (extend, release, expiry)."""

from __future__ import annotations

from uuid import UUID

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.db import queries as q
from workhub.errors import HubError

# Error codes the ledger functions return, with their HTTP status and wording.
LEDGER_ERRORS = {
    "unknown_allocation_key": (404, "No allocation with this key."),
    "allocation_released": (409, "This allocation was released; its quota went back to the slot."),
    "allocation_submitted": (409, "A result was already submitted for this allocation."),
    "allocation_expired": (409, "This allocation's lease has expired."),
}


def ledger_error(reply: dict) -> HubError | None:
    code = reply.get("error")
    if code is None:
        return None
    status, message = LEDGER_ERRORS[code]
    return HubError(status, code, message)


def raise_for_ledger(reply: dict) -> dict:
    error = ledger_error(reply)
    if error is not None:
        raise error
    return reply


async def allocate_work(conn: AsyncConnection, settings: Settings, *, client_ip: str,
                        instance_number: int | None, user_folder_number: int | None, count: int = 1) -> str:
    """Hand out up to ``count`` packages; returns the reply as JSON text, ready to send."""
    return await q.fetch_val(conn, "allocate_work", {
        "client_ip": client_ip,
        "instance_number": instance_number,
        "user_folder_number": user_folder_number,
        "count": count,
        "now": settings.now(),
        "lease_seconds": settings.lease_seconds,
        "attempts_factor": settings.max_attempts_factor,
    })


async def extend_lease(conn: AsyncConnection, settings: Settings, key: UUID, seconds: int,
                       client_ip: str | None = None) -> dict:
    reply = await q.fetch_val(conn, "extend_lease", {
        "allocation_key": key, "seconds": seconds, "now": settings.now(),
        "max_lifetime_seconds": settings.lease_max_seconds, "client_ip": client_ip,
    })
    return raise_for_ledger(reply)


async def release_lease(conn: AsyncConnection, settings: Settings, key: UUID, reason: str | None,
                        client_ip: str | None = None) -> dict:
    reply = await q.fetch_val(conn, "release_lease", {
        "allocation_key": key, "reason": reason, "now": settings.now(), "client_ip": client_ip,
    })
    return raise_for_ledger(reply)


async def expire_leases(conn: AsyncConnection, settings: Settings, batch: int = 5000) -> int:
    """Lapse leases past expiry (one batch); returns how many were returned to their slots."""
    return await q.fetch_val(conn, "expire_leases", {"now": settings.now(), "batch": batch})


async def init_day(conn: AsyncConnection, work_date) -> int:
    return await q.fetch_val(conn, "init_daily_work_tracking", {"work_date": work_date})
