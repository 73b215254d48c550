"""64 simulated workers against two hub processes on one database, with random outcomes, abandoned and
released leases, late results and a 2-second lease: the ledger invariants hold at every sample, and at
the end every counter equals what the allocation and result tables (and the fleet) say, exactly."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from workhub.core import allocation
from workhub.db import queries as q
from workhub.sim import FleetConfig, FleetSimulator

TARGETS = (15, 25, 40, 60)


async def test_exact_ledger_under_64_workers_on_two_hubs(hub_processes, sql, database, settings):
    hubs = hub_processes(2, env={"HUB_LEASE_SECONDS": "2", "HUB_LEASE_MAX_SECONDS": "4"})
    today = settings.work_date()
    for i, target in enumerate(TARGETS):
        sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (f"keyword {i}", f"code-{i}", today - timedelta(days=1), today + timedelta(days=1), target))
    for i in range(80):
        sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES (%s, 3128, 100000)",
                    (f"10.7.{i // 200}.{i % 200 + 1}",))

    samples: list[list[dict]] = []
    violations: list[dict] = []
    done = asyncio.Event()

    async def sample_ledger() -> None:
        while not done.is_set():
            rows = await database.run(q.fetch_all, "ledger_day", {"work_date": today})
            for r in rows:
                if not (r["success_count"] <= r["target_count"]
                        and r["success_count"] + r["in_flight_count"] <= r["target_count"]
                        and r["allocated_count"] == r["in_flight_count"] + r["success_count"] + r["failed_count"]
                        + r["blocked_count"] + r["expired_count"] + r["released_count"]):
                    violations.append(r)
            samples.append(rows)
            await asyncio.sleep(0.05)

    async def sweep_expired() -> None:   # the scheduler's minute job, sped up for a 2-second lease
        while not done.is_set():
            await database.run(allocation.expire_leases, settings)
            await asyncio.sleep(0.3)

    sampler = asyncio.create_task(sample_ledger())
    sweeper = asyncio.create_task(sweep_expired())
    fleet = FleetSimulator(FleetConfig(
        urls=[h.url for h in hubs], workers=64, duration=10, latency_ms=(5, 2600),
        outcomes={"success": 0.7, "failed": 0.2, "blocked": 0.1}, abandon_rate=0.1, release_rate=0.08,
        resubmit_rate=0.1, idle_cap=0.5, seed=20240101))
    try:
        stats = await asyncio.wait_for(fleet.run(), timeout=180)
        # every lease left behind lapses (at most LEASE_MAX after allocation) and is swept
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            open_leases = sql.execute("SELECT count(*) FROM v1_hub_work_allocations WHERE status = 'allocated'"
                                      ).fetchone()[0]
            if open_leases == 0:
                break
            await asyncio.sleep(0.5)
    finally:
        done.set()
        await asyncio.gather(sampler, sweeper)

    assert not stats.errors, stats.summary()
    # volumes stay modest so that a slow, shared machine passes too
    assert stats.allocated >= 64 and sum(stats.submitted.values()) >= 30, stats.summary()
    assert stats.abandoned > 0 and stats.released + len(stats.lapsed_keys) > 0 and stats.duplicates_ok > 0, \
        stats.summary()
    assert stats.duplicates_wrong == 0
    assert len(samples) >= 10
    assert violations == []

    # ---- the counters equal the rows, slot by slot
    rows = sql.execute("""
        SELECT t.slot_id, t.target_count, t.allocated_count, t.in_flight_count, t.success_count, t.failed_count,
               t.blocked_count, t.expired_count, t.released_count,
               count(a.id),
               count(a.id) FILTER (WHERE a.status = 'allocated'),
               count(a.id) FILTER (WHERE a.counted AND a.result_status = 'success'),
               count(a.id) FILTER (WHERE a.counted AND a.result_status = 'failed'),
               count(a.id) FILTER (WHERE a.counted AND a.result_status = 'blocked'),
               count(a.id) FILTER (WHERE a.status = 'expired' OR (a.status = 'submitted' AND NOT a.counted)),
               count(a.id) FILTER (WHERE a.status = 'released')
        FROM v1_hub_daily_work_tracking t LEFT JOIN v1_hub_work_allocations a ON a.tracking_id = t.id
        WHERE t.work_date = %s GROUP BY t.id ORDER BY t.slot_id""", (today,)).fetchall()
    assert len(rows) == len(TARGETS)
    for row in rows:
        counters, from_allocations = row[2:9], row[9:16]
        assert counters == from_allocations, row
        assert row[3] == 0                                  # nothing left in flight
        assert row[4] <= row[1]                             # success <= target
    results = dict(((slot, status), n) for slot, status, n in sql.execute(
        "SELECT slot_id, status, count(*) FROM v1_hub_work_results WHERE counted GROUP BY 1, 2"))
    for row in rows:
        assert (row[4], row[5], row[6]) == tuple(results.get((row[0], s), 0) for s in ("success", "failed", "blocked"))

    # ---- and they equal what the hub told the fleet, result by result
    stored = {str(k): (s, c) for k, s, c in sql.execute(
        "SELECT allocation_key, result_status, counted FROM v1_hub_work_allocations WHERE result_id IS NOT NULL")}
    assert stored == {k: (status, counted) for k, (status, _, counted) in stats.results.items()}
    assert sum(r[4] for r in rows) == stats.counted["success"]
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == len(stats.results)
    released = {str(k) for (k,) in sql.execute(
        "SELECT allocation_key FROM v1_hub_work_allocations WHERE status = 'released'")}
    assert released == stats.released_keys
    abandoned = {str(k): s for k, s in sql.execute(
        "SELECT allocation_key, status FROM v1_hub_work_allocations WHERE allocation_key = ANY(%s::uuid[])",
        (list(stats.abandoned_keys | stats.lapsed_keys),))}
    assert set(abandoned.values()) == {"expired"}
    assert len(abandoned) == len(stats.abandoned_keys | stats.lapsed_keys)
    assert all(h.proc.poll() is None for h in hubs)
