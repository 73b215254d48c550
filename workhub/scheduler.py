"""The maintenance scheduler inside `workhub serve`: one leader across all hub processes.

Leader election: each hub process opens one dedicated connection (outside the pool) and tries
``pg_try_advisory_lock``; the process holding it is the leader and runs the jobs. PostgreSQL releases
the lock with the connection, so when the leader dies (or its connection does) a follower, retrying
every ``scheduler_leader_retry_seconds``, takes over. The same lock key is safe across any number of
processes and machines sharing the database.

Why a plain loop and not APScheduler's cron triggers: the schedule is five fixed slots (every minute,
local midnight, and the daily/weekly/monthly hour), and what matters is that each slot runs once, at
most once, even after the hub was down or two leaders briefly overlap. The loop asks "what is the latest
slot of each job at the hub clock (settings.now(), so roll-over is testable with a shifted clock)?" and
claims it in v1_hub_maintenance_runs, whose unique (job, scheduled_for) index is the real guard. A missed
midnight is caught up at the next tick instead of depending on a misfire grace time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime

import psycopg

from workhub.config import Settings
from workhub.core import maintenance
from workhub.db import queries as q
from workhub.db.pool import connect_kwargs

log = logging.getLogger(__name__)

LEADER_LOCK_ID = 0x776B6875_6C  # "wkhul": distinct from the migration lock
CALENDAR_JOBS = ("midnight", "monthly", "daily", "weekly")  # monthly before daily: partitions first


class Scheduler:
    def __init__(self, db, settings: Settings, name: str | None = None):
        self.db = db
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"
        self.is_leader = False
        self.leader_since: datetime | None = None
        self.last_tick_at: datetime | None = None
        self._lock_conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task | None = None
        self._calendar_task: asyncio.Task | None = None
        self._minute_task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    # ------------------------------------------------------------ life cycle
    def launch(self) -> Scheduler:
        """Starts the election/tick loop on the running event loop."""
        self._task = asyncio.create_task(self._run(), name="workhub-scheduler")
        return self

    async def start(self) -> Scheduler:
        return self.launch()

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._calendar_task, self._minute_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._resign()

    def status(self) -> dict:
        return {"name": self.name, "is_leader": self.is_leader, "leader_since": self.leader_since,
                "last_tick_at": self.last_tick_at}

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.is_leader:
                    await self._check_lock()
                else:
                    await self._try_lead()
                if self.is_leader:
                    self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must survive a database outage
                log.warning("scheduler: %s", exc)
                await self._resign()
            wait = (self.settings.scheduler_tick_seconds if self.is_leader
                    else self.settings.scheduler_leader_retry_seconds)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)

    # ------------------------------------------------------------ leadership
    async def _try_lead(self) -> None:
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = await psycopg.AsyncConnection.connect(
                self.db.url, **{**connect_kwargs(self.settings), "prepare_threshold": None},
                connect_timeout=10)
        cur = await self._lock_conn.execute(q.sql("try_advisory_lock"), {"lock_id": LEADER_LOCK_ID})
        got = (await cur.fetchone())[0]
        if got:
            self.is_leader = True
            self.leader_since = self.settings.now()
            log.info("scheduler %s is the leader", self.name)

    async def _check_lock(self) -> None:
        """A leader whose lock connection died has lost the lock (another process may hold it now)."""
        try:
            await self._lock_conn.execute(q.sql("ping"))
        except psycopg.Error:
            log.warning("scheduler %s lost its lock connection; no longer the leader", self.name)
            await self._resign()

    async def _resign(self) -> None:
        was_leader = self.is_leader
        self.is_leader = False
        self.leader_since = None
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                if was_leader:
                    await conn.execute(q.sql("advisory_unlock"), {"lock_id": LEADER_LOCK_ID})
            with contextlib.suppress(Exception):
                await conn.close()

    # ------------------------------------------------------------ jobs
    def tick(self) -> None:
        """Start the due jobs, each kind in its own task so a long daily job never delays lease expiry."""
        self.last_tick_at = self.settings.now()
        if self._minute_task is None or self._minute_task.done():
            self._minute_task = asyncio.create_task(self._run_due(("minute",)), name="workhub-minute")
        if self._calendar_task is None or self._calendar_task.done():
            self._calendar_task = asyncio.create_task(self._run_due(CALENDAR_JOBS), name="workhub-calendar")

    async def _run_due(self, jobs) -> None:
        try:
            await run_due(self.db, self.settings, jobs, run_by=f"scheduler:{self.name}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down: try again next tick
            log.warning("scheduler: running due jobs failed: %s", exc)


async def run_due(db, settings: Settings, jobs=maintenance.JOB_KINDS, run_by: str | None = None) -> list[dict]:
    """Runs each job whose latest slot (at the hub clock) nobody has claimed yet; returns the runs made."""
    slots = maintenance.due_slots(settings.now(), settings)
    done = []
    for job in jobs:
        run = await maintenance.run_job(db, settings, job, scheduled_for=slots[job], run_by=run_by)
        if run is not None:
            if run["status"] != "ok":
                log.warning("maintenance %s for %s failed: %s", job, slots[job].isoformat(), run["error"])
            done.append(run)
    return done


def start_scheduler(app) -> Scheduler:
    """Called by the app lifespan when HUB_SCHEDULER_ENABLED; returns the service (with ``stop()``)."""
    scheduler = Scheduler(app.state.db, app.state.settings)
    app.state.scheduler = scheduler
    return scheduler.launch()
