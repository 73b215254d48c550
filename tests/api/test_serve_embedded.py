"""`workhub serve` with no HUB_DATABASE_URL: the embedded PostgreSQL starts, the hub gets ready, and
Ctrl-C stops both cleanly (what `make run` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from tests.conftest import ROOT, free_port


def _postmasters(pgdata) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in " ".join(cmdline):
            found.append(proc)
    return found


def test_serve_on_the_embedded_server_gets_ready_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "hub"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATA_DIR=str(data_dir), HUB_LOG_LEVEL="WARNING")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "workhub", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # a bound for a slow shared machine, not a speed check
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        assert ready is not None and ready.status_code == 200, (tmp_path / "serve.log").read_text()[-2000:]
        assert ready.json()["status"] == "ready"
        # the admin key was generated and kept under the data directory, readable by its owner only
        key_file = data_dir / "admin_key"
        assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        assert httpx.get(f"http://127.0.0.1:{port}/api/admin/proxies", headers={"Authorization": f"Bearer {key}"},
                         timeout=10).status_code != 401
        output = (tmp_path / "serve.log").read_text()
        assert key not in output  # the key's location is printed, never the key
        assert str(key_file.resolve()) in output
        assert _postmasters(data_dir / "pgdata"), "the embedded server should be running"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while _postmasters(data_dir / "pgdata") and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not _postmasters(data_dir / "pgdata"), "Ctrl-C must stop the embedded server too"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
