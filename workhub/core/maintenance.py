"""Maintenance jobs: minute, midnight, daily, weekly, monthly (SPEC section 6, seed 000 sections 2 and 4).

Every run is recorded in v1_hub_maintenance_runs (job, scheduled_for, start, end, status, rows per step,
error). A job is a list of steps, each in its own short transaction(s): one failing step is recorded in
the run (rows_affected[step] = {"error": ...} and the run's error) and does not stop the others.

Scheduled runs are claimed through the unique index (job, scheduled_for): two schedulers racing for the
same slot run it once. Runs by hand (scheduled_for NULL) always run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from workhub.config import Settings
from workhub.core import alarms, allocation, analysis, proxies, webhooks
from workhub.db import queries as q
from workhub.errors import HubError

log = logging.getLogger(__name__)

JOB_KINDS = ("minute", "midnight", "daily", "weekly", "monthly")
RECORDED_JOBS = JOB_KINDS + ("backup",)

MAX_ATTEMPTS = 3  # a failed scheduled run is retried this many times in all
RETRY_AFTER_SECONDS = 600
STALE_AFTER_SECONDS = 6 * 3600  # a 'running' record this old belongs to a process that died
MAX_BATCHES = 10_000  # bounds every move loop (5000 x 10000 = 50M rows per step and run)

# (live table, archive table) pairs whose old partitions the monthly job moves
RESULT_PARTITIONS = (("v1_hub_work_results", "v1_hub_work_results_archive"),
                     ("v1_hub_product_results", "v1_hub_product_results_archive"))
ACTIVITY_PARTITIONS = ("v1_hub_client_activity_logs", "v1_hub_client_activity_logs_archive")


def default_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _describe(exc: BaseException) -> str:
    """One line for the run record: the error's own message (SQL errors carry no credentials)."""
    if isinstance(exc, HubError):
        return f"{exc.code}: {exc.message}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


@dataclass
class JobRun:
    """The context a job's steps run in; collects what each step did."""

    db: Any  # workhub.db.pool.Database
    settings: Settings
    job: str
    scheduled_for: datetime | None
    now: datetime
    rows: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def work_date(self) -> date:
        return (self.scheduled_for or self.now).astimezone(self.settings.tz).date()

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await fn()
        except Exception as exc:  # noqa: BLE001 - recorded in the run, the next step still runs
            log.warning("maintenance %s/%s failed: %s", self.job, name, _describe(exc))
            self.rows[name] = {"error": _describe(exc)}
            self.errors.append(f"{name}: {_describe(exc)}")
            return None
        self.rows[name] = result
        return result


# ---------------------------------------------------------------- running and recording
async def run_job(db, settings: Settings, job_name: str, scheduled_for: datetime | None = None,
                  run_by: str | None = None) -> dict | None:
    """Run one job and record it. Returns the finished run, or None when the scheduled slot was already
    claimed by another scheduler."""
    if job_name not in JOBS:
        raise HubError(422, "unknown_job", f"No maintenance job {job_name!r}.", {"jobs": list(JOB_KINDS)})
    return await run_recorded(db, settings, job_name, JOBS[job_name], scheduled_for, run_by)


async def run_recorded(db, settings: Settings, job_name: str, body: Callable[[JobRun], Awaitable[None]],
                       scheduled_for: datetime | None = None, run_by: str | None = None) -> dict | None:
    now = settings.now()
    claim = await db.run(claim_run, job_name, scheduled_for, now, run_by or default_runner())
    if claim is None:
        return None
    ctx = JobRun(db, settings, job_name, scheduled_for, now)
    try:
        await body(ctx)
    except asyncio.CancelledError:
        ctx.errors.append("cancelled: the hub is shutting down")
        await asyncio.shield(db.run(finish_run, claim["id"], settings.now(), ctx.rows, ctx.errors))
        raise
    except Exception as exc:  # noqa: BLE001 - a job's own failure is recorded, not raised
        ctx.errors.append(_describe(exc))
    return await db.run(finish_run, claim["id"], settings.now(), ctx.rows, ctx.errors)


