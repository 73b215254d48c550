"""A bounded loopback load driver for the fault tests, and the exact-ledger checks they share.

``Load`` runs worker threads that do allocate → (think) → submit / release / abandon cycles against
one or more hubs on 127.0.0.1 and record every response. Each thread stops by itself after
``max_cycles`` cycles or at ``deadline`` (whichever comes first), or when ``stop()`` is called.

A submit whose reply is lost (connection error, 5xx) is retried, on any live hub, until it gets an
answer: that is what the worker SDK does, and it relies on submit being idempotent. So at the end
every result a worker *believes* was stored has a recorded reply (``accepted``/``late``/``duplicate``)
with a ``result_id`` that the database must hold exactly once.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg

OUTCOMES = ("success", "failed", "blocked", "release", "abandon")
DEFAULT_WEIGHTS = (60, 15, 5, 10, 10)


@dataclass
class Event:
    op: str               # allocate | submit | release
    target: str           # the hub URL used
    status: int | None    # HTTP status, None for a transport error
    body: dict | None
    error: str | None = None
    key: str | None = None
    at: float = field(default_factory=time.monotonic)


class Load:
    """Worker threads against ``targets`` (a list of hub URLs; may be changed while running)."""

    def __init__(self, targets: list[str], *, workers: int = 8, max_cycles: int = 200, duration: float = 20.0,
                 count: tuple[int, int] = (1, 3), weights=DEFAULT_WEIGHTS, think: tuple[float, float] = (0, 0.02),
                 seed: int = 1, headers: dict | None = None, submit_retry_seconds: float = 60.0):
        self.targets = targets
        self.workers = workers
        self.max_cycles = max_cycles
        self.duration = duration
        self.count = count
        self.weights = weights
        self.think = think
        self.seed = seed
        self.headers = headers or {}
        self.submit_retry_seconds = submit_retry_seconds
        self.events: list[Event] = []
        self.stored: dict[str, dict] = {}      # allocation_key -> submit reply the worker got
        self.intended: dict[str, str] = {}     # allocation_key -> outcome chosen by the worker
        self.unanswered: list[str] = []         # submits that never got an answer (must stay empty)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ control
    def start(self) -> Load:
        self.deadline = time.monotonic() + self.duration
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True, name=f"load-{i}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        limit = time.monotonic() + (timeout if timeout is not None else self.duration + self.submit_retry_seconds + 30)
        for t in self._threads:
            t.join(max(0.0, limit - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"

    def run(self) -> Load:
        self.start()
        self.join()
        return self

    # ------------------------------------------------------------ one worker
    def _pick(self, rnd: random.Random) -> str:
        targets = list(self.targets)
        return rnd.choice(targets)

    def _record(self, event: Event) -> Event:
        self.events.append(event)  # list.append is atomic under the GIL
        return event

    def _call(self, client: httpx.Client, rnd, op: str, method: str, path: str, key=None, target=None,
              **kwargs) -> Event:
        target = target or self._pick(rnd)
        try:
            r = client.request(method, target + path, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            return self._record(Event(op, target, None, None, f"{type(exc).__name__}: {exc}", key))
        try:
            body = r.json()
        except ValueError:
            body = None
        return self._record(Event(op, target, r.status_code, body, None if r.status_code < 400 else r.text[:300],
                                  key))

    def _worker(self, index: int) -> None:
        rnd = random.Random(self.seed * 1000 + index)
        with httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0)) as client:
            cycles = 0
            while cycles < self.max_cycles and time.monotonic() < self.deadline and not self._stop.is_set():
                cycles += 1
                n = rnd.randint(*self.count)
                ev = self._call(client, rnd, "allocate", "POST", "/api/allocate-work",
                                json={"instance_number": index, "user_folder_number": cycles % 7, "count": n})
                if ev.status != 200 or not ev.body or ev.body.get("status") != "allocated":
                    retry = (ev.body or {}).get("retry_after_seconds") if ev.status == 200 else None
                    time.sleep(min(0.05 if retry is None else 0.1, max(0.0, self.deadline - time.monotonic())))
                    continue
                if self.think[1] > 0:
                    time.sleep(rnd.uniform(*self.think))
                for package in ev.body["allocations"]:
                    key = package["allocation_key"]
                    outcome = rnd.choices(OUTCOMES, weights=self.weights)[0]
                    with self._lock:
                        self.intended[key] = outcome
                    if outcome == "abandon":
                        continue
                    if outcome == "release":
                        self._call(client, rnd, "release", "POST", f"/api/allocations/{key}/release", key=key,
                                   json={"reason": "load test"})
                        continue
                    self._submit(client, rnd, key, outcome, package)

    def _submit(self, client, rnd, key: str, outcome: str, package: dict) -> None:
        body = {"allocation_key": key, "status": outcome, "execution_time_ms": rnd.randint(100, 9000)}
        if outcome == "success":
            body.update(rank=rnd.randint(1, 40), page=1,
                        products=[{"code": package["slot"]["code"], "name": "item", "price": 1000, "rank": 3}])
        elif outcome == "blocked":
            body.update(block_type="captcha")
        else:
            body.update(error_message="timeout")
        give_up = time.monotonic() + self.submit_retry_seconds
        while True:
            ev = self._call(client, rnd, "submit", "POST", "/api/submit-result", key=key, json=body)
            if ev.status == 200 and ev.body:
                with self._lock:
                    first = self.stored.setdefault(key, ev.body)
                assert first["result_id"] == ev.body["result_id"]
                return
            if ev.status is not None and 400 <= ev.status < 500:
                return  # a definite answer (e.g. 409 after a lost reply of a release): nothing stored
            if time.monotonic() > give_up:
                with self._lock:
                    self.unanswered.append(key)
                return
            time.sleep(0.1)

    # ------------------------------------------------------------ summaries
    def statuses(self, op: str | None = None) -> Counter:
        return Counter((e.op, e.status) for e in self.events if op is None or e.op == op)

    def allocated_keys(self) -> set[str]:
        keys = set()
        for e in self.events:
            if e.op == "allocate" and e.status == 200 and e.body and e.body.get("status") == "allocated":
                keys.update(p["allocation_key"] for p in e.body["allocations"])
        return keys

    def summary(self) -> dict:
        by_status = Counter(str(e.status) for e in self.events)
        return {"requests": len(self.events), "by_status": dict(by_status),
                "allocated": len(self.allocated_keys()), "results_stored": len(self.stored),
                "unanswered_submits": len(self.unanswered)}


# ---------------------------------------------------------------- arranging data
def seed_work(conn: psycopg.Connection, *, slots: int, target: int, start: date, end: date,
              proxies: int = 20, max_attempts: int | None = None, keyword: str = "load") -> list[int]:
    """Active slots (``target`` checks a day) and plenty of proxies; returns the slot ids."""
    ids = [conn.execute(
        "INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count, max_daily_attempts) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (f"{keyword} {i}", f"C{i:05d}", start, end, target, max_attempts)).fetchone()[0] for i in range(slots)]
    for i in range(proxies):
        conn.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', %s, 1000000)"
                     " ON CONFLICT DO NOTHING", (20000 + i,))
    return ids


def expire_leases(db_url: str, *, clock_offset_seconds: float = 0.0, timezone_name: str = "Asia/Seoul") -> int:
    """Run the sweeper's core function once (as the scheduler would), on the hub's clock."""
    from workhub.config import Settings
    from workhub.core import allocation

    settings = Settings(_env_file=None, database_url=db_url, timezone=timezone_name,
                        clock_offset_seconds=clock_offset_seconds)

    async def go() -> int:
        total = 0
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True,
                                                         options=f"-c TimeZone={timezone_name}") as conn:
            while True:
                async with conn.transaction():
                    n = await allocation.expire_leases(conn, settings)
                total += n
                if not n:
                    return total

    return asyncio.run(go())


# ---------------------------------------------------------------- the exact-ledger check
LEDGER_CHECK = """
WITH a AS (
    SELECT tracking_id,
           count(*) AS allocated,
           count(*) FILTER (WHERE status = 'allocated') AS in_flight,
           count(*) FILTER (WHERE status = 'released') AS released,
           count(*) FILTER (WHERE status = 'expired' OR (status = 'submitted' AND NOT counted)) AS expired,
           count(*) FILTER (WHERE status = 'submitted' AND counted AND result_status = 'success') AS success,
           count(*) FILTER (WHERE status = 'submitted' AND counted AND result_status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'submitted' AND counted AND result_status = 'blocked') AS blocked
    FROM v1_hub_work_allocations GROUP BY tracking_id
), r AS (
    SELECT a.tracking_id,
           count(*) FILTER (WHERE r.counted AND r.status = 'success') AS success,
           count(*) FILTER (WHERE r.counted AND r.status = 'failed') AS failed,
           count(*) FILTER (WHERE r.counted AND r.status = 'blocked') AS blocked,
           count(*) FILTER (WHERE r.late) AS late
    FROM v1_hub_work_results r JOIN v1_hub_work_allocations a ON a.id = r.allocation_id
    GROUP BY a.tracking_id
)
SELECT t.id, t.slot_id, t.work_date,
       (t.allocated_count, t.in_flight_count, t.released_count, t.expired_count,
        t.success_count, t.failed_count, t.blocked_count, t.late_count)::text AS counters,
       (coalesce(a.allocated, 0), coalesce(a.in_flight, 0), coalesce(a.released, 0), coalesce(a.expired, 0),
        coalesce(a.success, 0), coalesce(a.failed, 0), coalesce(a.blocked, 0), coalesce(r.late, 0))::text AS from_rows,
       (coalesce(r.success, 0), coalesce(r.failed, 0), coalesce(r.blocked, 0))::text AS from_results,
       (coalesce(a.success, 0), coalesce(a.failed, 0), coalesce(a.blocked, 0))::text AS from_allocations
