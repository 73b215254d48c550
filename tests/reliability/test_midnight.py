"""Midnight roll-over under load, in the hub's time zone (SPEC sections 3 and 8).

Two hub processes run with their clock (HUB_CLOCK_OFFSET_SECONDS) a few seconds before midnight in
Asia/Seoul, and workers load through both across midnight with some think time, so that packages leased
before midnight are submitted after it. The database's own CURRENT_DATE is real time: only the hub's
clock decides the work date.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import TIMEZONE, HubProcess
from tests.reliability.load import Load, check_ledger, check_worker_view, expire_leases, hub_midnight_offset

LEASE = 120  # long enough for packages held across midnight; expiry is driven on the hub's clock


def _start_before_midnight(db_url, data_dir, started: list, *, before: float, n: int = 2):
    """Start ``n`` hub processes (in parallel) whose clock strikes midnight ``before`` seconds from now.

    The offset is fixed at launch, so on a busy machine the hubs might only become ready after their
    midnight: then they are stopped and started again with a margin sized on the start-up time seen."""
    margin = before
    for _ in range(4):
        offset = hub_midnight_offset(TIMEZONE, margin)
        midnight_real = time.monotonic() + margin  # when the hubs' clock strikes midnight, on this machine's
        hubs = [HubProcess(db_url, data_dir, env={"HUB_CLOCK_OFFSET_SECONDS": repr(offset),
                                                  "HUB_LEASE_SECONDS": str(LEASE)}) for _ in range(n)]
        started.extend(hubs)
        t0 = time.monotonic()
        threads = [threading.Thread(target=h.start, daemon=True) for h in hubs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if all(h.proc is not None and h.proc.poll() is None for h in hubs) \
                and time.monotonic() < midnight_real - before / 2:
            return hubs, offset, midnight_real
        for h in hubs:
            h.stop()
        margin = before + 2 * (time.monotonic() - t0)
    raise AssertionError("could not start the hubs before their midnight")


def _roll_over(db_url, tmp_path, sql, *, before: float, after: float, workers: int, target: int):
    tz = ZoneInfo(TIMEZONE)
    offset = hub_midnight_offset(TIMEZONE, before)
    old_day = (datetime.now(UTC) + timedelta(seconds=offset)).astimezone(tz).date()
    new_day = old_day + timedelta(days=1)

    both = [sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count, "
                        "max_daily_attempts) VALUES (%s, %s, %s, %s, %s, 1000000) RETURNING id",
                        (f"both {i}", f"B{i}", old_day, new_day, target)).fetchone()[0] for i in range(4)]
    old_only = sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                           "VALUES ('old only', 'O1', %s, %s, %s) RETURNING id", (old_day, old_day, target)
                           ).fetchone()[0]
    new_only = sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                           "VALUES ('new only', 'N1', %s, %s, %s) RETURNING id", (new_day, new_day, target)
                           ).fetchone()[0]
    for i in range(10):
        sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', %s, 1000000)",
                    (30000 + i,))

    started: list[HubProcess] = []
    try:
        hubs, offset, midnight_real = _start_before_midnight(db_url, tmp_path / "hubdata", started, before=before)
        # packages leased before midnight and submitted after it, whatever the machine's speed
        held = httpx.post(hubs[0].url + "/api/allocate-work", json={"count": 4}, timeout=30).json()["allocations"]
        assert len(held) == 4 and {p["work_date"] for p in held} == {str(old_day)}
        load = Load([h.url for h in hubs], workers=workers, max_cycles=100_000,
                    duration=midnight_real - time.monotonic() + after, think=(0.0, 0.6), seed=11,
                    weights=(70, 15, 5, 5, 5)).run()
        replies = [httpx.post(hubs[1].url + "/api/submit-result", timeout=30, json={
            "allocation_key": p["allocation_key"], "status": "success", "execution_time_ms": 10}).json()
            for p in held]
        assert [r["status"] for r in replies] == ["accepted"] * 4 and all(r["counted"] for r in replies)
    finally:
        for h in started:
            h.stop()
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results WHERE allocation_key = ANY(%s::uuid[]) "
                       "AND work_date = %s AND counted", ([p["allocation_key"] for p in held], old_day)
                       ).fetchone()[0] == 4

    expire_leases(sql.info.dsn, clock_offset_seconds=offset + LEASE + 60)
    totals = check_ledger(sql)
    check_worker_view(sql, load)
    assert totals["in_flight"] == 0

    # each allocation is filed under the hub's date at the time it was leased
    wrong = sql.execute(f"SELECT count(*) FROM v1_hub_work_allocations "
                        f"WHERE (allocated_at AT TIME ZONE '{TIMEZONE}')::date <> work_date").fetchone()[0]
    assert wrong == 0
    per_day = dict(sql.execute("SELECT work_date, count(*) FROM v1_hub_work_allocations GROUP BY 1").fetchall())
    assert set(per_day) == {old_day, new_day} and per_day[old_day] > 0 and per_day[new_day] > 0, per_day
    # leases of the old day submitted after midnight count on the old day (the allocation's work_date)
    crossing = sql.execute(f"SELECT count(*) FROM v1_hub_work_results WHERE work_date = %s "
                           f"AND (created_at AT TIME ZONE '{TIMEZONE}')::date = %s", (old_day, new_day)).fetchone()[0]
    assert crossing > 0, ("no result crossed midnight", sql.execute(
        "SELECT work_date, min(allocated_at), max(allocated_at), max(submitted_at), count(*) "
        "FROM v1_hub_work_allocations GROUP BY 1").fetchall(), load.summary())
    # the new day's rows were created on demand, only for slots active that day
    rows = set(sql.execute("SELECT slot_id, work_date FROM v1_hub_daily_work_tracking").fetchall())
    assert {(s, new_day) for s in both} | {(s, old_day) for s in both} <= rows
    assert (old_only, new_day) not in rows and (new_only, old_day) not in rows
    assert (old_only, old_day) in rows and (new_only, new_day) in rows
    assert sql.execute("SELECT count(*) FROM v1_hub_tracking_days WHERE work_date = %s", (new_day,)).fetchone()[0] == 1
    leaked = sql.execute("SELECT count(*) FROM v1_hub_work_allocations WHERE (slot_id = %s AND work_date = %s) "
                         "OR (slot_id = %s AND work_date = %s)", (old_only, new_day, new_only, old_day)).fetchone()[0]
    assert leaked == 0
    # the two days' counters are independent: each day's success equals that day's counted results
    days = dict(sql.execute("SELECT work_date, sum(success_count) FROM v1_hub_daily_work_tracking GROUP BY 1"))
    counted = dict(sql.execute("SELECT work_date, count(*) FROM v1_hub_work_results "
                               "WHERE counted AND status = 'success' GROUP BY 1"))
    assert days == counted
    return load


def test_midnight_roll_over_under_load(db_url, tmp_path, sql):
    _roll_over(db_url, tmp_path, sql, before=12, after=5, workers=8, target=300)


@pytest.mark.slow
def test_midnight_roll_over_with_quota_reached(db_url, tmp_path, sql):
    # small targets: the old day fills up before midnight; the new day must start again from zero
    load = _roll_over(db_url, tmp_path, sql, before=20, after=10, workers=16, target=20)
    assert any(e.body and e.body.get("reason") == "daily_quota_reached" for e in load.events if e.op == "allocate")
