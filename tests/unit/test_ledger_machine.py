"""A hypothesis state machine drives the real ledger SQL functions and compares every counter with a
plain Python model of the ledger rules (SPEC section 3) after every step."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg.types.json import Jsonb

from workhub.db.queries import sql as named

LEASE = 300
LEASE_MAX = 1800
FACTOR = 3
START = datetime(2030, 6, 15, 3, 0, tzinfo=UTC)      # noon in Seoul: the day never rolls over
TABLES = ("v1_hub_work_slots, v1_hub_daily_work_tracking, v1_hub_tracking_days, v1_hub_work_allocations, "
          "v1_hub_work_results, v1_hub_product_results, v1_hub_proxies, v1_hub_clients, "
          "v1_hub_client_activity_logs, v1_hub_audit_log, v1_hub_webhook_deliveries")
COUNTERS = ("target_count", "allocated_count", "in_flight_count", "success_count", "failed_count",
            "blocked_count", "expired_count", "released_count")


@dataclass
class SlotModel:
    id: int
    daily_work_count: int
    max_attempts: int | None
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.counts["target_count"] = self.daily_work_count

    def cap(self) -> int:
        c = self.counts
        attempts = self.max_attempts or FACTOR * c["target_count"]
        room = min(c["target_count"], self.daily_work_count) - c["success_count"] - c["in_flight_count"]
        return max(0, min(room, attempts - c["allocated_count"]))

    def fill(self) -> float:
        c = self.counts
        return (c["success_count"] + c["in_flight_count"]) / c["target_count"]


@dataclass
class LeaseModel:
    key: str
    slot: int
    allocated_at: datetime
    expires_at: datetime
    status: str = "allocated"
    result: tuple | None = None   # (result_id, counted)


class LedgerMachine(RuleBasedStateMachine):
    conn = None  # set by the test

    def __init__(self):
        super().__init__()
        self.conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        self.now = START
        self.slots: dict[int, SlotModel] = {}
        self.leases: dict[str, LeaseModel] = {}
        self.proxy_room = 0
        day = START.date()
        for target, attempts in ((3, None), (2, 4)):
            slot_id = self.conn.execute(
                "INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count, "
                "max_daily_attempts) VALUES ('kw', 'c', %s, %s, %s, %s) RETURNING id",
                (day - timedelta(days=5), day + timedelta(days=5), target, attempts)).fetchone()[0]
            self.slots[slot_id] = SlotModel(slot_id, target, attempts)
        for port, max_uses in ((3128, 9), (3129, 7)):
            self.conn.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('10.1.1.1', %s, %s)",
                              (port, max_uses))
            self.proxy_room += max_uses

    # ------------------------------------------------------------ calls
    def call(self, name: str, **params):
        return self.conn.execute(named(name), params).fetchone()[0]

    def submit_args(self, key: str, status: str) -> dict:
        return dict(allocation_key=key, status=status, execution_time_ms=10, rank=None, page=None,
                    block_type=None, error_message=None, applied_settings=None, products=None, result_data=None,
                    client_ip="127.0.0.1", now=self.now, cooldown_after=1000, cooldown_seconds=1)

    def model_submit(self, key: str, status: str, reply: dict) -> None:
        lease = self.leases.get(key)
        if lease is None:
            assert reply == {"error": "unknown_allocation_key"}
            return
        if lease.result is not None:
            assert (reply["status"], reply["result_id"], reply["counted"]) == ("duplicate", *lease.result)
            return
        if lease.status == "released":
            assert reply == {"error": "allocation_released"}
            return
        c = self.slots[lease.slot].counts
        was_live = lease.status == "allocated"
        late = lease.status == "expired" or lease.expires_at <= self.now
        counted = True
        if late and status == "success":
            counted = c["success_count"] + c["in_flight_count"] - was_live < c["target_count"]
        c["in_flight_count"] -= was_live
        if late:
            c["expired_count"] += was_live - counted
        if counted:
            c[f"{status}_count"] += 1
        assert reply["status"] == ("late" if late else "accepted") and reply["counted"] is counted
        lease.status = "submitted"
        lease.result = (reply["result_id"], counted)

    # ------------------------------------------------------------ rules
    @rule(count=st.integers(1, 4))
    def allocate(self, count):
        reply = json.loads(self.call("allocate_work", client_ip="127.0.0.1", instance_number=1,
                                     user_folder_number=1, count=count, now=self.now, lease_seconds=LEASE,
                                     attempts_factor=FACTOR))
        open_slots = [s for s in self.slots.values() if s.cap() > 0]
        expected = min(count, sum(s.cap() for s in open_slots), self.proxy_room)
        got = reply["allocations"]
        assert len(got) == expected, (reply, [s.counts for s in self.slots.values()])
        if expected == 0:
            assert reply["status"] == "no_work"
            if not open_slots and self.proxy_room > 0:
                assert reply["reason"] in ("daily_quota_reached", "attempt_limit_reached")
            elif open_slots:
                assert reply["reason"] == "no_proxy_available"
            return
        if count == 1:  # least complete first (ties: oldest slot)
            best = min(open_slots, key=lambda s: (s.fill(), s.id))
            assert got[0]["slot"]["id"] == best.id
        per_slot: dict[int, int] = {}
        for package in got:
            per_slot[package["slot"]["id"]] = per_slot.get(package["slot"]["id"], 0) + 1
        for slot_id, n in per_slot.items():
            assert n <= self.slots[slot_id].cap()
        for package in got:
            slot = self.slots[package["slot"]["id"]]
            slot.counts["allocated_count"] += 1
            slot.counts["in_flight_count"] += 1
            self.leases[package["allocation_key"]] = LeaseModel(
                package["allocation_key"], slot.id, self.now, self.now + timedelta(seconds=LEASE))
        self.proxy_room -= expected

    def keys(self, *statuses):
        return sorted(k for k, lease in self.leases.items() if lease.status in statuses)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), status=st.sampled_from(["success", "success", "failed", "blocked"]))
    def submit(self, data, status):
        key = data.draw(st.sampled_from(list(self.leases)))
        self.model_submit(key, status, self.call("submit_result", **self.submit_args(key, status)))

    @rule(status=st.sampled_from(["success", "failed"]))
    def submit_unknown(self, status):
        key = "00000000-0000-4000-8000-000000000000"
        self.model_submit(key, status, self.call("submit_result", **self.submit_args(key, status)))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def submit_batch(self, data):
        keys = data.draw(st.lists(st.sampled_from(list(self.leases)), min_size=1, max_size=4))
        statuses = [data.draw(st.sampled_from(["success", "failed", "blocked"])) for _ in keys]
        items = [{"allocation_key": k, "status": s, "execution_time_ms": 5} for k, s in zip(keys, statuses)]
        replies = self.call("submit_results", items=Jsonb(items), client_ip="127.0.0.1", now=self.now,
                            cooldown_after=1000, cooldown_seconds=1)
        for key, status, reply in zip(keys, statuses, replies):
            assert reply.pop("allocation_key") == key
            self.model_submit(key, status, reply)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data):
        key = data.draw(st.sampled_from(list(self.leases)))
        lease = self.leases[key]
        reply = self.call("release_lease", allocation_key=key, reason="test", now=self.now, client_ip=None)
        if lease.status == "allocated":
            assert reply["status"] == "released"
            c = self.slots[lease.slot].counts
            c["in_flight_count"] -= 1
            c["released_count"] += 1
            lease.status = "released"
        elif lease.status == "released":
            assert reply["status"] == "released"
        else:
            assert reply == {"error": f"allocation_{lease.status}"}

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), seconds=st.integers(1, 2400))
    def extend(self, data, seconds):
        key = data.draw(st.sampled_from(list(self.leases)))
        lease = self.leases[key]
        reply = self.call("extend_lease", allocation_key=key, seconds=seconds, now=self.now,
                          max_lifetime_seconds=LEASE_MAX, client_ip=None)
        if lease.status != "allocated":
            assert reply == {"error": f"allocation_{lease.status}"}
        elif lease.expires_at <= self.now:
            assert reply == {"error": "allocation_expired"}
        else:
            wanted = self.now + timedelta(seconds=seconds)
            new = min(wanted, lease.allocated_at + timedelta(seconds=LEASE_MAX))
            lease.expires_at = max(new, lease.expires_at)
            assert datetime.fromisoformat(reply["expires_at"]) == lease.expires_at
            assert reply["capped"] is (lease.expires_at < wanted)

    @rule(seconds=st.sampled_from([1, 30, 120, 299, 301, 900]))
    def advance_clock(self, seconds):
        self.now += timedelta(seconds=seconds)

    @rule(batch=st.sampled_from([1, 5000]))
    def sweep(self, batch):
        due = sorted((lease.expires_at, k) for k, lease in self.leases.items()
                     if lease.status == "allocated" and lease.expires_at <= self.now)
        assert self.call("expire_leases", now=self.now, batch=batch) == min(batch, len(due))
        for _, key in due[:batch]:
            lease = self.leases[key]
            lease.status = "expired"
            c = self.slots[lease.slot].counts
            c["in_flight_count"] -= 1
            c["expired_count"] += 1
        if batch < len(due):  # the oldest went first; drive the rest out so the model stays exact
            rest = self.call("expire_leases", now=self.now, batch=5000)
            assert rest == len(due) - batch
            for _, key in due[batch:]:
                lease = self.leases[key]
                lease.status = "expired"
                self.slots[lease.slot].counts["in_flight_count"] -= 1
                self.slots[lease.slot].counts["expired_count"] += 1

    @rule(data=st.data(), new_count=st.integers(1, 6))
    def change_daily_count(self, data, new_count):
        slot = self.slots[data.draw(st.sampled_from(sorted(self.slots)))]
        self.conn.execute("UPDATE v1_hub_work_slots SET daily_work_count = %s WHERE id = %s", (new_count, slot.id))
        changed = new_count != slot.daily_work_count
        slot.daily_work_count = new_count
        if not changed:
            pass  # the same count again changes nothing (the trigger acts on a changed count only)
        elif self.day_initialised():
            c = slot.counts
            c["target_count"] = max(new_count, c["success_count"] + c["in_flight_count"])
        else:
            slot.counts["target_count"] = new_count

    def day_initialised(self) -> bool:
        return self.conn.execute("SELECT count(*) FROM v1_hub_daily_work_tracking WHERE work_date = %s",
                                 (START.date(),)).fetchone()[0] > 0

    # ------------------------------------------------------------ invariants
    @invariant()
    def ledger_matches_model(self):
        rows = self.conn.execute(
            f"SELECT slot_id, {', '.join(COUNTERS)} FROM v1_hub_daily_work_tracking WHERE work_date = %s",
            (START.date(),)).fetchall()
        for row in rows:
            actual = dict(zip(COUNTERS, row[1:]))
            assert actual == self.slots[row[0]].counts, (row[0], actual, self.slots[row[0]].counts)
            assert actual["success_count"] <= actual["target_count"]
            assert actual["success_count"] + actual["in_flight_count"] <= actual["target_count"]
        if not rows:
            assert not self.leases

    @invariant()
    def results_equal_counted_submissions(self):
        counted = sum(1 for lease in self.leases.values() if lease.result and lease.result[1])
        stored = self.conn.execute("SELECT count(*) FILTER (WHERE counted), count(*) FROM v1_hub_work_results"
                                   ).fetchone()
        assert stored == (counted, sum(1 for lease in self.leases.values() if lease.result))


def test_ledger_state_machine(sql):
    LedgerMachine.conn = sql
    run_state_machine_as_test(LedgerMachine, settings=hyp_settings(
        max_examples=25, stateful_step_count=25, deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