async def claim_run(conn: AsyncConnection, job: str, scheduled_for: datetime | None, now: datetime,
                    run_by: str) -> dict | None:
    return await q.fetch_one(conn, "maintenance_claim_run", {
        "job": job, "scheduled_for": scheduled_for, "now": now, "run_by": run_by[:200],
        "max_attempts": MAX_ATTEMPTS, "retry_after": RETRY_AFTER_SECONDS, "stale_after": STALE_AFTER_SECONDS,
    })


async def finish_run(conn: AsyncConnection, run_id: int, now: datetime, rows: dict, errors: list[str]) -> dict:
    return await q.fetch_one(conn, "maintenance_finish_run", {
        "id": run_id, "now": now, "status": "failed" if errors else "ok",
        "rows_affected": Jsonb(rows, dumps=_dumps), "error": "; ".join(errors)[:4000] if errors else None,
    })


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


async def list_runs(conn: AsyncConnection, *, job: str | None = None, status: str | None = None,
                    before_id: int | None = None, limit: int = 50) -> list[dict]:
    return await q.fetch_all(conn, "maintenance_list_runs",
                             {"job": job, "status": status, "before_id": before_id, "limit": limit})


async def get_run(conn: AsyncConnection, run_id: int) -> dict:
    run = await q.fetch_one(conn, "maintenance_run_by_id", {"id": run_id})
    if run is None:
        raise HubError(404, "maintenance_run_not_found", "No maintenance run with that id.", {"id": run_id})
    return run


async def last_runs(conn: AsyncConnection, settings: Settings) -> list[dict]:
    return await q.fetch_all(conn, "maintenance_last_runs",
                             {"failures_since": settings.now() - timedelta(days=1)})


# ---------------------------------------------------------------- schedule (pure: testable with any clock)
def due_slots(now: datetime, settings: Settings) -> dict[str, datetime]:
    """The latest slot of each job at or before ``now``, in the hub's time zone.

    A scheduler runs a slot it finds unclaimed, so a hub that was down at midnight catches up at start."""
    tz = settings.tz
    local = now.astimezone(tz)
    today = local.date()
    at = time(settings.maintenance_hour)

    def local_at(d: date, t: time) -> datetime:
        return datetime.combine(d, t, tzinfo=tz)

    daily = local_at(today, at)
    if daily > local:
        daily = local_at(today - timedelta(days=1), at)
    monday = today - timedelta(days=today.weekday())
    weekly = local_at(monday, at)
    if weekly > local:
        weekly = local_at(monday - timedelta(days=7), at)
    first = today.replace(day=1)
    monthly = local_at(first, at)
    if monthly > local:
        monthly = local_at((first - timedelta(days=1)).replace(day=1), at)
    return {
        "minute": local.replace(second=0, microsecond=0),
        "midnight": local_at(today, time(0)),
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
    }


# ---------------------------------------------------------------- the jobs
async def minute_job(run: JobRun) -> None:
    db, settings = run.db, run.settings

    async def expire() -> int:
        batch, total = settings.maintenance_batch_size, 0
        for _ in range(MAX_BATCHES):
            n = await db.run(allocation.expire_leases, settings, batch)
            total += n
            if n < batch:
                break
        return total

    await run.step("expire_leases", expire)
    await run.step("proxy_states", lambda: db.run(proxies.refresh_states, settings))
    # alarms: evaluate in a transaction, then notify after commit (the alarms module's own tick)
    await run.step("alarms", lambda: alarms.evaluate_and_notify(db, settings))
    await run.step("webhooks", lambda: webhooks.deliver_due(db, settings))
    await run.step("client_counters", lambda: db.run(rollup_client_counters, settings))
    # keeps the settings analysis' roll-up current, so no request pays for rolling up a closed day
    await run.step("settings_rollup", lambda: db.run(analysis.rollup_settings, settings))
    # the same for the trend charts: a closed day's totals are summed once, not on every chart
    await run.step("daily_totals", lambda: db.run(analysis.refresh_daily_totals, settings))
    # and for the per-client analysis: the dashboard reads the rollup plus the last minutes of raw rows
    await run.step("client_rollup", lambda: db.run(analysis.rollup_client_days, settings))


