"""`workhub demo` end to end: sample data, the hub on loopback, a bounded simulated fleet."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, TIMEZONE, free_port


def test_demo_loads_samples_runs_a_fleet_and_serves_the_dashboard(db_url, sql, tmp_path):
    port = free_port()
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_DATA_DIR": str(tmp_path / "hub"),
           "HUB_TIMEZONE": TIMEZONE, "HUB_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    env.pop("HUB_ADMIN_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "workhub", "demo", "--duration", "3", "--port", str(port),
                             "--workers", "3", "--no-keep-serving"], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        login_page = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                login_page = httpx.get(base + "/login", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert login_page is not None and login_page.status_code == 200, "the demo hub did not answer"
        assert "Admin key" in login_page.text
        assert httpx.get(base + "/", follow_redirects=False, timeout=5).status_code == 303
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, out
    key_file = tmp_path / "hub" / "demo" / "admin_key"
    assert key_file.exists()
    assert f"http://127.0.0.1:{port}/" in out and str(key_file) in out
    assert key_file.read_text().strip() not in out  # the location is printed, never the key
    assert sql.execute("SELECT count(*) FROM v1_hub_external_sites").fetchone()[0] == 2
    assert sql.execute("SELECT count(*) FROM v1_hub_work_slots").fetchone()[0] == 8
    assert sql.execute("SELECT count(*) FROM v1_hub_proxies").fetchone()[0] == 12
    results = sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0]
    counted = sql.execute("SELECT sum(success_count) FROM v1_hub_daily_work_tracking").fetchone()[0]
    assert results > 0 and counted > 0
