"""Analysis (SPEC section 5, seed 000 sections 3.3, 3.4 and 6): per-client performance, the effect of
each settings combination, block types, rank history and daily trends.

Each function keeps the operations guide's grouping and formulas, so on the same data it returns the
guide's numbers. Recent days come from the raw tables; days whose raw rows have been archived come
from the daily rollups, which keeps long windows fast on large data. The settings analysis also reads
what has closed of its window from its own exact rollup (migration 0007), and the per-client analysis
from a per-day one (migration 0009), both kept current by the minute job. Results are cached:
statistics 5 minutes, dashboard data (trends, rank history) 1 minute.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.core.monitor import cached
from workhub.db import queries as q
from workhub.errors import HubError


def _plain(value):
    """JSON-friendly values: Decimal -> float, dates -> ISO strings, inet -> str."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return str(value)


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise HubError(422, "validation_error", f"{name} must be between {low} and {high}.",
                       [{"field": name, "message": f"must be between {low} and {high}"}])


@cached("stats")
async def client_performance(conn: AsyncConnection, settings: Settings, day: date | None = None) -> list[dict]:
    """Seed 3.3 for one work day (default today): tasks, instances, average time, successes per client.

    Read-only: what the minute job has rolled up of the day (migration 0009) plus the raw log rows since,
    so the numbers are the guide's and current."""
    day = day or settings.work_date()
    rows = await q.fetch_all(conn, "analysis_client_performance", {"day": day})
    if not rows and day < settings.work_date():
        rows = await q.fetch_all(conn, "analysis_client_performance_rollup", {"day": day})
    out = _rows(rows)
    for row in out:
        row["success_rate"] = round(100.0 * row["successes"] / row["results"], 2) if row["results"] else None
    return out


@cached("stats")
async def settings_effect(conn: AsyncConnection, settings: Settings, days: int = 7,
                          min_sample: int = 10) -> list[dict]:
    """Seed 3.4: results per settings combination since `days` days before today, with at least
    `min_sample` results, best success rate first.

    What has closed of the window (past days, and today in 15-minute steps) is read from the settings
    rollup (migration 0007), rolled up here when first needed; the rest, from a few minutes ago on, from
    the raw results. The rollup keeps the guide's sums and counts, so the numbers are the guide's, and
    current. Days older than the raw retention come from the weekly rollup (their rows are archived)."""
    _check_range("days", days, 1, 3660)
    _check_range("min_sample", min_sample, 1, 1_000_000_000)
    today = settings.work_date()
    from_date = today - timedelta(days=days)
    retain_from = today - timedelta(days=settings.retain_results_days)
    chain = await _settings_rollup(conn, settings, max(from_date, retain_from))
    rows = await q.fetch_all(conn, "analysis_settings_effect", {
        "from_date": from_date, "retain_from": retain_from, "span_ids": chain["span_ids"],
        "raw_from": chain["chain_end"], "min_sample": min_sample})
    return _rows(rows)


async def _settings_rollup(conn: AsyncConnection, settings: Settings, from_date: date) -> dict:
    start = datetime.combine(from_date, time.min, tzinfo=settings.tz)
    return await q.fetch_one(conn, "analysis_settings_rollup", {"from": start, "now": settings.now()})


async def rollup_settings(conn: AsyncConnection, settings: Settings, days: int = 7) -> int:
    """Rolls up, for settings_effect, what has closed of the last `days` days; returns the number of
    spans in the chain. Cheap when there is nothing new; the minute job calls it, so no request pays
    for rolling up a closed day."""
    chain = await _settings_rollup(conn, settings, settings.work_date() - timedelta(days=days))
    return len(chain["span_ids"])


async def rollup_client_days(conn: AsyncConnection, settings: Settings) -> dict:
    """Advances yesterday's and today's per-client rollup (migration 0009) to what has closed; returns
    each day's mark and the log rows added. Yesterday first: it closes 5 minutes after midnight."""
    today = settings.work_date()
    now = settings.now()
    out = {}
    for day in (today - timedelta(days=1), today):
        row = await q.fetch_one(conn, "analysis_client_rollup", {"day": day, "now": now})
        out[day.isoformat()] = {"rolled_until": row["rolled_until"].isoformat(), "log_rows": row["log_rows"]}
    return out


async def refresh_daily_totals(conn: AsyncConnection, settings: Settings) -> int:
    """Recomputes the stale or missing totals of the closed days the trends read (migration 0008);
    returns how many days it summed (none, most minutes)."""
    today = settings.work_date()
    return await q.fetch_val(conn, "refresh_daily_totals", {
        "from": today - timedelta(days=settings.retain_tracking_days), "before": today - timedelta(days=1)})


@cached("stats")
async def block_types(conn: AsyncConnection, settings: Settings, hours: int = 1) -> list[dict]:
    """Seed 6 "high block rate": blocked results per block type over the last `hours` hours, with the
    number (and up to 20 addresses) of affected clients."""
    _check_range("hours", hours, 1, 24 * 90)
    since = settings.now() - timedelta(hours=hours)
    return _rows(await q.fetch_all(conn, "analysis_block_types", {"since": since}))


@cached("dashboard")
async def rank_history(conn: AsyncConnection, settings: Settings, slot_id: int, days: int = 30) -> list[dict]:
    """The slot's rank per work day over the last `days` days (best, average, last seen)."""
    _check_range("days", days, 1, 3660)
    if await q.fetch_one(conn, "analysis_slot_exists", {"slot_id": slot_id}) is None:
        raise HubError(404, "slot_not_found", f"There is no slot {slot_id}.", {"slot_id": slot_id})
    from_date = settings.work_date() - timedelta(days=days - 1)
    return _rows(await q.fetch_all(conn, "analysis_rank_history", {"slot_id": slot_id, "from_date": from_date}))


@cached("dashboard")
async def daily_trends(conn: AsyncConnection, settings: Settings, days: int = 14) -> list[dict]:
    """Fleet-wide ledger per day for the last `days` days (today included), oldest first."""
    _check_range("days", days, 1, 3660)
    return _rows(await q.fetch_all(conn, "analysis_daily_trends", {
        "to_date": settings.work_date(), "days": days}))
