"""A hub process SIGKILLed in the middle of load (SPEC section 8).

Two `workhub serve` processes share one database; workers load through both. One is killed with
SIGKILL; workers go on through the survivor (a lost submit reply is retried there: submit is
idempotent). Then the short leases expire (the sweeper's core function), and the ledger must be exact:
quota returned, every acknowledged result stored exactly once, counters equal to the rows.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import httpx
import pytest

from tests.reliability.load import Load, check_ledger, check_worker_view, expire_leases, hub_today, seed_work

LEASE = 3


def _drain(url: str, limit: int = 5000) -> int:
    """Allocate until the hub says no_work; returns how many packages it handed out."""
    handed = 0
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(limit):
            body = c.post("/api/allocate-work", json={"count": 100}).json()
            if body["status"] != "allocated":
                assert body["reason"] == "daily_quota_reached", body
                return handed
            handed += len(body["allocations"])
    raise AssertionError("draining did not end")


def _kill_mid_load(hub_processes, sql, *, workers: int, duration: float, kill_after: float, slots: int,
                   target: int):
    today = hub_today()
    seed_work(sql, slots=slots, target=target, start=today - timedelta(days=1), end=today + timedelta(days=1),
              max_attempts=1_000_000)
    a, b = hub_processes(2, env={"HUB_LEASE_SECONDS": str(LEASE)})
    targets = [a.url, b.url]
    load = Load(targets, workers=workers, max_cycles=100_000, duration=duration, seed=7).start()

    # kill `a` once both hubs have really served work
    deadline = time.monotonic() + kill_after + 30
    while time.monotonic() < deadline:
        served = {e.target for e in load.events if e.op == "submit" and e.status == 200}
        if len(served) == 2 and time.monotonic() - (load.deadline - duration) >= kill_after:
            break
        time.sleep(0.05)
    a.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    assert a.proc.returncode == -signal.SIGKILL
    targets.remove(a.url)  # the load balancer notices; in-flight requests to `a` fail and are retried
    load.join()

    # the survivor kept serving after the kill
    after = [e for e in load.events if e.at > killed_at + 0.5 and e.target == b.url]
    assert any(e.op == "submit" and e.status == 200 for e in after), "survivor served nothing after the kill"
    assert all(e.status is not None and e.status < 500 for e in after), \
        [e for e in after if e.status is None or e.status >= 500][:3]
    lost = [e for e in load.events if e.target == a.url and e.status is None]

    # leases of the dead hub's workers (and abandoned ones) lapse; their quota returns
    time.sleep(LEASE + 0.5)
    expired = expire_leases(sql.info.dsn)
    totals = check_ledger(sql)
    check_worker_view(sql, load)
    assert totals["in_flight"] == 0
    assert totals["expired"] >= expired > 0
    assert sql.execute("SELECT count(*) FROM v1_hub_work_allocations WHERE status = 'allocated'").fetchone()[0] == 0

    # "quota returned": the survivor now hands out exactly what is left below target
    remaining = sql.execute("SELECT sum(target_count - success_count) FROM v1_hub_daily_work_tracking "
                            "WHERE work_date = %s", (today,)).fetchone()[0]
    assert remaining > 0
    assert _drain(b.url) == remaining
    final = check_ledger(sql)
    assert final["in_flight"] == remaining
    return load, totals, lost


def test_hub_killed_mid_load(hub_processes, sql):
    load, totals, _lost = _kill_mid_load(hub_processes, sql, workers=8, duration=10, kill_after=3, slots=20,
                                        target=400)
    assert totals["success"] > 50 and totals["released"] > 0 and totals["expired"] > 0
    assert load.stored, "no results were acknowledged"


@pytest.mark.slow
def test_hub_killed_mid_load_long(hub_processes, sql):
    _load, totals, _lost = _kill_mid_load(hub_processes, sql, workers=24, duration=45, kill_after=15, slots=200,
                                        target=100)
    assert totals["success"] > 500
