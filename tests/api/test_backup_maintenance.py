"""Maintenance and backup through the admin API and the CLI: recorded runs, the scheduler inside the app,
and a backup -> wipe -> restore round trip with identical row counts and checksums."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, ROOT, TIMEZONE, HubThread, make_settings
from workhub.core import backup


def cli(db_url: str, tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_ADMIN_KEY": ADMIN_KEY, "HUB_TIMEZONE": TIMEZONE,
           "HUB_DATA_DIR": str(tmp_path / "hubdata"), "HUB_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "workhub", *args], env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout, check=False)


def fingerprint(sql) -> dict[str, tuple[int, str]]:
    """Row count and checksum of every hub table (partitions and archives included)."""
    tables = [r[0] for r in sql.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname LIKE 'v1\\_hub\\_%' AND c.relkind IN ('r', 'p') "
        "ORDER BY 1").fetchall()]
    return {t: sql.execute(f"SELECT count(*), coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') "
                           f"FROM {t} x").fetchone() for t in tables}


def seed_data(sql) -> None:
    slot = sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                       "VALUES ('노트북', '12345', CURRENT_DATE - 5, CURRENT_DATE + 5, 10) RETURNING id").fetchone()[0]
    sql.execute("SELECT init_daily_work_tracking(CURRENT_DATE)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port, username, password) VALUES ('127.0.0.1', 3128, 'u', 's3cret')")
    sql.execute("INSERT INTO v1_hub_clients (client_ip) VALUES ('127.0.0.8')")
    old = sql.execute("SELECT now() - interval '200 days'").fetchone()[0]
    sql.execute("SELECT v1_hub_ensure_partitions(%s, 0, 0)", [old])
    for at in (old, old + timedelta(days=1), None):
        sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, result_data) "
                    "VALUES (coalesce(%s, now()), %s, CURRENT_DATE, 'success', '{\"k\": \"v\"}')", [at, slot])
        sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, action, status) "
                    "VALUES (coalesce(%s, now()), '127.0.0.8', 'submit', 'success')", [at])


def test_maintenance_api_runs_are_recorded_and_admin_only(api, anon, sql):
    assert anon.get("/api/admin/maintenance/runs").status_code == 401
    assert anon.post("/api/admin/maintenance/runs", json={"job": "daily"}).status_code == 401
    bad = api.post("/api/admin/maintenance/runs", json={"job": "hourly"})
    assert bad.status_code == 422 and bad.json()["error"]["code"]

    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) VALUES ('127.0.0.9', now() - interval '40 days')")
    reply = api.post("/api/admin/maintenance/runs", json={"job": "daily"})
    assert reply.status_code == 201, reply.text
    run = reply.json()
    assert run["job"] == "daily" and run["status"] == "ok" and run["scheduled_for"] is None
    assert run["rows_affected"]["archive_clients"] == 1 and run["run_by"] == "api:admin"
    assert run["finished_at"] >= run["started_at"]

    listed = api.get("/api/admin/maintenance/runs", params={"job": "daily"}).json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert api.get(f"/api/admin/maintenance/runs/{run['id']}").json()["rows_affected"] == run["rows_affected"]
    assert api.get("/api/admin/maintenance/runs/999999").status_code == 404
    status = api.get("/api/admin/maintenance/status").json()
    assert status["scheduler"]["enabled"] is False
    assert [j["job"] for j in status["jobs"]] == ["daily"] and status["jobs"][0]["last_ok_at"]
    assert set(status["next_slots"]) == {"minute", "midnight", "daily", "weekly", "monthly"}


def test_scheduler_inside_the_app_leads_and_runs_jobs(db_url, sql, tmp_path):
    import httpx

    s = make_settings(db_url, tmp_path, scheduler_enabled=True, scheduler_tick_seconds=0.3,
                      scheduler_leader_retry_seconds=0.3)
    hub = HubThread(s).start()
    try:
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as api:
            deadline = time.monotonic() + 60
            while True:
                status = api.get("/api/admin/maintenance/status").json()
                if len([j for j in status["jobs"] if j["status"] != "running"]) == 5:
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.3)
            assert status["scheduler"]["enabled"] and status["scheduler"]["this_process_is_leader"]
            jobs = {j["job"]: j for j in status["jobs"]}
            assert set(jobs) == {"minute", "midnight", "daily", "weekly", "monthly"}
            assert all(jobs[j]["status"] == "ok" for j in ("midnight", "daily", "weekly", "monthly")), jobs
            # the minute job's own steps succeeded (other capabilities' steps are theirs to test)
            assert jobs["minute"]["rows_affected"]["expire_leases"] == 0
            assert "error" not in jobs["minute"]["rows_affected"]["client_counters"]
    finally:
        hub.stop()
    # the lifespan stopped the scheduler: its advisory lock is gone
    assert sql.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                       "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0


async def test_backup_wipe_restore_round_trip(database, settings, db_url, sql, tmp_path):
    from workhub.core import maintenance

    seed_data(sql)
    for job in ("monthly", "weekly"):  # archived partitions, rollups and run records are backed up too
        assert (await maintenance.run_job(database, settings, job))["status"] == "ok"
    await database.close()  # the restore replaces tables: no pooled sessions with cached plans
    before = fingerprint(sql)
    assert before["v1_hub_work_results_archive"][0] == 2 and before["v1_hub_work_results"][0] == 1

    out = tmp_path / "backup_test.sql"
    made = cli(db_url, tmp_path, "backup", "--out", str(out))
    assert made.returncode == 0, made.stderr + made.stdout
    assert "backup written" in made.stdout and out.stat().st_size > 0
    text = out.read_text()
    assert text.lstrip().startswith("--") and "PostgreSQL database dump" in text
    assert "_yoyo_migration" not in text  # only the hub's tables

    # wipe: every hub table gone (the functions stay, as after a failed disk or a bad DROP)
    tables = [t for t in before if not sql.execute(
        "SELECT c.relispartition FROM pg_class c WHERE c.relname = %s", [t]).fetchone()[0]]
    sql.execute("DROP VIEW IF EXISTS v1_hub_work_dashboard")
    sql.execute("DROP TABLE " + ", ".join(tables) + " CASCADE")
    assert sql.execute("SELECT to_regclass('v1_hub_work_slots')").fetchone()[0] is None

    # restore in-process (the CLI's restore is a thin shell over it, exercised by the error test below)
    restored = backup.restore(settings, db_url, out)
    assert restored["bytes"] == out.stat().st_size
    # the CLI backup is recorded as a maintenance run, so the dump holds its own run (still running then)
    own_run = sql.execute("DELETE FROM v1_hub_maintenance_runs WHERE job = 'backup' RETURNING status, run_by"
                          ).fetchall()
    assert [tuple(r) for r in own_run] == [("running", "cli")]
    after = fingerprint(sql)
    assert after == before
    # the restored database works: the seed's dashboard query and the ledger functions
    assert sql.execute("SELECT keyword FROM v1_hub_work_dashboard WHERE work_date = CURRENT_DATE").fetchall() \
        == [("노트북",)]
    assert sql.execute("SELECT init_daily_work_tracking(CURRENT_DATE + 1)").fetchone()[0] == 1


def test_backup_and_restore_explain_their_errors(db_url, sql, tmp_path):
    bad = tmp_path / "notes.sql"
    bad.write_text("SELECT 1;\n")
    result = cli(db_url, tmp_path, "restore", str(bad), "--yes")
    assert result.returncode != 0 and "not a PostgreSQL dump" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(backup.BackupError) as err:
        backup.restore(make_settings(db_url, tmp_path), db_url, tmp_path / "nope.sql")
    assert err.value.code == "backup_not_found" and "No such file" in err.value.message

    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    s = make_settings(db_url, tmp_path, pg_bin_dir=empty_bin)
    with pytest.raises(backup.BackupError) as err:
        backup.find_tool(s, "pg_dump", 16)
    assert err.value.code == "pg_tool_missing" and str(empty_bin) in err.value.message

    # a server newer than every pg_dump on the machine is refused up front, naming what was found
    with pytest.raises(backup.BackupError) as err:
        backup.find_tool(make_settings(db_url, tmp_path), "pg_dump", 99)
    assert err.value.code == "pg_tool_version_mismatch" and "99" in err.value.message
    # and the one picked for the actual server matches its major version
    major = int(sql.execute("SHOW server_version_num").fetchone()[0]) // 10000
    assert backup.find_tool(make_settings(db_url, tmp_path), "pg_dump", major).major == major

    with pytest.raises(backup.BackupError) as err:
        backup.backup(s, db_url, tmp_path / "x.sql")
    assert "pg_dump was not found" in err.value.message and not (tmp_path / "x.sql").exists()


def test_backup_api_writes_into_the_backup_dir(db_url, tmp_path):
    import httpx

    s = make_settings(db_url, tmp_path, backup_dir=tmp_path / "backups")
    hub = HubThread(s).start()
    try:
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120) as api:
            assert api.get("/api/admin/backups").json()["files"] == []
            made = api.post("/api/admin/backups")
            assert made.status_code == 201, made.text
            run = made.json()
            assert run["job"] == "backup" and run["status"] == "ok", run
            listing = api.get("/api/admin/backups").json()
            assert [f["name"] for f in listing["files"]] == [Path(run["rows_affected"]["pg_dump"]["file"]).name]
            assert listing["runs"][0]["id"] == run["id"]
            assert "s3cret" not in made.text and "password" not in made.text.lower()
    finally:
        hub.stop()


def test_cli_backup_defaults_to_the_backup_dir_and_is_recorded(db_url, sql, tmp_path):
    made = cli(db_url, tmp_path, "backup")
    assert made.returncode == 0, made.stderr + made.stdout
    s = make_settings(db_url, tmp_path)  # HUB_DATA_DIR=tmp_path/hubdata, as the CLI ran with
    files = backup.list_backups(s)
    assert backup.backup_dir(s) == tmp_path / "hubdata" / "backups"
    assert [f["name"] for f in files] == [backup.default_backup_name(s)]
    run = sql.execute("SELECT status, run_by, rows_affected->'pg_dump'->>'file' FROM v1_hub_maintenance_runs "
                      "WHERE job = 'backup'").fetchall()
    assert [tuple(r) for r in run] == [("ok", "cli", str(backup.backup_dir(s) / files[0]["name"]))]
