"""The scheduler: one leader across processes (advisory lock), takeover when the leader dies, and each
scheduled slot run once however many schedulers race for it."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import make_settings
from workhub.core import maintenance
from workhub.db.pool import Database
from workhub.scheduler import Scheduler, run_due


async def open_db(settings) -> Database:
    db = Database(settings, settings.database_url)
    await db.pool.open(wait=True)
    return db


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_two_schedulers_one_leader_and_takeover(db_url, sql, tmp_path):
    s = make_settings(db_url, tmp_path, scheduler_tick_seconds=0.2, scheduler_leader_retry_seconds=0.3)
    db_a, db_b = await open_db(s), await open_db(s)
    a, b = Scheduler(db_a, s, name="a"), Scheduler(db_b, s, name="b")
    try:
        await a.start()
        await wait_for(lambda: a.is_leader, what="a to lead")
        await b.start()
        # every job's current slot gets run by the leader
        await wait_for(lambda: sql.execute("SELECT count(DISTINCT job) FROM v1_hub_maintenance_runs "
                                           "WHERE status <> 'running'").fetchone()[0] == 5,
                       timeout=60, what="the five jobs to run")
        await asyncio.sleep(1.0)  # b retries the lock a few times meanwhile
        assert a.is_leader and not b.is_leader
        runners = {r[0] for r in sql.execute("SELECT DISTINCT run_by FROM v1_hub_maintenance_runs").fetchall()}
        assert runners == {"scheduler:a"}

        # a "dies": its loop stops and its lock connection goes away without a goodbye
        a._task.cancel()
        sql.execute("SELECT pg_terminate_backend(%s)", [a._lock_conn.info.backend_pid])
        await wait_for(lambda: b.is_leader, what="b to take over")
        # the new leader runs the next slots; the old slots are not run again
        sql.execute("DELETE FROM v1_hub_maintenance_runs WHERE job = 'daily'")
        await wait_for(lambda: sql.execute("SELECT run_by FROM v1_hub_maintenance_runs WHERE job = 'daily' "
                                           "AND status <> 'running'").fetchone() == ("scheduler:b",),
                       timeout=60, what="b to run the daily job")
        dupes = sql.execute("SELECT count(*) FROM (SELECT job, scheduled_for FROM v1_hub_maintenance_runs "
                            "WHERE scheduled_for IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        assert dupes == 0
    finally:
        await a.stop()
        await b.stop()
        await db_a.close()
        await db_b.close()


async def test_racing_schedulers_run_each_slot_once(db_url, sql, tmp_path):
    s = make_settings(db_url, tmp_path)
    dbs = [await open_db(s) for _ in range(3)]
    try:
        # no leader election here: three "leaders" at once still run each job's slot exactly once
        results = await asyncio.gather(*(run_due(db, s, run_by=f"racer{i}") for i, db in enumerate(dbs)))
        runs = [run for batch in results for run in batch]
        assert sorted(r["job"] for r in runs) == sorted(maintenance.JOB_KINDS)
        assert all(r["status"] == "ok" for r in runs), [r["error"] for r in runs]
        assert sql.execute("SELECT count(*) FROM v1_hub_maintenance_runs").fetchone()[0] == 5
        slot = maintenance.due_slots(s.now(), s)["daily"]
        again = await asyncio.gather(*(maintenance.run_job(db, s, "daily", scheduled_for=slot) for db in dbs))
        assert again == [None, None, None]
    finally:
        for db in dbs:
            await db.close()


async def test_a_failed_scheduled_run_is_retried_later(database, db_url, sql, tmp_path):
    from datetime import timedelta

    s = make_settings(db_url, tmp_path)
    slot = maintenance.due_slots(s.now(), s)["weekly"]
    # a record left 'running' by a process that died long ago is taken over; a fresh one is not
    sql.execute("INSERT INTO v1_hub_maintenance_runs (job, scheduled_for, started_at, status, run_by) "
                "VALUES ('weekly', %s, %s, 'running', 'dead-process')", [slot, s.now() - timedelta(hours=7)])
    run = await maintenance.run_job(database, s, "weekly", scheduled_for=slot)
    assert run is not None and run["status"] == "ok" and run["attempts"] == 2
    assert await maintenance.run_job(database, s, "weekly", scheduled_for=slot) is None


async def test_scheduler_survives_a_lost_lock_connection(db_url, sql, tmp_path):
    s = make_settings(db_url, tmp_path, scheduler_tick_seconds=0.2, scheduler_leader_retry_seconds=0.2)
    db = await open_db(s)
    sched = Scheduler(db, s, name="solo")
    try:
        await sched.start()
        await wait_for(lambda: sched.is_leader, what="leadership")
        pid = sched._lock_conn.info.backend_pid
        sql.execute("SELECT pg_terminate_backend(%s)", [pid])
        # it notices, steps down, and wins the lock again on a new connection
        await wait_for(lambda: sched.is_leader and sched._lock_conn is not None
                       and sched._lock_conn.info.backend_pid != pid, what="re-election")
        held = sql.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND pid = %s", [sched._lock_conn.info.backend_pid]).fetchone()[0]
        assert held == 1
    finally:
        await sched.stop()
        await db.close()
    # stopping releases the lock
    assert sql.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                       "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0
