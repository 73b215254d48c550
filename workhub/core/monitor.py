"""Live monitoring figures (SPEC section 5, seed 000 section 5): the /api/monitor snapshot.

Also home of the small TTL cache the analysis functions share: dashboard data lives 1 minute,
statistics 5 minutes (seed 000 section 8). The cache is per process; every entry is keyed by
function, kind and arguments, and `clear_cache()` empties it (tests, or after a manual change).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache
from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.core import proxies
from workhub.core.alarms import plain_alert
from workhub.db import queries as q

# ---------------------------------------------------------------- caching
_caches: dict[str, TTLCache] = {}


def _cache_for(kind: str, ttl: int) -> TTLCache:
    cache = _caches.get(kind)
    if cache is None or cache.ttl != ttl:
        cache = _caches[kind] = TTLCache(maxsize=512, ttl=ttl)
    return cache


def clear_cache() -> None:
    """Forget every cached figure (all kinds)."""
    for cache in _caches.values():
        cache.clear()


def cached(kind: str):
    """Cache an ``async fn(conn, settings, *args, **kwargs)`` for the TTL of `kind`.

    kind "dashboard" uses settings.cache_dashboard_seconds, "stats" settings.cache_stats_seconds.
    Pass ``fresh=True`` to bypass (and refresh) the entry. The database URL is part of the key, so
    two hubs in one process (tests) never see each other's figures."""

    def decorate(fn: Callable[..., Awaitable[Any]]):
        @functools.wraps(fn)
        async def wrapper(conn: AsyncConnection, settings: Settings, *args, fresh: bool = False, **kwargs):
            ttl = settings.cache_dashboard_seconds if kind == "dashboard" else settings.cache_stats_seconds
            if ttl <= 0:
                return await fn(conn, settings, *args, **kwargs)
            cache = _cache_for(kind, ttl)
            key = (fn.__module__, fn.__qualname__, settings.database_url, args, tuple(sorted(kwargs.items())))
            if not fresh:
                try:
                    return cache[key]
                except KeyError:
                    pass
            value = await fn(conn, settings, *args, **kwargs)
            cache[key] = value
            return value

        return wrapper

    return decorate


# ---------------------------------------------------------------- snapshot
def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


async def snapshot(conn: AsyncConnection, settings: Settings, *, alert_items: int = 20) -> dict:
    """The /api/monitor body: live figures, never cached (each is an index lookup)."""
    now = settings.now()
    work_date = settings.work_date()
    overview = await q.fetch_one(conn, "monitor_overview", {
        "work_date": work_date, "now": now, "online_seconds": settings.client_online_seconds})
    today = await q.fetch_one(conn, "monitor_today", {"work_date": work_date})
    alerts = await q.fetch_all(conn, "monitor_firing_alerts", {"limit": alert_items})
    results = today["success"] + today["failed"] + today["blocked"]
    return {
        "generated_at": now.isoformat(),
        "active_slots": overview["active_slots"],
        "in_flight": overview["in_flight"],
        "clients": {"online": overview["clients_online"], "total": overview["clients_total"],
                    "online_window_seconds": settings.client_online_seconds},
        "proxies": await proxies.pool_figures(conn, settings),
        "today": {
            "work_date": work_date.isoformat(),
            "target": today["target"],
            "allocated": today["allocated"],
            "in_flight": today["in_flight"],
            "success": today["success"],
            "failed": today["failed"],
            "blocked": today["blocked"],
            "expired": today["expired"],
            "released": today["released"],
            "remaining": max(today["target"] - today["success"], 0),
            "slots_tracked": today["slots_tracked"],
            "slots_complete": today["slots_complete"],
            "completion_rate": _rate(today["success"], today["target"]) if today["target"] else 0.0,
            "success_rate": _rate(today["success"], results),
            "block_rate": _rate(today["blocked"], results),
        },
        "alerts": {"firing": overview["alerts_firing"], "items": [plain_alert(a) for a in alerts]},
    }


# ---------------------------------------------------------------- scrape-time figures for /metrics
async def metrics_figures(conn: AsyncConnection, settings: Settings) -> dict:
    """Everything /metrics reports from the database, so any hub process answers correctly."""
    return {
        "snapshot": await snapshot(conn, settings, alert_items=0),
        "alerts_by_rule": await q.fetch_all(conn, "metrics_alerts_by_rule"),
        "maintenance_runs": await q.fetch_all(conn, "metrics_maintenance_runs"),
        "db_connections": await q.fetch_all(conn, "metrics_db_connections"),
    }