async def midnight_job(run: JobRun) -> None:
    work_date = run.work_date
    created = await run.step("init_daily_work_tracking",
                             lambda: run.db.run(allocation.init_day, work_date))
    if isinstance(created, int):
        run.rows["init_daily_work_tracking"] = {"work_date": work_date.isoformat(), "rows_created": created}
    # a new month or week may start at this midnight: make sure its partitions are there
    await run.step("ensure_partitions", lambda: run.db.run(ensure_partitions, run.settings))


async def daily_job(run: JobRun) -> None:
    db, s, now = run.db, run.settings, run.now
    await run.step("archive_allocations", lambda: move_in_batches(
        db, s, "archive_allocations", {"cutoff": now - timedelta(days=s.retain_allocations_days)}))
    tracking_cutoff = now.astimezone(s.tz).date() - timedelta(days=s.retain_tracking_days)
    await run.step("archive_tracking", lambda: move_in_batches(
        db, s, "archive_tracking", {"cutoff_date": tracking_cutoff}))
    await run.step("archive_clients", lambda: move_in_batches(
        db, s, "archive_clients", {"cutoff": now - timedelta(days=s.retain_clients_days)}))
    await run.step("archive_external_triggers", lambda: move_in_batches(
        db, s, "archive_external_triggers", {"cutoff": now - timedelta(days=s.retain_triggers_days)}))
    await run.step("prune_minute_runs", lambda: db.run(
        _execute, "maintenance_prune_runs", {"cutoff": now - timedelta(days=s.maintenance_runs_keep_days)}))
    await run.step("analyze", lambda: db.run(_analyze))


async def weekly_job(run: JobRun) -> None:
    db, s = run.db, run.settings
    today = run.now.astimezone(s.tz).date()
    await run.step("rollup_stats", lambda: db.run(
        rollup_stats, today - timedelta(days=s.stats_rollup_days), today))
    await run.step("inactive_clients", lambda: db.run(inactive_client_report, s, run.now))


async def monthly_job(run: JobRun) -> None:
    db, s, now = run.db, run.settings, run.now
    await run.step("ensure_partitions", lambda: db.run(ensure_partitions, s, now))
    # counters and rollups read the rows in place; count the activity log before its partitions move
    await run.step("client_counters", lambda: db.run(rollup_client_counters, s))
    results_cutoff = now - timedelta(days=s.retain_results_days)
    for live, archive in RESULT_PARTITIONS:
        await run.step(f"archive_{live.removeprefix('v1_hub_')}", lambda live=live, archive=archive: db.run(
            archive_partitions, s, live, archive, results_cutoff))
    logs_cutoff = now - timedelta(weeks=s.retain_activity_log_weeks)
    # before the logs move: a day is never read from a rollup while its raw rows are gone (without its
    # rollup a day is read raw, or from the weekly rollup once archived: exact either way)
    await run.step("prune_client_rollup", lambda: db.run(
        _execute, "client_day_rollup_prune", {"cutoff": logs_cutoff}))
    await run.step("archive_client_activity_logs", lambda: db.run(
        archive_partitions, s, *ACTIVITY_PARTITIONS, logs_cutoff))


JOBS: dict[str, Callable[[JobRun], Awaitable[None]]] = {
    "minute": minute_job, "midnight": midnight_job, "daily": daily_job, "weekly": weekly_job,
    "monthly": monthly_job,
}