FROM v1_hub_daily_work_tracking t
LEFT JOIN a ON a.tracking_id = t.id
LEFT JOIN r ON r.tracking_id = t.id
ORDER BY t.id
"""


def check_ledger(conn: psycopg.Connection) -> dict:
    """Assert the tracking counters equal the allocation and result rows exactly; return totals."""
    mismatches = []
    for tid, slot, day, counters, from_rows, from_results, from_allocations in conn.execute(LEDGER_CHECK):
        if counters != from_rows or from_results != from_allocations:
            mismatches.append((tid, slot, str(day), counters, from_rows, from_results, from_allocations))
    assert not mismatches, f"tracking counters differ from the rows: {mismatches[:10]}"

    dupes = conn.execute("SELECT allocation_key, count(*) FROM v1_hub_work_results "
                         "GROUP BY allocation_key HAVING count(*) > 1 LIMIT 10").fetchall()
    assert not dupes, f"results stored twice: {dupes}"
    orphans = conn.execute(
        "SELECT count(*) FROM v1_hub_work_allocations a WHERE (a.status = 'submitted') <> EXISTS "
        "(SELECT 1 FROM v1_hub_work_results r WHERE r.allocation_id = a.id AND r.id = a.result_id)").fetchone()[0]
    assert orphans == 0, f"{orphans} allocations whose submitted state does not match the results table"
    wrong_day = conn.execute(
        "SELECT count(*) FROM v1_hub_work_results r JOIN v1_hub_work_allocations a ON a.id = r.allocation_id "
        "WHERE r.work_date <> a.work_date OR r.slot_id <> a.slot_id").fetchone()[0]
    assert wrong_day == 0, f"{wrong_day} results filed under another day or slot than their allocation"
    over = conn.execute("SELECT count(*) FROM v1_hub_daily_work_tracking "
                        "WHERE success_count > target_count OR success_count + in_flight_count > target_count"
                        ).fetchone()[0]
    assert over == 0, "a slot went over its target"
    uses = conn.execute("SELECT (SELECT coalesce(sum(total_uses), 0) FROM v1_hub_proxies), "
                        "(SELECT count(*) FROM v1_hub_work_allocations WHERE proxy_id IS NOT NULL)").fetchone()
    assert uses[0] == uses[1], f"proxy uses {uses[0]} != allocations {uses[1]}"
    proxy_results = conn.execute(
        "SELECT (SELECT coalesce(sum(success_count + fail_count + block_count), 0) FROM v1_hub_proxies), "
        "(SELECT count(*) FROM v1_hub_work_results WHERE proxy_id IS NOT NULL)").fetchone()
    assert proxy_results[0] == proxy_results[1], f"proxy result counters {proxy_results} differ from results"
    totals = conn.execute(
        "SELECT coalesce(sum(allocated_count), 0), coalesce(sum(in_flight_count), 0), coalesce(sum(success_count), 0), "
        "coalesce(sum(failed_count), 0), coalesce(sum(blocked_count), 0), coalesce(sum(expired_count), 0), "
        "coalesce(sum(released_count), 0), coalesce(sum(late_count), 0), count(*) "
        "FROM v1_hub_daily_work_tracking").fetchone()
    return dict(zip(("allocated", "in_flight", "success", "failed", "blocked", "expired", "released", "late",
                     "tracking_rows"), (int(v) for v in totals)))


def check_worker_view(conn: psycopg.Connection, load: Load) -> None:
    """Every result a worker was told is stored is in the database exactly once, as that result."""
    assert not load.unanswered, f"{len(load.unanswered)} submits never got an answer"
    rows = dict(conn.execute("SELECT allocation_key::text, id FROM v1_hub_work_results").fetchall())
    missing = [k for k, reply in load.stored.items() if rows.get(k) != reply["result_id"]]
    assert not missing, f"{len(missing)} acknowledged results are missing or differ: {missing[:5]}"
    # an allocation the worker saw is in the table (none lost), with the worker's chosen outcome
    keys = load.allocated_keys()
    present = {k for (k,) in conn.execute("SELECT allocation_key::text FROM v1_hub_work_allocations "
                                          "WHERE allocation_key = ANY(%s::uuid[])", (list(keys),))}
    assert present == keys, f"{len(keys - present)} handed-out allocations are not in the database"
    statuses = dict(conn.execute("SELECT allocation_key::text, result_status FROM v1_hub_work_allocations "
                                 "WHERE result_id IS NOT NULL").fetchall())
    wrong = [k for k in load.stored if statuses.get(k) != load.intended[k]]
    assert not wrong, f"stored results with another status than submitted: {wrong[:5]}"


def hub_today(tz_name: str = "Asia/Seoul", offset_seconds: float = 0.0) -> date:
    """The hub's work date (its time zone, its clock), not this machine's local date."""
    from zoneinfo import ZoneInfo

    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).astimezone(ZoneInfo(tz_name)).date()


def hub_midnight_offset(tz_name: str, seconds_before: float, now: datetime | None = None) -> float:
    """The HUB_CLOCK_OFFSET_SECONDS that puts the hub's clock ``seconds_before`` the next local midnight."""
    from zoneinfo import ZoneInfo

    now = now or datetime.now(UTC)
    local = now.astimezone(ZoneInfo(tz_name))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(tz_name))
    return (midnight - now).total_seconds() - seconds_before
