"""Ledger rules the state machine does not drive: pace = "even", expiry through the core function,
and the guarded counters when many connections allocate the last units of one slot at once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import psycopg

from tests.conftest import TIMEZONE
from workhub.core import allocation
from workhub.db.queries import sql as named

DAY_START = datetime(2030, 3, 10, 15, 0, tzinfo=UTC)   # 00:00 on 2030-03-11 in Seoul


def slot(sql, target: int, pace: str = "asap") -> int:
    return sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count, pace) "
                       "VALUES ('kw', 'c', '2030-03-01', '2030-03-31', %s, %s) RETURNING id",
                       (target, pace)).fetchone()[0]


def allocate(conn, now: datetime, count: int = 1) -> dict:
    return json.loads(conn.execute(named("allocate_work"), {
        "client_ip": "127.0.0.1", "instance_number": 1, "user_folder_number": 1, "count": count, "now": now,
        "lease_seconds": 300, "attempts_factor": 3}).fetchone()[0])


def test_even_pace_spreads_the_target_over_the_day(sql):
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('10.3.0.1', 3128, 1000)")
    slot(sql, 24, pace="even")
    # 06:00 hub time: a quarter of the day, so at most ceil(24 * 0.25) = 6 done or in flight
    six_am = DAY_START + timedelta(hours=6)
    assert len(allocate(sql, six_am, count=50)["allocations"]) == 6
    paced = allocate(sql, six_am)
    assert paced["status"] == "no_work" and paced["reason"] == "daily_quota_reached"
    # an hour later one more is due
    assert len(allocate(sql, six_am + timedelta(hours=1), count=50)["allocations"]) == 1
    # an asap slot beside it is not held back
    asap = slot(sql, 5)
    got = allocate(sql, six_am + timedelta(hours=1), count=50)["allocations"]
    assert [p["slot"]["id"] for p in got] == [asap] * 5
    # late in the evening the whole target is available
    assert len(allocate(sql, DAY_START + timedelta(hours=23, minutes=59), count=50)["allocations"]) == 24 - 7


async def test_expire_leases_returns_quota(sql, database, settings):
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('10.3.0.1', 3128, 1000)")
    slot_id = slot(sql, 3)
    now = settings.now()
    sql.execute("UPDATE v1_hub_work_slots SET start_date = %s::date - 1, end_date = %s::date + 1",
                (settings.work_date(), settings.work_date()))
    got = allocate(sql, now, count=3)["allocations"]
    assert len(got) == 3
    sql.execute("UPDATE v1_hub_work_allocations SET expires_at = now() - interval '1 second' "
                "WHERE allocation_key = ANY(%s::uuid[])", ([p["allocation_key"] for p in got[:2]],))
    assert await database.run(allocation.expire_leases, settings) == 2
    assert await database.run(allocation.expire_leases, settings) == 0
    row = sql.execute("SELECT in_flight_count, expired_count FROM v1_hub_daily_work_tracking WHERE slot_id = %s",
                      (slot_id,)).fetchone()
    assert row == (1, 2)
    assert len(allocate(sql, now, count=3)["allocations"]) == 2     # the quota is back


def test_parallel_allocations_never_overshoot(sql, db_url):
    """16 connections race for a slot with 10 units left; exactly 10 are handed out."""
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) SELECT '10.4.0.1', g, 1000 "
                "FROM generate_series(1000, 1015) AS g")
    slot_id = slot(sql, 10)
    now = DAY_START + timedelta(hours=12)
    handed: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def worker():
        try:
            with psycopg.connect(db_url, autocommit=True, options=f"-c TimeZone={TIMEZONE}") as conn:
                barrier.wait(timeout=60)
                for _ in range(3):
                    handed.append(len(allocate(conn, now, count=2)["allocations"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(handed) == 48
    assert sum(handed) == 10
    row = sql.execute("SELECT allocated_count, in_flight_count, target_count FROM v1_hub_daily_work_tracking "
                      "WHERE slot_id = %s", (slot_id,)).fetchone()
    assert row == (10, 10, 10)
    assert sql.execute("SELECT sum(use_count) FROM v1_hub_proxies").fetchone()[0] == 10


def test_batch_spreads_round_robin_over_slots_and_water_fills_proxies(sql):
    """One call of count=10 over slots with 1, 1, 1 and 20 left takes every single one and fills the rest
    from the big slot; proxies at 0 and 4 uses give the least-used one its first 4 before the tie."""
    a = sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('10.4.0.1', 3128, 100) "
                    "RETURNING id").fetchone()[0]
    b = sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses, use_count) VALUES ('10.4.0.2', 3128, 100, 4) "
                    "RETURNING id").fetchone()[0]
    small = [slot(sql, 1) for _ in range(3)]
    big = slot(sql, 20)
    got = allocate(sql, DAY_START + timedelta(hours=1), count=10)["allocations"]
    by_slot = {}
    for package in got:
        by_slot[package["slot"]["id"]] = by_slot.get(package["slot"]["id"], 0) + 1
    assert by_slot == {small[0]: 1, small[1]: 1, small[2]: 1, big: 7}
    # uses 0..3 only on a, then a and b alternate from 4 uses on: a gets 4 + 3, b gets 3
    by_proxy = {}
    for package in got:
        by_proxy[package["proxy"]["id"]] = by_proxy.get(package["proxy"]["id"], 0) + 1
    assert by_proxy == {a: 7, b: 3}
    uses = dict(sql.execute("SELECT id, use_count FROM v1_hub_proxies").fetchall())
    assert uses == {a: 7, b: 7}
    tracking = dict(sql.execute("SELECT slot_id, in_flight_count FROM v1_hub_daily_work_tracking").fetchall())
    assert tracking == {small[0]: 1, small[1]: 1, small[2]: 1, big: 7}
    # the small slots are full: their rows left the open-rows index (fill_ratio reached 1)
    assert sql.execute("SELECT count(*) FROM v1_hub_daily_work_tracking WHERE fill_ratio < 1").fetchone()[0] == 1