# ---------------------------------------------------------------- step bodies (over a connection)
async def _execute(conn: AsyncConnection, name: str, params: dict) -> int:
    return await q.execute(conn, name, params)


async def _analyze(conn: AsyncConnection) -> str:
    await q.execute(conn, "analyze_hot_tables")
    return "ok"


async def move_in_batches(db, settings: Settings, query: str, params: dict) -> int:
    """Moves rows to their archive, one short transaction per batch, until a batch comes back short."""
    batch, total = settings.maintenance_batch_size, 0
    for _ in range(MAX_BATCHES):
        n = await db.run(_execute, query, {**params, "batch": batch, "now": settings.now()})
        total += n
        if n < batch:
            break
    return total


async def ensure_partitions(conn: AsyncConnection, settings: Settings, now: datetime | None = None) -> int:
    """Creates this period's and the next periods' partitions; returns how many were created."""
    return await q.fetch_val(conn, "ensure_partitions", {
        "now": now or settings.now(), "months_ahead": settings.partitions_months_ahead,
        "weeks_ahead": settings.partitions_weeks_ahead})


async def archive_partitions(conn: AsyncConnection, settings: Settings, live: str, archive: str,
                             cutoff: datetime) -> dict:
    """Moves partitions entirely older than ``cutoff`` from ``live`` to ``archive`` (zero copy)."""
    await q.execute(conn, "set_local_lock_timeout", {"value": settings.maintenance_lock_timeout})
    moved = await q.fetch_val(conn, "archive_partitions", {"parent": live, "archive": archive, "cutoff": cutoff})
    return {"partitions": len(moved), "rows": sum(int(m["rows"]) for m in moved), "moved": moved}


async def rollup_stats(conn: AsyncConnection, from_date: date, to_date: date) -> dict:
    """Recomputes the daily statistics rollups for [from_date, to_date] (idempotent)."""
    rows = await q.fetch_val(conn, "rollup_stats", {"from_date": from_date, "to_date": to_date})
    return {"from": from_date.isoformat(), "to": to_date.isoformat(), **rows}


async def inactive_client_report(conn: AsyncConnection, settings: Settings, now: datetime | None = None) -> dict:
    now = now or settings.now()
    cutoff = now - timedelta(days=settings.inactive_client_report_days)
    clients = await q.fetch_all(conn, "inactive_clients_report", {"cutoff": cutoff, "limit": 100})
    total = await q.fetch_val(conn, "inactive_clients_count", {"cutoff": cutoff})
    removal_after = timedelta(days=settings.retain_clients_days)
    return {
        "inactive_days": settings.inactive_client_report_days,
        "count": total,
        "clients": [{**c, "removed_after": c["last_seen_at"] + removal_after} for c in clients],
    }


# The activity log is counted with a lag: rows are written with the hub clock inside ledger transactions
# of milliseconds, so a row stamped before (now - lag) has certainly committed when the window closes.
COUNTER_LAG = timedelta(seconds=60)
COUNTER_WATERMARK = "client_counters"


async def rollup_client_counters(conn: AsyncConnection, settings: Settings) -> dict:
    """Adds the activity since the last run to v1_hub_clients' counters; exactly once per log row."""
    await q.execute(conn, "counter_watermark_init", {"name": COUNTER_WATERMARK})
    since = await q.fetch_val(conn, "counter_watermark_lock", {"name": COUNTER_WATERMARK})
    now = settings.now()
    horizon = now - COUNTER_LAG
    if since is not None and since >= horizon:
        return {"clients": 0, "horizon": since}
    updated = await q.execute(conn, "rollup_client_counters", {
        "since": since or datetime.min.replace(tzinfo=now.tzinfo), "horizon": horizon})
    await q.execute(conn, "counter_watermark_set", {"name": COUNTER_WATERMARK, "horizon": horizon, "now": now})
    return {"clients": updated, "horizon": horizon}
