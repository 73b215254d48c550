"""What the dashboard pages show: reads shaped for the templates (the pages that combine independent
reads run them at once, each on its own pooled connection).

The figures come from the capability modules (core.monitor, core.analysis, core.alarms, core.clients,
core.maintenance), so the dashboard and the API always agree and share their caches (dashboard data
HUB_CACHE_DASHBOARD_SECONDS, statistics HUB_CACHE_STATS_SECONDS). The dashboard's own queries
(sql/queries/dashboard.sql) cover only the page-specific lists: per-slot progress with search and
sort, the slot's ledger and recent results, and the proxy pool with IP histories.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.core import alarms, analysis, monitor
from workhub.core import backup as backup_core
from workhub.core import clients as clients_core
from workhub.core import maintenance as maintenance_core
from workhub.core import proxies as proxies_core
from workhub.db import queries as q
from workhub.db.pool import Database

SORTS = ("completion", "keyword", "target", "success", "in_flight", "failed", "id")
PAGE_SIZE = 100


def _rate(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


# ---------------------------------------------------------------- overview
async def overview(conn: AsyncConnection, settings: Settings) -> dict[str, Any]:
    """The KPI figures (live: monitor.snapshot is never cached)."""
    snap = await monitor.snapshot(conn, settings)
    proxies, today, clients = snap["proxies"], snap["today"], snap["clients"]
    figures = {
        "work_date": today["work_date"],
        "active_slots": snap["active_slots"], "in_flight": snap["in_flight"],
        "clients_online": clients["online"], "clients_total": clients["total"],
        "proxies_total": proxies.get("total", 0), "proxies_available": proxies.get("available", 0),
        "proxies_exhausted": proxies.get("exhausted", 0), "proxies_cooldown": proxies.get("cooldown", 0),
        "target": today["target"], "success": today["success"], "failed": today["failed"],
        "blocked": today["blocked"], "expired": today["expired"],
        "alerts_firing": snap["alerts"]["firing"], "alerts": snap["alerts"]["items"],
    }
    figures["completion_rate"] = _rate(figures["success"], figures["target"])
    figures["proxy_availability"] = _rate(figures["proxies_available"], figures["proxies_total"])
    return figures


async def slot_progress(conn: AsyncConnection, settings: Settings, *, search: str | None = None,
                        sort: str = "completion", direction: str = "asc", page: int = 1) -> dict[str, Any]:
    sort = sort if sort in SORTS else "completion"
    direction = direction if direction in ("asc", "desc") else "asc"
    page = max(1, page)
    params = {"work_date": settings.work_date(), "search": (search or "").strip() or None,
              "sort": sort, "direction": direction, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}
    rows = await q.fetch_all(conn, "dashboard_slot_progress", params)
    total = await q.fetch_val(conn, "dashboard_slot_progress_count", params)
    return {"rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
            "sort": sort, "direction": direction, "search": params["search"] or ""}


# ---------------------------------------------------------------- slot detail
async def slot_detail(conn: AsyncConnection, settings: Settings, slot_id: int, days: int = 30) -> dict | None:
    slot = await q.fetch_one(conn, "dashboard_slot", {"slot_id": slot_id})
    if slot is None:
        return None
    work_date = settings.work_date()
    day_rows = await q.fetch_all(conn, "dashboard_slot_days",
                                 {"slot_id": slot_id, "work_date": work_date, "days": days})
    ranks = await analysis.rank_history(conn, settings, slot_id, days=days)
    recent = await q.fetch_all(conn, "dashboard_slot_results", {
        "slot_id": slot_id, "since": settings.now() - timedelta(days=days), "limit": 50})
    today = next((d for d in day_rows if d["work_date"] == work_date), None)
    return {
        "slot": slot, "days": day_rows, "today": today, "ranks": ranks, "recent": recent,
        "progress_chart": {
            "labels": [d["work_date"].isoformat() for d in day_rows],
            "target": [d["target_count"] for d in day_rows],
            "success": [d["success_count"] for d in day_rows],
            "failed": [d["failed_count"] for d in day_rows],
            "blocked": [d["blocked_count"] for d in day_rows],
        },
        "rank_chart": {
            "labels": [str(r["work_date"]) for r in ranks],
            "best": [r["best_rank"] for r in ranks],
            "average": [r["avg_rank"] for r in ranks],
        },
    }


# ---------------------------------------------------------------- clients, proxies, alerts, maintenance
async def clients(conn: AsyncConnection, settings: Settings, limit: int = 500) -> dict[str, Any]:
    """Every client with its online status, and today's performance (seed 3.3) where it has worked."""
    listing = await clients_core.list_clients(conn, settings, limit=limit)
    performance = {str(p["client_ip"]): p for p in await analysis.client_performance(conn, settings)}
    rows = []
    for client in listing["items"]:
        perf = performance.get(str(client["client_ip"]), {})
        rows.append({**client, "today": perf})
    rows.sort(key=lambda c: (not c["online"], -(c["today"].get("today_tasks") or 0), c["id"]))
    return {"rows": rows, "online": listing["online"], "total": listing["total"]}


