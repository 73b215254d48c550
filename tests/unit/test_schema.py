"""The schema against the operations guide (seed 000): every query of sections 3 and 6 runs unchanged."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from workhub.db import migrate

GUIDE = Path(__file__).resolve().parent.parent / "seeds" / "operations_guide.en.md"


def guide_queries(section: str) -> list[str]:
    """The ```sql blocks of one numbered section of the guide, verbatim."""
    text = GUIDE.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    body = next(s for s in sections if s.startswith(section + "."))
    blocks = re.findall(r"```sql\n(.*?)```", body, flags=re.DOTALL)
    statements = []
    for block in blocks:
        for stmt in block.split(";"):
            lines = [ln for ln in stmt.strip().splitlines() if ln.strip() and not ln.strip().startswith("--")]
            if lines:
                statements.append(stmt.strip() + ";")
    return statements


def test_guide_has_the_expected_queries():
    assert len(guide_queries("3")) == 4
    assert len(guide_queries("6")) == 5


def seed_sample(sql) -> dict:
    """Sample data through the protocol functions: 2 slots, 2 proxies, allocations and results today."""
    sql.execute(guide_queries("3")[0].replace("'2024-01-01'", "CURRENT_DATE - 1").replace(
        "'2024-01-31'", "CURRENT_DATE + 30"))
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('mouse', '777', CURRENT_DATE, CURRENT_DATE, 4)")
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('old', '1', CURRENT_DATE - 10, CURRENT_DATE - 5, 4)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', 3128, 20), "
                "('127.0.0.1', 3129, 20), ('127.0.0.1', 3130, 20)")
    sql.execute("UPDATE v1_hub_proxies SET use_count = 25, max_uses = 30 WHERE port = 3130")
    keys = []
    for ip, instance, folder in [("10.0.0.1", 1, 1), ("10.0.0.1", 2, 5), ("10.0.0.2", 1, 1)]:
        reply = sql.execute("SELECT v1_hub_allocate_work(%s, %s, %s, 3, now(), 300, 3)",
                            [ip, instance, folder]).fetchone()[0]
        assert reply["status"] == "allocated"
        keys += [(ip, a["allocation_key"]) for a in reply["allocations"]]
    outcomes = ["success", "success", "blocked", "failed", "success", "success", "success", "blocked", "failed"]
    for (ip, key), status in zip(keys, outcomes):
        reply = sql.execute(
            "SELECT v1_hub_submit_result(%s, %s, %s, 3, 1, %s, NULL, NULL, NULL, NULL, %s, now())",
            [key, status, 1000, "captcha" if status == "blocked" else None, ip]).fetchone()[0]
        assert reply["status"] == "accepted", reply
    return {"keys": keys, "outcomes": outcomes}


def test_section_3_queries_run_unchanged(sql):
    create, dashboard, per_client, settings_effect = guide_queries("3")
    sql.execute(create)  # verbatim: a January 2024 slot
    row = sql.execute("SELECT keyword, code, daily_work_count, block_thumbnail_cdn, is_active, pace "
                      "FROM v1_hub_work_slots").fetchone()
    assert row == ("노트북", "12345", 100, True, True, "asap")

    sql.execute("DELETE FROM v1_hub_audit_log")
    seed_sample(sql)
    rows = sql.execute(dashboard).fetchall()
    cols = [c.name for c in sql.execute(dashboard).description]
    by_code = {r[cols.index("code")]: dict(zip(cols, r)) for r in rows}
    # today's rows only: the January slot and the expired one have none
    assert set(by_code) == {"12345", "777"}
    assert all(r["work_date"] == sql.execute("SELECT CURRENT_DATE").fetchone()[0] for r in by_code.values())
    rates = [r[cols.index("completion_rate")] for r in rows]
    assert rates == sorted(rates, reverse=True)

    rows = sql.execute(per_client).fetchall()
    got = {str(r[0]): r for r in rows}
    assert set(got) == {"10.0.0.1", "10.0.0.2"}
    # 10.0.0.1: 2 allocate calls + 6 submits, instances 1 and 2, successes among its 6 results
    ip1 = got["10.0.0.1"]
    assert ip1[2] == 2 and ip1[3] == 8 and ip1[5] == 4
    assert float(ip1[4]) == 1000.0
    assert got["10.0.0.2"][5] == 1

    # settings effect needs >= 10 results per combination: add more, then compare with our own grouping
    for _ in range(8):
        reply = sql.execute("SELECT v1_hub_allocate_work('10.0.0.3', 1, 1, 1, now(), 300, 3)").fetchone()[0]
        key = reply["allocations"][0]["allocation_key"]
        sql.execute("SELECT v1_hub_submit_result(%s, 'success', 500, 1, 1, NULL, NULL, NULL, NULL, NULL, "
                    "'10.0.0.3', now())", [key])
    rows = sql.execute(settings_effect).fetchall()
    results = sql.execute("SELECT applied_cart_click, applied_block_mercury, applied_block_image_cdn, "
                          "applied_block_img1a_cdn, applied_block_thumbnail_cdn, status, execution_time_ms "
                          "FROM v1_hub_work_results").fetchall()
    groups: dict = {}
    for r in results:
        groups.setdefault(r[:5], []).append(r)
    expected = {k: (len(v), round(100.0 * sum(1 for x in v if x[5] == "success") / len(v), 6))
                for k, v in groups.items() if len(v) >= 10}
    assert expected, "the sample must have a combination with 10 results"
    assert {tuple(r[:5]): (r[5], round(float(r[7]), 6)) for r in rows} == expected
    assert [float(r[7]) for r in rows] == sorted((float(r[7]) for r in rows), reverse=True)


def test_section_6_queries_run_unchanged(sql):
    slots_q, tracking_q, proxies_q, blocks_q, client_q = guide_queries("6")
    seed_sample(sql)
    active = sql.execute(slots_q).fetchall()
    assert sorted(r[2] for r in active) == ["12345", "777"]  # code column; the old slot is out of range
    tracking = sql.execute(tracking_q).fetchall()
    assert len(tracking) == 2
    proxies = sql.execute(proxies_q).fetchall()
    assert len(proxies) == 2  # the third has used 25 of its 30
    blocks = sql.execute(blocks_q).fetchall()
    assert [(r[0], r[1], r[2]) for r in blocks] == [("captcha", 2, 2)]
    client = sql.execute(client_q.replace("'some IP'", "'10.0.0.1'")).fetchall()
    assert len(client) == 1
    ip, last_activity, instances, folders = client[0]
    assert str(ip) == "10.0.0.1" and instances == 2 and folders == 2
    assert isinstance(last_activity, datetime)


def test_dashboard_completion_rate(sql):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('k', 'c', CURRENT_DATE, CURRENT_DATE, 3)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 1)")
    assert sql.execute("SELECT init_daily_work_tracking()").fetchone()[0] == 1
    reply = sql.execute("SELECT v1_hub_allocate_work('10.0.0.9', 1, 1, 2, now(), 300, 3)").fetchone()[0]
    for a, status in zip(reply["allocations"], ["success", "failed"]):
        sql.execute("SELECT v1_hub_submit_result(%s, %s, 10, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, now())",
                    [a["allocation_key"], status])
    row = sql.execute("SELECT target_count, success_count, remaining_count, completion_rate "
                      "FROM v1_hub_work_dashboard WHERE work_date = CURRENT_DATE").fetchone()
    assert row[:3] == (3, 1, 2)
    assert float(row[3]) == pytest.approx(33.33)


def test_init_daily_work_tracking_is_idempotent(sql):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('a', '1', CURRENT_DATE, CURRENT_DATE + 1, 5), ('b', '2', CURRENT_DATE, CURRENT_DATE, 5)")
    sql.execute("UPDATE v1_hub_work_slots SET is_active = false WHERE keyword = 'b'")
    assert sql.execute("SELECT init_daily_work_tracking()").fetchone()[0] == 1
    assert sql.execute("SELECT init_daily_work_tracking()").fetchone()[0] == 0
    assert sql.execute("SELECT init_daily_work_tracking(CURRENT_DATE + 1)").fetchone()[0] == 1
    assert sql.execute("SELECT count(*) FROM v1_hub_daily_work_tracking").fetchone()[0] == 2


def test_audit_rows_carry_the_actor(sql):
    with sql.transaction():
        sql.execute("SELECT set_config('workhub.actor', 'site:7:shop', true)")
        sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                    "VALUES ('k', 'c', CURRENT_DATE, CURRENT_DATE, 3)")
    sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 9")
    sql.execute("INSERT INTO v1_hub_proxies (host, port, password) VALUES ('127.0.0.1', 1, 'hunter2')")
    sql.execute("UPDATE v1_hub_proxies SET use_count = 3")  # a counter: not audited
    sql.execute("UPDATE v1_hub_proxies SET max_uses = 9")  # configuration: audited
    rows = sql.execute("SELECT table_name, action, changed_by, old_data, new_data FROM v1_hub_audit_log "
                       "ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("v1_hub_work_slots", "INSERT", "site:7:shop"),
        ("v1_hub_work_slots", "UPDATE", "db:postgres"),
        ("v1_hub_proxies", "INSERT", "db:postgres"),
        ("v1_hub_proxies", "UPDATE", "db:postgres"),
    ]
    assert rows[1][3]["daily_work_count"] == 3 and rows[1][4]["daily_work_count"] == 9
    assert rows[2][4]["password"] == "***" and "hunter2" not in str(rows)


def test_timezone_is_the_hubs(sql, db_url):
    with psycopg.connect(db_url, autocommit=True) as plain:  # no TimeZone option: the database default
        assert plain.execute("SHOW TimeZone").fetchone()[0] == "Asia/Seoul"


def test_partitions_exist_for_this_and_next_period(sql):
    names = {r[0] for r in sql.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN "
        "('v1_hub_work_results', 'v1_hub_product_results', 'v1_hub_client_activity_logs')").fetchall()}
    today = sql.execute("SELECT CURRENT_DATE").fetchone()[0]
    nxt = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    for parent in ("v1_hub_work_results", "v1_hub_product_results"):
        assert f"{parent}_y{today:%Y}m{today:%m}" in names
        assert f"{parent}_y{nxt:%Y}m{nxt:%m}" in names
    week = today.isocalendar()
    assert f"v1_hub_client_activity_logs_y{week.year}w{week.week:02d}" in names
    # a row dated next month lands in its own partition, not the default one
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status) "
                "VALUES (%s, 1, %s, 'success')", [datetime.combine(nxt, datetime.min.time()).astimezone(), nxt])
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results_default").fetchone()[0] == 0


def test_migrate_twice_is_a_no_op(db_url):
    assert migrate.migrate(db_url, "Asia/Seoul") == []
    assert migrate.pending(db_url) == []
    states = migrate.status(db_url)
    assert states and all(m.applied_at for m in states)


def test_migrate_fresh_database_under_concurrency(pg_admin_url):
    """Two hub processes starting together: each migration is applied once."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import drop_database
    from workhub.db.urls import with_database

    name = f"whmig_{secrets.token_hex(3)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_admin_url, name)
    try:
        with ThreadPoolExecutor(3) as pool:
            applied = list(pool.map(lambda _: migrate.migrate(url, "Asia/Seoul"), range(3)))
        everything = [m.id for m in migrate.status(url)]
        assert sorted(sum(applied, [])) == sorted(everything)  # each applied exactly once
        assert migrate.pending(url) == []
    finally:
        drop_database(pg_admin_url, name)
