"""The alarm engine (SPEC section 5, seed 000 section 5 "alarm conditions").

Rules (thresholds and windows are settings):
- ``block_rate``: blocked / results over the last alarm_window_seconds > alarm_block_rate
  (only with at least alarm_min_sample results).
- ``success_rate``: successes / results over the same window < alarm_success_rate (same sample).
- ``client_offline`` (one alert per client): silent for alarm_client_offline_seconds after having
  been active within alarm_client_lookback_seconds.
- ``proxy_pool``: available proxies / pool < alarm_proxy_available_ratio (or no proxy at all while
  slots are active).
- ``proxy_block_rate`` (one alert per proxy): a proxy's block rate over the window > alarm_block_rate,
  with at least alarm_min_sample results through it.

`evaluate` measures every rule and applies the outcome in one statement: one open alert per rule and
subject (a unique partial index, INSERT ... ON CONFLICT), refreshed while the condition holds,
resolved when it clears. New and resolved alerts are left with notified_at = NULL; `notify_pending`
claims them in a short transaction of its own and then logs them and POSTs them to the webhook, so
no database transaction ever waits on the network.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import httpx
from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.core import proxies
from workhub.db import queries as q

log = logging.getLogger("workhub.alarms")

RULES = ("block_rate", "success_rate", "client_offline", "proxy_pool", "proxy_block_rate")
MAX_OFFLINE_ALERTS = 1000  # one evaluation never opens more than this many client alerts


async def measure(conn: AsyncConnection, settings: Settings) -> list[dict]:
    """The alert conditions that hold now (each a dict: rule, subject, severity, message, value, ...)."""
    now = settings.now()
    conditions: list[dict] = []
    window = settings.alarm_window_seconds
    rates = await q.fetch_one(conn, "alarm_result_rates", {"since": now - timedelta(seconds=window), "now": now})
    total = rates["total"]
    sample = {"results": total, "window_seconds": window, "min_sample": settings.alarm_min_sample}
    if total >= settings.alarm_min_sample and total > 0:
        block_rate = rates["blocked"] / total
        if block_rate > settings.alarm_block_rate:
            conditions.append(_condition(
                "block_rate", "", "critical" if block_rate > 2 * settings.alarm_block_rate else "warning",
                f"Block rate {block_rate:.1%} over the last {_span(window)} is above "
                f"{settings.alarm_block_rate:.0%} ({rates['blocked']} of {total} results).",
                block_rate, settings.alarm_block_rate, {**sample, "blocked": rates["blocked"]}))
        success_rate = rates["success"] / total
        if success_rate < settings.alarm_success_rate:
            conditions.append(_condition(
                "success_rate", "", "critical" if success_rate < settings.alarm_success_rate / 2 else "warning",
                f"Success rate {success_rate:.1%} over the last {_span(window)} is below "
                f"{settings.alarm_success_rate:.0%} ({rates['success']} of {total} results).",
                success_rate, settings.alarm_success_rate, {**sample, "success": rates["success"]}))

    offline = await q.fetch_all(conn, "alarm_offline_clients", {
        "offline_before": now - timedelta(seconds=settings.alarm_client_offline_seconds),
        "active_since": now - timedelta(seconds=settings.alarm_client_lookback_seconds),
        "limit": MAX_OFFLINE_ALERTS})
    for client in offline:
        silent = (now - client["last_seen_at"]).total_seconds()
        name = f" ({client['client_name']})" if client["client_name"] else ""
        conditions.append(_condition(
            "client_offline", client["client_ip"], "warning",
            f"Client {client['client_ip']}{name} has been silent for {_span(silent)}.",
            silent, settings.alarm_client_offline_seconds,
            {"last_seen_at": client["last_seen_at"].isoformat()}))
    if offline:
        await q.execute(conn, "alarm_mark_clients_offline", {"ips": [c["client_ip"] for c in offline]})

    pool = await proxies.pool_figures(conn, settings)
    pool_total, available = int(pool.get("total") or 0), int(pool.get("available") or 0)
    ratio = available / pool_total if pool_total else 0.0
    active_slots = None
    if pool_total == 0:
        overview = await q.fetch_one(conn, "monitor_overview", {
            "work_date": settings.work_date(), "now": now, "online_seconds": settings.client_online_seconds})
        active_slots = overview["active_slots"]
    if (pool_total > 0 and ratio < settings.alarm_proxy_available_ratio) or (pool_total == 0 and active_slots):
        conditions.append(_condition(
            "proxy_pool", "", "critical" if available == 0 else "warning",
            f"Only {available} of {pool_total} proxies are available "
            f"(threshold {settings.alarm_proxy_available_ratio:.0%}).",
            ratio, settings.alarm_proxy_available_ratio,
            {k: pool.get(k) for k in ("total", "available", "active", "exhausted", "cooldown", "offline",
                                      "disabled") if k in pool}))

    for row in await proxies.block_rates(conn, settings):
        if row["results"] >= settings.alarm_min_sample and row["block_rate"] > settings.alarm_block_rate:
            conditions.append(_condition(
                "proxy_block_rate", f"proxy:{row['proxy_id']}", "warning",
                f"Proxy {row['proxy_id']} ({row['host']}:{row['port']}) was blocked on {row['block_rate']:.1%} "
                f"of {row['results']} results over the last {_span(window)}.",
                row["block_rate"], settings.alarm_block_rate,
                {"proxy_id": row["proxy_id"], "results": row["results"], "blocked": row["blocked"],
                 "status": row["status"]}))
    return conditions


async def evaluate(conn: AsyncConnection, settings: Settings) -> dict:
    """Measure every rule and open, refresh or resolve alerts; safe from any number of processes."""
    await q.execute(conn, "alarm_lock")
    conditions = await measure(conn, settings)
    outcome = await q.fetch_one(conn, "alarm_apply", {
        "conditions": json.dumps(conditions), "rules": list(RULES), "now": settings.now()})
    return {"evaluated_at": settings.now().isoformat(), "rules": list(RULES),
            "firing": outcome["firing"], "fired": outcome["fired"], "resolved": outcome["resolved"],
            "fired_items": outcome["fired_items"], "resolved_items": outcome["resolved_items"]}


async def list_alerts(conn: AsyncConnection, status: str | None = None, limit: int = 100) -> list[dict]:
    """Alerts, firing first, newest first; `status` = "firing" | "resolved" | None (all)."""
    rows = await q.fetch_all(conn, "alarm_list", {"status": status, "limit": limit})
    return [plain_alert(r) for r in rows]


async def get_alert(conn: AsyncConnection, alert_id: int) -> dict | None:
    row = await q.fetch_one(conn, "alarm_get", {"id": alert_id})
    return None if row is None else plain_alert(row)


async def notify_pending(db, settings: Settings, *, limit: int = 100) -> dict:
    """Send the alerts' unsent events (fired or resolved) to the log and the webhook.

    `db` is a workhub.db.pool.Database: claiming commits before any HTTP request is made; a failed
    delivery goes back to the queue (up to webhook_max_attempts)."""
    claimed = await db.run(_claim, settings, limit)
    sent = failed = 0
    if not claimed:
        return {"claimed": 0, "sent": 0, "failed": 0}
    for alert in claimed:
        _log_event(alert)
    url = settings.alert_webhook_url
    if url:
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds) as client:
            for alert in claimed:
                try:
                    response = await client.post(url, json=webhook_payload(alert),
                                                 headers={"User-Agent": "workhub-alerts"})
                    response.raise_for_status()
                    sent += 1
                except httpx.HTTPError as exc:
                    failed += 1
                    error = f"{type(exc).__name__}: {getattr(getattr(exc, 'response', None), 'status_code', '')}"
                    log.warning("alert webhook delivery failed for alert %s: %s", alert["id"], error)
                    await db.run(_failed, alert["id"], error, settings.webhook_max_attempts)
    return {"claimed": len(claimed), "sent": sent, "failed": failed}


async def evaluate_and_notify(db, settings: Settings) -> dict:
    """One scheduler tick: evaluate in its own transaction, then deliver after it committed."""
    outcome = await db.run(evaluate, settings)
    outcome["notifications"] = await notify_pending(db, settings)
    return outcome


def webhook_payload(alert: dict) -> dict:
    return {"event": f"alert.{alert['status']}", "alert": plain_alert(alert)}


# ---------------------------------------------------------------- helpers
async def _claim(conn: AsyncConnection, settings: Settings, limit: int) -> list[dict]:
    return await q.fetch_all(conn, "alarm_claim_notifications", {"now": settings.now(), "limit": limit})


async def _failed(conn: AsyncConnection, alert_id: int, error: str, max_attempts: int) -> None:
    await q.execute(conn, "alarm_notification_failed", {"id": alert_id, "error": error[:200],
                                                        "max_attempts": max_attempts})


def _log_event(alert: dict) -> None:
    subject = f" [{alert['subject']}]" if alert["subject"] else ""
    if alert["status"] == "firing":
        log.warning("ALERT FIRING %s%s (%s): %s", alert["rule"], subject, alert["severity"], alert["message"])
    else:
        log.info("alert resolved %s%s: %s", alert["rule"], subject, alert["message"])


def _condition(rule: str, subject: str, severity: str, message: str, value: float, threshold: float,
               details: dict) -> dict:
    return {"rule": rule, "subject": subject, "severity": severity, "message": message,
            "value": round(float(value), 6), "threshold": float(threshold), "details": details}


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def plain_alert(row: dict) -> dict:
    """An alert row as JSON-ready values (datetimes as ISO 8601): for the API, webhooks and the monitor."""
    out = dict(row)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out
