"""The proxy pool over real HTTP: admin routes, the agent heartbeat (concurrent rotation), the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ADMIN_KEY, ROOT, TIMEZONE, HubThread, make_settings

SECRET = "s3cr3t-Pa55"


def import_pool(api, n: int = 3, max_uses: int = 20) -> list[int]:
    reply = api.post("/api/admin/proxies", json={"proxies": [
        {"host": f"127.0.0.{i + 1}", "port": 3128, "username": "u", "password": f"{SECRET}{i}", "max_uses": max_uses}
        for i in range(n)]})
    assert reply.status_code == 201, reply.text
    return reply.json()["ids"]


def add_slot(sql, target: int = 100) -> None:
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('kw', 'c1', CURRENT_DATE - 1, CURRENT_DATE + 1, %s)", (target,))


def test_concurrent_heartbeats_rotate_exactly_once(api, anon, sql):
    add_slot(sql)
    [pid] = import_pool(api, 1, max_uses=3)
    assert api.post(f"/api/proxies/{pid}/heartbeat", json={"ip": "198.51.100.1"}).status_code == 200
    assert len(anon.get("/api/allocate-work", params={"count": 3}).json()["allocations"]) == 3
    exhausted = api.post(f"/api/proxies/{pid}/heartbeat", json={"ip": "198.51.100.1"}).json()
    assert exhausted["rotate"] is True and exhausted["status"] == "exhausted" and exhausted["uses_left"] == 0

    barrier = threading.Barrier(16, timeout=30)

    def beat(_):
        with httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          timeout=30) as client:
            barrier.wait()
            return client.post(f"/api/proxies/{pid}/heartbeat", json={"ip": "198.51.100.2"}).json()

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(beat, range(16)))
    assert sum(r["rotated"] for r in replies) == 1
    assert all(r["status"] == "active" and r["rotate"] is False and r["ip"] == "198.51.100.2" for r in replies)
    detail = api.get(f"/api/admin/proxies/{pid}").json()
    assert detail["use_count"] == 0 and detail["total_uses"] == 3
    assert [(h["ip"], h["uses"]) for h in detail["ip_history"]] == [("198.51.100.1", 3)]
    rotations = sql.execute("SELECT count(*) FROM v1_hub_proxy_events WHERE proxy_id = %s "
                            "AND from_status = 'exhausted' AND to_status = 'active'", (pid,)).fetchone()[0]
    assert rotations == 1
    # the fresh budget is exactly max_uses: three more packages, not more
    assert len(anon.get("/api/allocate-work", params={"count": 5}).json()["allocations"]) == 3


def test_admin_routes_and_no_password_anywhere(api, anon, sql, hub, caplog):
    caplog.set_level("DEBUG")
    ids = import_pool(api, 3)
    again = api.post("/api/admin/proxies", json={"proxies": [{"host": "127.0.0.9", "port": 1},
                                                             {"host": "127.0.0.1", "port": 3128, "username": "u"}]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "proxy_exists"
    assert sql.execute("SELECT count(*) FROM v1_hub_proxies").fetchone()[0] == 3

    page = api.get("/api/admin/proxies", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 3 and [p["id"] for p in page["items"]] == ids[1:]
    disabled = api.post(f"/api/admin/proxies/{ids[0]}/disable", json={"reason": "bad exit"})
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    only = api.get("/api/admin/proxies", params={"status": "disabled"}).json()
    assert only["total"] == 1 and only["items"][0]["id"] == ids[0]
    assert api.get("/api/admin/proxies", params={"status": "nope"}).status_code == 422
    assert api.post(f"/api/admin/proxies/{ids[0]}/enable").json()["status"] == "active"
    patched = api.patch(f"/api/admin/proxies/{ids[1]}", json={"max_uses": 7})
    assert patched.status_code == 200 and patched.json()["max_uses"] == 7
    assert api.post(f"/api/admin/proxies/{ids[2]}/reset").json()["use_count"] == 0
    missing = api.post("/api/admin/proxies/999999/reset")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "proxy_not_found"
    pool = api.get("/api/admin/proxies/pool").json()
    assert pool["total"] == 3 and pool["available"] == 3 and pool["utilisation"] == 0.0
    assert anon.get("/api/admin/proxies").status_code == 401

    seen = [api.get("/api/admin/proxies").text, api.get(f"/api/admin/proxies/{ids[0]}").text, disabled.text,
            again.text, patched.text, caplog.text]
    seen += [str(r) for r in sql.execute("SELECT old_data, new_data FROM v1_hub_audit_log").fetchall()]
    seen += [str(r) for r in sql.execute("SELECT * FROM v1_hub_proxy_events").fetchall()]
    assert all(SECRET not in text for text in seen)
    assert all(p["has_password"] for p in api.get("/api/admin/proxies").json()["items"])
    # the audit log names the acting key for each change
    actors = sql.execute("SELECT DISTINCT changed_by FROM v1_hub_audit_log WHERE table_name = 'v1_hub_proxies'")
    assert {r[0] for r in actors.fetchall()} == {"admin"}


def test_heartbeat_authorisation(db_url, tmp_path, sql):
    settings = make_settings(db_url, tmp_path, fleet_token="fleet-token-" + "f" * 20)
    hub = HubThread(settings).start()
    try:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=hub.url, timeout=30) as client:
            [pid, other] = client.post("/api/admin/proxies", headers=admin, json={"proxies": [
                {"host": "127.0.0.1", "port": 1}, {"host": "127.0.0.1", "port": 2}]}).json()["ids"]
            token = client.post(f"/api/admin/proxies/{pid}/agent-token", headers=admin).json()["agent_token"]
            body = {"ip": "198.51.100.5"}
            assert client.post(f"/api/proxies/{pid}/heartbeat", json=body).status_code == 401
            own = client.post(f"/api/proxies/{pid}/heartbeat", json=body, headers={"Authorization": f"Bearer {token}"})
            assert own.status_code == 200 and own.json()["ip"] == "198.51.100.5"
            wrong = client.post(f"/api/proxies/{other}/heartbeat", json=body,
                                headers={"Authorization": f"Bearer {token}"})
            assert wrong.status_code == 401
            fleet = client.post(f"/api/proxies/{other}/heartbeat", json=body,
                                headers={"Authorization": f"Bearer {settings.fleet_token.get_secret_value()}"})
            assert fleet.status_code == 200
            bad_ip = client.post(f"/api/proxies/{other}/heartbeat", json={"ip": "not-an-ip"}, headers=admin)
            assert bad_ip.status_code == 422
            listed = client.get("/api/admin/proxies", headers=admin).text
            assert token not in listed and '"has_agent_token":true' in listed
    finally:
        hub.stop()
    assert sql.execute("SELECT agent_token_hash <> %s FROM v1_hub_proxies WHERE id = %s", (token, pid)).fetchone()[0]


def test_heartbeat_always_needs_a_key(api, anon, sql):
    """No fleet token and a proxy without an agent token: still no anonymous heartbeat (it would reset
    the use budget with a made-up IP); only the admin key, or the proxy's own token once issued."""
    pid, other = import_pool(api, 2, max_uses=2)
    body = {"ip": "198.51.100.6"}
    assert anon.post(f"/api/proxies/{pid}/heartbeat", json=body).status_code == 401
    for key in ("whpx_" + "x" * 43, "not-a-key", "whs_" + "y" * 43):
        reply = anon.post(f"/api/proxies/{pid}/heartbeat", json=body, headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"
    assert sql.execute("SELECT last_heartbeat IS NULL AND current_ip IS NULL FROM v1_hub_proxies WHERE id = %s",
                       (pid,)).fetchone()[0]
    assert api.post(f"/api/proxies/{pid}/heartbeat", json=body).status_code == 200
    token = api.post(f"/api/admin/proxies/{pid}/agent-token").json()["agent_token"]
    own = anon.post(f"/api/proxies/{pid}/heartbeat", json={"ip": "198.51.100.7"},
                    headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200 and own.json()["rotated"] is True
    # the token is good for its own proxy only, and not for any other route
    assert anon.post(f"/api/proxies/{other}/heartbeat", json=body,
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert anon.get("/api/admin/proxies", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert anon.post("/api/proxies/999999/heartbeat", json=body,
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401


def run_cli_process(db_url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The real console entry point (slow to start, so used once)."""
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_ADMIN_KEY": ADMIN_KEY, "HUB_TIMEZONE": TIMEZONE,
           "HUB_DATA_DIR": str(tmp_path / "clidata"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "workhub", "proxies", *args], check=False, env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    """The same commands in this process (Typer's runner), on this test's database."""
    from typer.testing import CliRunner

    from workhub.cli import app
    from workhub.config import get_settings

    for key, value in {"HUB_DATABASE_URL": db_url, "HUB_ADMIN_KEY": ADMIN_KEY, "HUB_TIMEZONE": TIMEZONE,
                       "HUB_DATA_DIR": str(tmp_path / "clidata"), "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["proxies", *args])
    get_settings.cache_clear()


def test_cli_import_list_and_actions(db_url, tmp_path, sql, cli):
    bad = tmp_path / "bad.txt"
    bad.write_text(f"127.0.0.1:3128\n127.0.0.2:70000:u:{SECRET}\n127.0.0.3\n")
    failed = run_cli_process(db_url, tmp_path, "import", str(bad))
    assert failed.returncode != 0 and "line 2" in failed.stderr and "line 3" in failed.stderr
    assert "Traceback" not in failed.stderr and SECRET not in failed.stdout + failed.stderr
    assert sql.execute("SELECT count(*) FROM v1_hub_proxies").fetchone()[0] == 0

    good = tmp_path / "pool.csv"
    good.write_text(f"host,port,username,password,max_uses\n127.0.0.1,3128,u,{SECRET},5\n127.0.0.2,3128,,,\n")
    done = cli("import", str(good))
    assert done.exit_code == 0, done.output
    assert sql.execute("SELECT count(*), sum(max_uses) FROM v1_hub_proxies").fetchone() == (2, 25)
    twice = cli("import", str(good))
    assert twice.exit_code == 1 and "line 2" in twice.output and "line 3" in twice.output
    assert cli("import", str(tmp_path / "missing.txt")).exit_code == 1

    [first] = sql.execute("SELECT min(id) FROM v1_hub_proxies").fetchone()
    assert cli("disable", str(first), "--reason", "flaky").exit_code == 0
    listed = cli("list")
    assert listed.exit_code == 0 and "disabled" in listed.output and "127.0.0.2" in listed.output
    assert SECRET not in listed.output and "u:***@127.0.0.1" in listed.output
    assert cli("enable", str(first)).exit_code == 0
    assert cli("reset", str(first)).exit_code == 0
    assert sql.execute("SELECT status FROM v1_hub_proxies WHERE id = %s", (first,)).fetchone()[0] == "active"
    missing = cli("reset", "999999")
    assert missing.exit_code == 1 and "proxy_not_found" in missing.output
