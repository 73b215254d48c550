"""The database restarted in the middle of load (SPEC section 8).

The shared test server is never restarted: this test starts its own embedded PostgreSQL in a temporary
directory (also when HUB_TEST_DATABASE_URL selects another server), runs a `workhub serve` process on it,
stops the server with load running, checks that the hub answers a clear 503 while it is down, starts the
server again and checks that the same hub process recovers by itself and that the ledger is exact.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from tests.conftest import TIMEZONE, HubProcess
from tests.reliability.load import Load, check_ledger, check_worker_view, expire_leases, hub_today, seed_work
from workhub.db import embedded, migrate
from workhub.db.urls import with_database

LEASE = 3


class EmbeddedServer:
    """A private embedded server that a test may stop and start."""

    def __init__(self, root: Path):
        self.pgdata = (root / "pgdata").resolve()
        self.url = embedded.start(self.pgdata, max_connections=100, stop_on_exit=True,
                                  tuning={"fsync": "off", "synchronous_commit": "off"})
        self.socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        self.log = self.pgdata / "restart.log"  # inside pgdata: written by the server's system user
        self.running = True

    def stop(self) -> None:
        embedded.pg_ctl(self.pgdata, "-w", "-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        embedded.pg_ctl(self.pgdata, "-w", "-l", str(self.log), "-o", '-h ""', "-o", f"-k {self.socket_dir}", "start")
        self.running = True


@pytest.fixture
def private_server():
    # Not under pytest's tmp_path: the server runs as an unprivileged system user when the tests run as
    # root, and every pytest session (other engineers run theirs at the same time) resets the shared
    # pytest-of-<user> folder to 0700, which would lock the server out of its own data directory.
    root = Path(tempfile.mkdtemp(prefix="workhub-restart-"))
    root.chmod(0o755)
    server = EmbeddedServer(root)
    try:
        yield server
    finally:
        if server.running:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _probe(url: str, seconds: float, until=None) -> list[tuple[int | None, dict | None]]:
    """Allocate requests against the hub for a bounded time; (status, body) of each."""
    out = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as c:
        while time.monotonic() < end and len(out) < 500:
            try:
                r = c.get("/api/allocate-work")
                out.append((r.status_code, r.json()))
            except httpx.HTTPError:
                out.append((None, None))
            if until is not None and until(out[-1]):
                break
            time.sleep(0.1)
    return out


def _restart_during_load(private_server, tmp_path, *, workers: int, duration: float, down_for: float, rounds: int):
    url = with_database(private_server.url, "hub")
    with psycopg.connect(private_server.url, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "hub"')
    migrate.migrate(url, TIMEZONE)
    today = hub_today()
    with psycopg.connect(url, autocommit=True) as conn:
        seed_work(conn, slots=10, target=1000, start=today, end=today, max_attempts=1_000_000)

    hub = HubProcess(url, tmp_path / "hubdata", env={"HUB_LEASE_SECONDS": str(LEASE)}).start()
    try:
        load = Load([hub.url], workers=workers, max_cycles=100_000, duration=duration, seed=3).start()
        outages = []
        for _ in range(rounds):
            time.sleep(2)
            private_server.stop()
            down = _probe(hub.url, down_for)
            private_server.start()
            restarted = time.monotonic()
            # recovers by itself: the same process serves again (bounded wait, no assertion on speed)
            back = _probe(hub.url, 60, until=lambda r: r[0] == 200)
            outages.append((down, back, time.monotonic() - restarted))
        load.join()
        ready = httpx.get(hub.url + "/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        assert hub.proc.poll() is None, "the hub process died"
    finally:
        hub.stop()

    for down, back, _ in outages:
        assert down, "no probe while the database was down"
        codes = {status for status, _ in down}
        # while down: only clear 503s (the first requests may still finish before the server is gone)
        assert codes <= {200, 503}, codes
        assert 503 in codes
        for status, body in down:
            if status == 503:
                assert body["error"]["code"] == "database_unavailable", body
                assert body["error"]["message"]
        assert back[-1][0] == 200, f"no recovery: {back[-5:]}"
    # nothing but 200s and 503s reached the workers (no 500, no hang)
    statuses = {e.status for e in load.events}
    assert statuses <= {200, 503}, [(e.op, e.status, e.error) for e in load.events if e.status not in (200, 503)][:5]
    assert any(e.status == 503 for e in load.events)

    private_server_up = psycopg.connect(url, autocommit=True, options=f"-c TimeZone={TIMEZONE}")
    with private_server_up as conn:
        time.sleep(LEASE + 0.5)
        expire_leases(url)
        totals = check_ledger(conn)
        check_worker_view(conn, load)
    assert totals["in_flight"] == 0 and totals["success"] > 0
    # work was done after the (last) restart too
    last_up = max(e.at for e in load.events if e.status == 503)
    assert any(e.op == "submit" and e.status == 200 and e.at > last_up for e in load.events)
    return load, outages


def test_database_restart_mid_load(private_server, tmp_path):
    _restart_during_load(private_server, tmp_path, workers=6, duration=10, down_for=2, rounds=1)


@pytest.mark.slow
def test_database_restarts_repeatedly(private_server, tmp_path):
    _restart_during_load(private_server, tmp_path, workers=16, duration=60, down_for=6, rounds=4)
