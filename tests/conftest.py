"""Shared fixtures: a real PostgreSQL (embedded, or HUB_TEST_DATABASE_URL), a clean database per test
cloned from a migrated template, and a real hub on a loopback port."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from workhub.config import Settings
from workhub.db import migrate
from workhub.db.urls import with_database

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "whadm_test_" + "k" * 32
TIMEZONE = "Asia/Seoul"


# ---------------------------------------------------------------- the server
@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A superuser URL on the test server (maintenance database)."""
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if url:
        return url
    from workhub.db import embedded

    # test-only tuning: durability off makes database cloning and commits cheap
    return embedded.start(ROOT / ".workhub" / "test-pgdata", max_connections=400,
                          tuning={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})


@pytest.fixture(scope="session")
def template_db(pg_admin_url) -> str:
    """A freshly migrated database that every test database is cloned from."""
    name = f"whtpl_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_admin_url, name)
    migrate.migrate(url, TIMEZONE)
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_counter = iter(range(1, 1_000_000))


def clone_database(pg_admin_url: str, template: str) -> tuple[str, str]:
    name = f"wht_{os.getpid()}_{next(_counter)}_{secrets.token_hex(2)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        # per-database settings are not copied from a template
        conn.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = '{TIMEZONE}'")
    return name, with_database(pg_admin_url, name)


def drop_database(pg_admin_url: str, name: str) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_admin_url, template_db) -> str:
    """A clean, migrated database for this test."""
    name, url = clone_database(pg_admin_url, template_db)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def sql(db_url):
    """A plain autocommit connection in the hub's time zone, for arranging and checking data."""
    with psycopg.connect(db_url, autocommit=True, options=f"-c TimeZone={TIMEZONE}") as conn:
        yield conn


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return make_settings(db_url, tmp_path)


def make_settings(db_url: str, tmp_path: Path, **overrides) -> Settings:
    values = dict(database_url=db_url, admin_key=ADMIN_KEY, data_dir=tmp_path / "hubdata",
                  scheduler_enabled=False, timezone=TIMEZONE, pool_min=1, pool_max=20, log_level="WARNING")
    values.update(overrides)
    return Settings(_env_file=None, **values)


# ---------------------------------------------------------------- a real hub on loopback
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubThread:
    """uvicorn serving the app factory's app on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings):
        import uvicorn

        from workhub.app import create_app

        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", proxy_headers=False)  # as `workhub serve`
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "HubThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("hub did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def hub(settings):
    h = HubThread(settings).start()
    yield h
    h.stop()


@pytest.fixture
def api(hub):
    """httpx client on the hub, with the admin key."""
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c:
        yield c


@pytest.fixture
def anon(hub):
    with httpx.Client(base_url=hub.url, timeout=30) as c:
        yield c


# ---------------------------------------------------------------- core-level access
@pytest.fixture
async def database(settings):
    """workhub.db.pool.Database on the test database, for calling core functions directly."""
    from workhub.db.pool import Database

    db = Database(settings, settings.database_url)
    await db.pool.open(wait=True)
    yield db
    await db.close()


def run(coro):
    return asyncio.get_event_loop().run_until_complete(coro)


# ---------------------------------------------------------------- hub processes (multi-process, kill tests)
class HubProcess:
    """`workhub serve` in a child process on a loopback port (real process: can be SIGKILLed)."""

    def __init__(self, db_url: str, data_dir: Path, *, port: int | None = None, scheduler: bool = False,
                 env: dict | None = None, workers: int = 1, server: str = "uvicorn"):
        import sys

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(data_dir) / f"hub-{self.port}.log"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_ADMIN_KEY": ADMIN_KEY,
                    "HUB_DATA_DIR": str(data_dir), "HUB_TIMEZONE": TIMEZONE, "HUB_LOG_LEVEL": "WARNING",
                    "HUB_SCHEDULER_ENABLED": "true" if scheduler else "false", **(env or {})}
        self.args = [sys.executable, "-m", "workhub", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(workers), "--server", server,
                     "--scheduler" if scheduler else "--no-scheduler"]
        self.proc = None

    def start(self, timeout: float = 60) -> "HubProcess":
        import subprocess

        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hub did not become ready: {self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = 9) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        import signal

        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture
def hub_processes(db_url, tmp_path):
    """Factory: start N hub processes on this test's database; all are stopped at the end."""
    started: list[HubProcess] = []

    def start(n: int = 1, **kwargs) -> list[HubProcess]:
        procs = [HubProcess(db_url, tmp_path / "hubdata", **kwargs) for _ in range(n)]
        for p in procs:
            p.start()
            started.append(p)
        return procs

    yield start
    for p in started:
        p.stop()
