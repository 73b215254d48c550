"""Webhook delivery from the transactional outbox (v1_hub_webhook_deliveries).

Rows are queued in the same transaction as the result that completes a slot's day, so a webhook is
never sent for work that was rolled back, and never lost for work that was committed. Delivery is
at-least-once: receivers de-duplicate on the `X-Workhub-Delivery` id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from datetime import timedelta

import httpx
import orjson

from workhub.config import Settings
from workhub.db import queries as q
from workhub.db.pool import Database

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Workhub-Signature"
TIMESTAMP_HEADER = "X-Workhub-Timestamp"
DELIVERY_HEADER = "X-Workhub-Delivery"
EVENT_HEADER = "X-Workhub-Event"


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw request body with the site's webhook secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (kept here for the docs and the tests): constant-time compare."""
    return hmac.compare_digest(sign(secret, body), signature)


def _request(delivery: dict, sent_at) -> tuple[bytes, dict]:
    # the send time and delivery id are inside the signed body, so a replayed body shows its age
    body = orjson.dumps({**delivery["payload"], "delivery_id": delivery["id"], "attempt": delivery["attempts"] + 1,
                         "sent_at": sent_at.isoformat()})
    headers = {"Content-Type": "application/json", "User-Agent": "workhub-webhooks",
               TIMESTAMP_HEADER: str(int(sent_at.timestamp())), DELIVERY_HEADER: str(delivery["id"]),
               EVENT_HEADER: delivery["event"]}
    if delivery["webhook_secret"]:
        headers[SIGNATURE_HEADER] = sign(delivery["webhook_secret"], body)
    return body, headers


async def _claim(conn, settings: Settings) -> list[dict]:
    now = settings.now()
    # a claim outlives one attempt comfortably; a deliverer that dies leaves the row due again after it
    claim_until = now + timedelta(seconds=settings.webhook_timeout_seconds * 2 + 60)
    return await q.fetch_all(conn, "claim_webhook_deliveries",
                             {"now": now, "claim_until": claim_until, "limit": settings.webhook_batch_size})


async def _record(conn, settings: Settings, delivery: dict, status: int | None, error: str | None) -> str:
    now = settings.now()
    if error is None:
        await q.execute(conn, "webhook_delivered", {"id": delivery["id"], "last_status": status, "now": now})
        return "delivered"
    row = await q.fetch_one(conn, "webhook_attempt_failed", {
        "id": delivery["id"], "last_status": status, "last_error": error, "now": now,
        "max_attempts": settings.webhook_max_attempts, "backoff_seconds": settings.webhook_backoff_seconds,
        "backoff_max_seconds": settings.webhook_backoff_max_seconds})
    return row["status"] if row else "failed"


async def _post(client: httpx.AsyncClient, delivery: dict, settings: Settings) -> tuple[int | None, str | None]:
    body, headers = _request(delivery, settings.now())
    try:
        response = await client.post(delivery["webhook_url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def deliver_due(db: Database, settings: Settings) -> dict:
    """Send every due delivery once: claim in a short transaction, POST outside any transaction,
    record each outcome. Returns counts (claimed, delivered, retrying, failed)."""
    counts = {"claimed": 0, "delivered": 0, "retrying": 0, "failed": 0}
    async with db.transaction() as conn:
        batch = await _claim(conn, settings)
    if not batch:
        return counts
    counts["claimed"] = len(batch)
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
        to_send = []
        for delivery in batch:
            if not delivery["webhook_url"] or not delivery["is_active"]:
                async with db.transaction() as conn:
                    await q.execute(conn, "webhook_cancelled", {
                        "id": delivery["id"], "reason": "site disabled or webhook removed"})
                counts["failed"] += 1
            else:
                to_send.append(delivery)
        outcomes = await asyncio.gather(*(_post(client, d, settings) for d in to_send))
    for delivery, (status, error) in zip(to_send, outcomes):
        async with db.transaction() as conn:
            state = await _record(conn, settings, delivery, status, error)
        if state == "delivered":
            counts["delivered"] += 1
        elif state == "pending":
            counts["retrying"] += 1
        else:
            counts["failed"] += 1
        if error:
            # the URL may carry credentials; log the site and delivery only
            log.warning("webhook delivery %s to site %s failed (%s): %s", delivery["id"], delivery["site_id"],
                        state, error)
    return counts


async def list_deliveries(conn, *, site_id: int | None = None, status: str | None = None,
                          before_id: int | None = None, limit: int = 100) -> dict:
    items = await q.fetch_all(conn, "list_webhook_deliveries", {
        "site_id": site_id, "status": status, "before_id": before_id, "limit": limit})
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}
