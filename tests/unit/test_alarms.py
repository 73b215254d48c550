"""The alarm engine on crafted data: each rule fires and resolves, one open alert per rule and subject
under concurrent evaluation (in one process and from two processes), notifications after commit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.conftest import ADMIN_KEY, ROOT, TIMEZONE, make_settings
from tests.webhook_receiver import WebhookReceiver
from workhub.core import alarms


def add_results(sql, statuses: dict[str, int], *, minutes_ago: int = 5, proxy_id=None, client_ip="10.1.0.1"):
    for status, n in statuses.items():
        sql.execute(
            "INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, client_ip, proxy_id, status, "
            "is_blocked, block_type, execution_time_ms) "
            "SELECT now() - make_interval(mins => %s), 1, CURRENT_DATE, %s, %s, %s, %s, %s, 1000 "
            "FROM generate_series(1, %s)",
            [minutes_ago, client_ip, proxy_id, status, status == "blocked",
             "captcha" if status == "blocked" else None, n])


def open_alerts(sql) -> dict:
    rows = sql.execute("SELECT rule, subject, id FROM v1_hub_alerts WHERE status = 'firing'").fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


async def test_rate_rules_fire_and_resolve(sql, database, settings):
    add_results(sql, {"success": 15, "blocked": 3, "failed": 2})  # block 15 %, success 75 %, 20 results
    outcome = await database.run(alarms.evaluate, settings)
    assert outcome["fired"] == 2
    firing = open_alerts(sql)
    assert set(firing) == {("block_rate", ""), ("success_rate", "")}
    row = sql.execute("SELECT value, threshold, severity, notified_at FROM v1_hub_alerts "
                      "WHERE rule = 'block_rate'").fetchone()
    assert row[0] == pytest.approx(0.15) and row[1] == pytest.approx(0.10)
    assert row[2] == "warning" and row[3] is None  # queued for notification

    # evaluated again: the same open alerts, refreshed, nothing new
    again = await database.run(alarms.evaluate, settings)
    assert again["fired"] == 0 and again["firing"] == 2 and open_alerts(sql) == firing

    # an hour and more later the window is empty: both resolve
    later = settings.model_copy(update={"clock_offset_seconds": 3700})
    cleared = await database.run(alarms.evaluate, later)
    assert cleared["resolved"] == 2 and open_alerts(sql) == {}
    statuses = sql.execute("SELECT status, resolved_at IS NOT NULL FROM v1_hub_alerts").fetchall()
    assert statuses == [("resolved", True), ("resolved", True)]


async def test_rate_rules_need_the_minimum_sample(sql, database, settings):
    add_results(sql, {"blocked": 19})  # 100 % blocked, but below the minimum of 20
    await database.run(alarms.evaluate, settings)
    assert open_alerts(sql) == {}
    add_results(sql, {"success": 1})
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == {("block_rate", ""), ("success_rate", "")}
    severity = sql.execute("SELECT severity FROM v1_hub_alerts WHERE rule = 'block_rate'").fetchone()[0]
    assert severity == "critical"  # 95 % is more than twice the threshold


async def test_rate_thresholds_are_settings(sql, database, db_url, tmp_path):
    add_results(sql, {"success": 15, "blocked": 3, "failed": 2})
    relaxed = make_settings(db_url, tmp_path, alarm_block_rate=0.2, alarm_success_rate=0.7, alarm_min_sample=5)
    await database.run(alarms.evaluate, relaxed)
    assert open_alerts(sql) == {}
    window = make_settings(db_url, tmp_path, alarm_window_seconds=120)  # results are 5 minutes old
    await database.run(alarms.evaluate, window)
    assert open_alerts(sql) == {}


async def test_client_offline_fires_per_client_and_resolves_when_seen(sql, database, settings):
    sql.execute("INSERT INTO v1_hub_clients (client_ip, client_name, first_seen_at, last_seen_at) VALUES "
                "('10.2.0.1', 'rack-a', now() - interval '3 hours', now() - interval '20 minutes'), "
                "('10.2.0.2', NULL, now() - interval '3 hours', now() - interval '1 minute'), "
                "('10.2.0.3', NULL, now() - interval '9 days', now() - interval '3 days')")
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == {("client_offline", "10.2.0.1")}
    message, flagged = sql.execute(
        "SELECT a.message, c.offline_alerted FROM v1_hub_alerts a JOIN v1_hub_clients c "
        "ON host(c.client_ip) = a.subject").fetchone()
    assert "10.2.0.1 (rack-a)" in message and flagged is True

    # the client comes back (through the ledger's own touch function): the alert resolves
    sql.execute("SELECT v1_hub_touch_client('10.2.0.1', now())")
    outcome = await database.run(alarms.evaluate, settings)
    assert outcome["resolved"] == 1 and open_alerts(sql) == {}


async def test_proxy_pool_near_exhaustion(sql, database, settings):
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses, use_count) "
                "SELECT '127.0.0.1', 3000 + g, 20, 20 FROM generate_series(1, 10) g")
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == {("proxy_pool", "")}
    sev, value = sql.execute("SELECT severity, value FROM v1_hub_alerts").fetchone()
    assert sev == "critical" and value == 0

    sql.execute("UPDATE v1_hub_proxies SET use_count = 0 WHERE port = 3001")  # 1 of 10: still below 10 %?
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == set()  # 10 % is not below the 10 % threshold
    sql.execute("UPDATE v1_hub_proxies SET use_count = 20")
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == {("proxy_pool", "")}
    assert sql.execute("SELECT count(*) FROM v1_hub_alerts").fetchone()[0] == 2  # a new episode


async def test_proxy_block_rate_per_proxy(sql, database, settings):
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 4001), ('127.0.0.1', 4002)")
    ids = [r[0] for r in sql.execute("SELECT id FROM v1_hub_proxies ORDER BY port")]
    add_results(sql, {"success": 10, "blocked": 10}, proxy_id=ids[0])
    add_results(sql, {"success": 200}, proxy_id=ids[1])  # keeps the fleet-wide rates healthy
    await database.run(alarms.evaluate, settings)
    assert set(open_alerts(sql)) == {("proxy_block_rate", f"proxy:{ids[0]}")}


async def test_concurrent_evaluations_never_duplicate_open_alerts(sql, database, settings):
    add_results(sql, {"success": 10, "blocked": 10})
    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) "
                "SELECT ('10.3.0.' || g)::inet, now() - interval '30 minutes' FROM generate_series(1, 20) g")
    for _ in range(3):
        await asyncio.wait_for(asyncio.gather(*(database.run(alarms.evaluate, settings) for _ in range(8))), 120)
    total, distinct = sql.execute("SELECT count(*), count(DISTINCT (rule, subject)) FROM v1_hub_alerts").fetchone()
    assert total == distinct == 22


def _cli(db_url: str, tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_ADMIN_KEY": ADMIN_KEY, "HUB_TIMEZONE": TIMEZONE,
                   "HUB_DATA_DIR": str(tmp_path / "cli"), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "workhub", "alerts", *args], env=environment, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120, check=False)


def test_two_processes_evaluating_keep_one_open_alert_each(sql, db_url, tmp_path):
    add_results(sql, {"success": 10, "blocked": 10})
    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) "
                "SELECT ('10.4.0.' || g)::inet, now() - interval '30 minutes' FROM generate_series(1, 5) g")
    script = ("import asyncio, sys\n"
              "from workhub.config import Settings\n"
              "from workhub.db.pool import Database\n"
              "from workhub.core import alarms\n"
              "async def main():\n"
              "    s = Settings(_env_file=None, pool_min=1, pool_max=4)\n"
              "    db = Database(s, s.database_url)\n"
              "    await db.pool.open(wait=True, timeout=30)\n"
              "    for _ in range(8):\n"
              "        await asyncio.gather(*(db.run(alarms.evaluate, s) for _ in range(3)))\n"
              "    await db.close()\n"
              "asyncio.run(main())\n")
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_TIMEZONE": TIMEZONE, "HUB_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
    rows = sql.execute("SELECT rule, subject, status FROM v1_hub_alerts ORDER BY rule, subject").fetchall()
    assert len(rows) == 7 and {r[2] for r in rows} == {"firing"}
    assert len({(r[0], r[1]) for r in rows}) == 7


def test_cli_evaluate_and_list_all(sql, db_url, tmp_path):
    add_results(sql, {"blocked": 20})
    evaluated = _cli(db_url, tmp_path, "evaluate")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "new: 2" in evaluated.stdout and "block_rate" in evaluated.stdout
    sql.execute("UPDATE v1_hub_work_results SET created_at = created_at - interval '2 hours'")
    resolved = _cli(db_url, tmp_path, "evaluate")
    assert "resolved: 2" in resolved.stdout
    everything = _cli(db_url, tmp_path, "--all")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.count("resolved") >= 2 and "success_rate" in everything.stdout


@pytest.fixture
def webhook():
    hook = WebhookReceiver()
    yield hook
    hook.close()


async def test_notifications_go_to_webhook_and_log_once(sql, database, db_url, tmp_path, webhook, caplog):
    settings = make_settings(db_url, tmp_path, alert_webhook_url=webhook.url)
    add_results(sql, {"success": 17, "blocked": 3})  # block rate fires, success rate (85 %) does not
    with caplog.at_level("INFO", logger="workhub.alarms"):
        outcome = await alarms.evaluate_and_notify(database, settings)
    assert outcome["notifications"] == {"claimed": 1, "sent": 1, "failed": 0}
    assert [b["event"] for b in webhook.bodies] == ["alert.firing"]
    assert webhook.bodies[0]["alert"]["rule"] == "block_rate"
    assert any("ALERT FIRING block_rate" in r.getMessage() for r in caplog.records)

    again = await alarms.evaluate_and_notify(database, settings)  # still firing: nothing new to send
    assert again["notifications"]["claimed"] == 0 and len(webhook.bodies) == 1

    webhook.status = 500  # a failing receiver: the resolution stays queued and is retried
    later = settings.model_copy(update={"clock_offset_seconds": 7200})
    failed = await alarms.evaluate_and_notify(database, later)
    assert failed["resolved"] == 1 and failed["notifications"]["failed"] == 1
    assert sql.execute("SELECT notified_at IS NULL FROM v1_hub_alerts").fetchone()[0] is True
    webhook.status = 200
    retried = await alarms.notify_pending(database, later)
    assert retried == {"claimed": 1, "sent": 1, "failed": 0}
    assert [b["event"] for b in webhook.bodies] == ["alert.firing", "alert.resolved", "alert.resolved"]
    assert webhook.bodies[-1]["alert"]["details"]["notify_failures"] == 1


async def test_list_alerts_filters_and_orders(sql, database, settings):
    add_results(sql, {"success": 17, "blocked": 3})
    await database.run(alarms.evaluate, settings)
    sql.execute("INSERT INTO v1_hub_alerts (rule, subject, status, message, fired_at, resolved_at) "
                "VALUES ('block_rate', '', 'resolved', 'old', now() - interval '1 day', now() - interval '20 hours')")
    everything = await database.run(alarms.list_alerts)
    assert [a["status"] for a in everything] == ["firing", "resolved"]
    assert [a["message"] for a in await database.run(alarms.list_alerts, "resolved")] == ["old"]
    assert len(await database.run(alarms.list_alerts, "firing", 10)) == 1
    assert isinstance(everything[0]["fired_at"], str)
