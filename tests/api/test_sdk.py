"""The worker SDK (workhub.client) against a real hub: retries, lease keeping, safe submit retries."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest

from tests.conftest import HubThread, make_settings
from workhub.client import AsyncHubClient, HubClient, HubError
from workhub.client._policy import RetryPolicy

FAST = RetryPolicy(attempts=4, max_elapsed=20, backoff_initial=0.05, backoff_max=0.2, retry_after_max=1)


class FaultyTransport(httpx.HTTPTransport):
    """A real transport that injects faults on chosen calls: a 503 before the request reaches the hub,
    or a lost reply after the hub has handled it (the worst case for a non-idempotent call)."""

    def __init__(self, faults: dict[str, list[str]]):
        super().__init__()
        self.faults = faults
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        fault = self.faults.get(path, [])
        kind = fault.pop(0) if fault else None
        if kind == "503":
            return httpx.Response(503, headers={"Retry-After": "0.2"}, request=request,
                                  json={"error": {"code": "database_unavailable", "message": "retry", "details": None}})
        response = super().handle_request(request)
        if kind == "lost_reply":
            response.read()
            raise httpx.ReadTimeout("reply lost on the way back", request=request)
        return response


def arrange(sql, settings, target: int = 3) -> None:
    today = settings.work_date()
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('laptop', '12345', %s, %s, %s)", (today - timedelta(days=1), today + timedelta(days=1), target))
    sql.execute("INSERT INTO v1_hub_proxies (host, port, username, password) VALUES ('10.2.0.1', 3128, 'u', 'secret')")


def test_sync_client_cycle_and_safe_submit_retry(hub, sql, settings):
    arrange(sql, settings)
    transport = FaultyTransport({"/api/allocate-work": ["503"], "/api/submit-result": ["lost_reply"]})
    with HubClient(hub.url, instance_number=2, user_folder_number=5, retry=FAST, transport=transport) as client:
        reply = client.allocate(count=2)          # first attempt answered 503 + Retry-After: retried
        assert reply.status == "allocated" and len(reply.allocations) == 2
        package = reply.allocations[0]
        assert "secret" not in repr(package) and package.keyword == "laptop"
        # the hub stored the result but the reply was lost: the retry is answered "duplicate", counted once
        outcome = client.submit(package.allocation_key, "success", 900, rank=4, page=1)
        assert outcome.status == "duplicate" and outcome.counted is True
        again = client.submit(package.allocation_key, "success", 900)
        assert (again.status, again.result_id) == ("duplicate", outcome.result_id)
        client.release(reply.allocations[1].allocation_key, "not needed")
        with pytest.raises(HubError) as unknown:
            client.submit("00000000-0000-4000-8000-000000000000", "failed", 1)
        assert unknown.value.status == 404 and unknown.value.code == "unknown_allocation_key"
    assert transport.calls.count("/api/allocate-work") == 2
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == 1
    row = sql.execute("SELECT success_count, released_count, in_flight_count FROM v1_hub_daily_work_tracking").fetchone()
    assert row == (1, 1, 0)
    assert sql.execute("SELECT DISTINCT instance_number, user_folder_number FROM v1_hub_work_allocations"
                       ).fetchall() == [(2, 5)]


def test_allocate_is_not_resent_after_a_lost_reply(hub, sql, settings):
    arrange(sql, settings)
    transport = FaultyTransport({"/api/allocate-work": ["lost_reply"]})
    with HubClient(hub.url, retry=FAST, transport=transport) as client, pytest.raises(httpx.ReadTimeout):
        client.allocate()
    # resending could have leased twice; the one lease taken simply expires if nobody submits it
    assert transport.calls == ["/api/allocate-work"]
    assert sql.execute("SELECT count(*) FROM v1_hub_work_allocations").fetchone()[0] == 1


def test_lease_keeper_extends_while_work_runs(db_url, tmp_path, sql):
    settings = make_settings(db_url, tmp_path, lease_seconds=30, lease_max_seconds=600)
    arrange(sql, settings)
    hub = HubThread(settings).start()
    try:
        with HubClient(hub.url, retry=FAST) as client:
            package = client.allocate().allocations[0]
            with client.keep_lease(package, seconds=120, every=0.2) as keeper:
                deadline = time.monotonic() + 30
                while keeper.extensions < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
            assert keeper.extensions >= 2 and keeper.lost is None
            assert keeper.expires_at > package.expires_at + timedelta(seconds=60)
            stored = sql.execute("SELECT expires_at, extended_count FROM v1_hub_work_allocations").fetchone()
            assert stored[0] == keeper.expires_at and stored[1] >= 2
            assert client.submit(package.allocation_key, "failed", 10).status == "accepted"
            # once submitted, a keeper notices the lease is gone and stops
            with client.keep_lease(package, every=0.05) as late_keeper:
                deadline = time.monotonic() + 30
                while late_keeper.lost is None and time.monotonic() < deadline:
                    time.sleep(0.05)
            assert late_keeper.lost is not None
    finally:
        hub.stop()


async def test_async_client_batch_and_keeper(hub, sql, settings):
    arrange(sql, settings, target=4)
    async with AsyncHubClient(hub.url, instance_number=7, retry=FAST) as client:
        reply = await client.allocate(count=4)
        assert len(reply.allocations) == 4
        async with client.keep_lease(reply.allocations[0], seconds=300, every=0.1) as keeper:
            for _ in range(300):
                if keeper.extensions:
                    break
                await asyncio.sleep(0.05)
        assert keeper.extensions >= 1
        outcomes = await client.submit_many([
            {"allocation_key": p.allocation_key, "status": "success", "execution_time_ms": 5}
            for p in reply.allocations] + [
            {"allocation_key": reply.allocations[0].allocation_key, "status": "failed", "execution_time_ms": 5}])
        assert [o.status for o in outcomes] == ["accepted"] * 4 + ["duplicate"]
        none = await client.allocate()
        assert none.status == "no_work" and none.reason == "daily_quota_reached" and none.retry_after_seconds > 0
    assert sql.execute("SELECT success_count FROM v1_hub_daily_work_tracking").fetchone()[0] == 4


def test_sdk_imports_nothing_else_from_workhub():
    code = ("import sys, json, workhub.client; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('workhub'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = json.loads(out)
    assert all(m == "workhub" or m.startswith("workhub.client") for m in modules), modules
    assert not any(m.startswith(("workhub.config", "workhub.db", "workhub.core", "workhub.api")) for m in modules)


def test_simulate_command_rejects_remote_hosts_and_runs_against_a_hub(hub, sql, settings):
    from typer.testing import CliRunner

    from workhub.cli import app

    arrange(sql, settings, target=5)
    runner = CliRunner()
    remote = runner.invoke(app, ["simulate", "--url", "http://192.0.2.10:8080", "--duration", "1"])
    assert remote.exit_code == 1 and "is not a loopback address" in remote.output
    assert "Traceback" not in remote.output
    run = runner.invoke(app, ["simulate", "--url", hub.url, "--workers", "4", "--duration", "3", "--json",
                              "--seed", "7"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["allocated"] >= 1 and summary["errors"] == {}
    done = sql.execute("SELECT success_count FROM v1_hub_daily_work_tracking").fetchone()[0]
    assert done == summary["counted"].get("success", 0)