async def proxies(conn: AsyncConnection, settings: Settings, status: str | None = None,
                  limit: int = 500) -> dict[str, Any]:
    rows = await q.fetch_all(conn, "dashboard_proxies", {"status": status, "limit": limit})
    for row in rows:
        history = row.get("ip_history") or []
        # newest first; entries are plain IPs or objects with an "ip" key
        row["ip_history"] = [h if isinstance(h, dict) else {"ip": h} for h in reversed(history)][:10]
        row["budget_pct"] = _rate(row["use_count"], row["max_uses"])
    states = await q.fetch_all(conn, "dashboard_proxy_states")
    return {"rows": rows, "states": states, "figures": await proxies_core.pool_figures(conn, settings)}


async def alerts(conn: AsyncConnection, status: str | None = None, limit: int = 200) -> list[dict]:
    return await alarms.list_alerts(conn, status=status, limit=limit)


async def maintenance(conn: AsyncConnection, settings: Settings) -> dict[str, Any]:
    runs = await maintenance_core.list_runs(conn, limit=100)
    for run in runs:
        done = run.get("finished_at")
        run["seconds"] = (done - run["started_at"]).total_seconds() if done and run.get("started_at") else None
    last = await maintenance_core.last_runs(conn, settings)
    return {"runs": runs, "last": last, "backups": backup_files(settings)}


def backup_files(settings: Settings, limit: int = 20) -> list[dict]:
    """Backup files in the backup directory (the one the API and `workhub backup` write to), newest first."""
    return backup_core.list_backups(settings, limit=limit)


# ---------------------------------------------------------------- statistics
async def trends(conn: AsyncConnection, settings: Settings, days: int = 14) -> dict[str, Any]:
    rows = await analysis.daily_trends(conn, settings, days=days)
    return {
        "labels": [str(r["work_date"]) for r in rows],
        "target": [r["target"] for r in rows],
        "success": [r["success"] for r in rows],
        "failed": [r["failed"] for r in rows],
        "blocked": [r["blocked"] for r in rows],
        "completion": [r["completion_rate"] for r in rows],
        "has_work": any(r["target"] or r["success"] or r["failed"] or r["blocked"] for r in rows),
    }


async def analysis_page(db: Database, read_db: Database, settings: Settings) -> dict[str, Any]:
    """Settings combinations (seed 3.4), block types (seed 6), per-client performance (seed 3.3), trends:
    four independent queries, each on its own connection at once (the page waits for the slowest, not
    for the sum; on large data that is the difference to the 300 ms target). The settings analysis runs
    on the primary (it rolls up what has closed as it reads); the rest on read_db (a replica, if any)."""
    effect, blocks, clients_, trend = await asyncio.gather(
        db.run(analysis.settings_effect, settings, days=7, min_sample=10),
        read_db.run(analysis.block_types, settings, hours=24),
        read_db.run(analysis.client_performance, settings),
        read_db.run(trends, settings))
    return {"settings_effect": effect, "block_types": blocks, "client_performance": clients_, "trends": trend}


async def overview_page(db: Database, settings: Settings, **progress_options) -> dict[str, Any]:
    """The overview's KPIs, slot progress and trends, queried at once on three connections."""
    kpis, progress, trend = await asyncio.gather(
        db.run(overview, settings), db.run(slot_progress, settings, **progress_options), db.run(trends, settings))
    return {"kpis": kpis, "progress": progress, "trends": trend, "alerts": kpis["alerts"]}
