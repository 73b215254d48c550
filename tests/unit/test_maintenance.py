"""Maintenance jobs over a real database: roll-over, retention (moves, never losses), rollups, partitions,
client counters. The hub clock is shifted through settings (clock_offset_seconds), never mocked."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import make_settings
from workhub.core import maintenance
from workhub.scheduler import run_due

SEOUL = ZoneInfo("Asia/Seoul")


def at_clock(db_url, tmp_path, instant: datetime, **overrides):
    """Settings whose hub clock reads ``instant`` now."""
    offset = (instant - datetime.now(UTC)).total_seconds()
    return make_settings(db_url, tmp_path, clock_offset_seconds=offset, **overrides)


def add_slot(sql, start: date, end: date, target: int = 5) -> int:
    return sql.execute(
        "INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
        "VALUES ('laptop', '12345', %s, %s, %s) RETURNING id", [start, end, target]).fetchone()[0]


def table_digest(sql, table: str, columns: str, where: str = "true") -> tuple[int, str]:
    return sql.execute(f"SELECT count(*), coalesce(md5(string_agg(row({columns})::text, ',' ORDER BY id)), '') "
                       f"FROM {table} WHERE {where}").fetchone()


async def test_midnight_rollover_in_seoul(database, db_url, sql, tmp_path):
    day = datetime.now(SEOUL).date() + timedelta(days=3)
    slot = add_slot(sql, day - timedelta(days=1), day + timedelta(days=5))
    before_midnight = at_clock(db_url, tmp_path, datetime.combine(day, datetime.min.time(), SEOUL)
                               + timedelta(hours=23, minutes=59, seconds=30))
    runs = await run_due(database, before_midnight, ("midnight",))
    assert [r["scheduled_for"] for r in runs] == [datetime.combine(day, datetime.min.time(), SEOUL)]

    # 00:00:05 in Seoul is still the previous day in UTC: the new work date must be Seoul's
    after_midnight = at_clock(db_url, tmp_path, datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                                                 SEOUL) + timedelta(seconds=5))
    assert after_midnight.now().date() == day  # UTC date
    runs = await run_due(database, after_midnight, ("midnight",))
    assert len(runs) == 1 and runs[0]["status"] == "ok", runs
    assert runs[0]["scheduled_for"] == datetime.combine(day + timedelta(days=1), datetime.min.time(), SEOUL)
    assert runs[0]["rows_affected"]["init_daily_work_tracking"] == {
        "work_date": (day + timedelta(days=1)).isoformat(), "rows_created": 1}
    rows = sql.execute("SELECT work_date, target_count FROM v1_hub_daily_work_tracking WHERE slot_id = %s "
                       "ORDER BY work_date", [slot]).fetchall()
    assert rows == [(day, 5), (day + timedelta(days=1), 5)]
    # the same slot is never run twice
    assert await run_due(database, after_midnight, ("midnight",)) == []
    assert sql.execute("SELECT count(*) FROM v1_hub_maintenance_runs WHERE job = 'midnight'").fetchone()[0] == 2


def test_due_slots_follow_the_hub_time_zone(settings):
    s = settings.model_copy(update={"maintenance_hour": 3})
    now = datetime(2026, 3, 1, 17, 30, 42, tzinfo=UTC)  # Monday 2 March 02:30:42 in Seoul
    slots = maintenance.due_slots(now, s)
    assert slots["minute"] == datetime(2026, 3, 2, 2, 30, tzinfo=SEOUL)
    assert slots["midnight"] == datetime(2026, 3, 2, 0, 0, tzinfo=SEOUL)
    assert slots["daily"] == datetime(2026, 3, 1, 3, 0, tzinfo=SEOUL)  # today's 03:00 has not come yet
    assert slots["weekly"] == datetime(2026, 2, 23, 3, 0, tzinfo=SEOUL)  # Monday before
    assert slots["monthly"] == datetime(2026, 3, 1, 3, 0, tzinfo=SEOUL)
    # 1 March 02:30 in Seoul: this month's slot has not come yet, so February's is the latest
    assert maintenance.due_slots(now - timedelta(days=1), s)["monthly"] == datetime(2026, 2, 1, 3, 0, tzinfo=SEOUL)
    later = maintenance.due_slots(now + timedelta(hours=1), s)
    assert later["daily"] == datetime(2026, 3, 2, 3, 0, tzinfo=SEOUL)
    assert later["weekly"] == datetime(2026, 3, 2, 3, 0, tzinfo=SEOUL)
    assert later["monthly"] == datetime(2026, 3, 1, 3, 0, tzinfo=SEOUL)


async def test_daily_job_moves_aged_rows_to_the_archives(database, settings, sql):
    now = settings.now()
    today = now.astimezone(SEOUL).date()
    slot = add_slot(sql, today - timedelta(days=60), today + timedelta(days=5))
    old_day, recent_day = today - timedelta(days=40), today - timedelta(days=10)
    for d in (old_day, recent_day):
        sql.execute("INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, allocated_count, "
                    "success_count) VALUES (%s, %s, 5, 2, 2)", [slot, d])
    for age_days, status in ((10, "submitted"), (10, "expired"), (10, "allocated"), (8, "released"),
                             (2, "submitted")):
        sql.execute(
            "INSERT INTO v1_hub_work_allocations (allocation_key, slot_id, tracking_id, work_date, client_ip, "
            "settings, status, allocated_at, expires_at) VALUES (gen_random_uuid(), %s, 1, %s, '127.0.0.2', "
            "'{\"cart_click_enabled\": false}', %s, %s, %s)",
            [slot, (now - timedelta(days=age_days)).date(), status, now - timedelta(days=age_days),
             now - timedelta(days=age_days) + timedelta(minutes=5)])
    for ip, age in (("127.0.0.3", 40), ("127.0.0.4", 1)):
        sql.execute("INSERT INTO v1_hub_clients (client_ip, first_seen_at, last_seen_at, request_count) "
                    "VALUES (%s, %s, %s, 7)", [ip, now - timedelta(days=age + 5), now - timedelta(days=age)])
    sql.execute("INSERT INTO v1_hub_external_triggers (trigger_type, created_at) VALUES ('slot_create', %s), "
                "('slot_create', %s)", [now - timedelta(days=120), now])

    alloc_cols = "id, allocation_key, slot_id, status, allocated_at, settings"
    old_allocs = table_digest(sql, "v1_hub_work_allocations", alloc_cols,
                              f"allocated_at < '{now - timedelta(days=7)}' AND status <> 'allocated'")
    totals = {t: sql.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("v1_hub_work_allocations", "v1_hub_daily_work_tracking", "v1_hub_clients",
                        "v1_hub_external_triggers")}

    run = await maintenance.run_job(database, settings, "daily")
    assert run["status"] == "ok", run
    rows = run["rows_affected"]
    assert rows["archive_allocations"] == 3  # the lease still 'allocated' stays
    assert rows["archive_tracking"] == 1 and rows["archive_clients"] == 1
    assert rows["archive_external_triggers"] == 1 and rows["analyze"] == "ok"

    for table, total in totals.items():  # rows moved, never lost or doubled
        live = sql.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        archived = sql.execute(f"SELECT count(*) FROM {table}_archive").fetchone()[0]
        assert live + archived == total, table
    assert table_digest(sql, "v1_hub_work_allocations_archive", alloc_cols) == old_allocs
    assert sql.execute("SELECT array_agg(status ORDER BY status) FROM v1_hub_work_allocations").fetchone()[0] \
        == ["allocated", "submitted"]
    assert sql.execute("SELECT work_date FROM v1_hub_daily_work_tracking_archive").fetchall() == [(old_day,)]
    assert sql.execute("SELECT host(client_ip), request_count FROM v1_hub_clients_archive").fetchall() \
        == [("127.0.0.3", 7)]
    # a second run finds nothing more to move
    again = await maintenance.run_job(database, settings, "daily")
    assert again["rows_affected"]["archive_allocations"] == 0 and again["rows_affected"]["archive_tracking"] == 0


async def test_weekly_rollups_survive_archiving(database, db_url, settings, sql, tmp_path):
    now = settings.now()
    today = now.astimezone(SEOUL).date()
    day = today - timedelta(days=35)
    slot = add_slot(sql, day, today)
    sql.execute("INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, allocated_count, "
                "success_count, blocked_count) VALUES (%s, %s, 5, 4, 3, 1)", [slot, day])
    created = datetime.combine(day, datetime.min.time(), SEOUL) + timedelta(hours=10)
    for status, ms, rank, cart in (("success", 1000, 4, True), ("success", 2000, 2, True),
                                   ("success", 3000, 6, False), ("blocked", 500, None, False)):
        sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, client_ip, status, "
                    "is_blocked, execution_time_ms, rank, applied_cart_click, applied_block_mercury, "
                    "applied_block_image_cdn, applied_block_img1a_cdn, applied_block_thumbnail_cdn) "
                    "VALUES (%s, %s, %s, '127.0.0.5', %s, %s, %s, %s, %s, false, false, false, false)",
                    [created, slot, day, status, status == "blocked", ms, rank, cart])
    sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, instance_number, action, "
                "status) VALUES (%s, '127.0.0.5', 1, 'allocate', 'allocated'), "
                "(%s, '127.0.0.5', 2, 'allocate', 'allocated')", [created, created])
    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) VALUES ('127.0.0.9', %s)",
                [now - timedelta(days=9)])
    s = make_settings(db_url, tmp_path, stats_rollup_days=40)

    slot_stats = "SELECT target_count, allocated_count, success_count, blocked_count, results, " \
                 "avg_execution_ms, best_rank, avg_rank FROM v1_hub_stats_daily_slot WHERE work_date = %s"
    run = await maintenance.run_job(database, s, "weekly")
    assert run["status"] == "ok", run
    first = sql.execute(slot_stats, [day]).fetchall()
    assert first == [(5, 4, 3, 1, 4, 1625.0, 2, 4.0)]
    settings_stats = sql.execute(
        "SELECT applied_cart_click, total, success_count, blocked_count, sum_execution_ms "
        "FROM v1_hub_stats_daily_settings WHERE work_date = %s ORDER BY 1", [day]).fetchall()
    assert settings_stats == [(False, 2, 1, 1, 3500), (True, 2, 2, 0, 3000)]
    client = sql.execute("SELECT requests, results, success_count, blocked_count, active_instances "
                         "FROM v1_hub_stats_daily_client WHERE work_date = %s", [day]).fetchall()
    assert client == [(2, 4, 3, 1, 2)]
    report = run["rows_affected"]["inactive_clients"]
    assert report["count"] == 1 and report["clients"][0]["client_ip"] == "127.0.0.9"

    # raw tracking rows move to the archive; the rollup is unchanged and can still be recomputed
    await maintenance.run_job(database, s, "daily")
    assert sql.execute("SELECT count(*) FROM v1_hub_daily_work_tracking WHERE work_date = %s",
                       [day]).fetchone()[0] == 0
    assert sql.execute(slot_stats, [day]).fetchall() == first
    await maintenance.run_job(database, s, "weekly")
    assert sql.execute(slot_stats, [day]).fetchall() == first


async def test_monthly_partitions_ahead_and_old_partitions_archived(database, db_url, sql, tmp_path):
    s = make_settings(db_url, tmp_path, partitions_months_ahead=3, partitions_weeks_ahead=3)
    now = s.now()
    old = now - timedelta(days=200)
    sql.execute("SELECT v1_hub_ensure_partitions(%s, 0, 0)", [old])
    for i in range(3):
        rid = sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status) "
                          "VALUES (%s, 1, %s, 'success') RETURNING id", [old, old.date()]).fetchone()[0]
        sql.execute("INSERT INTO v1_hub_product_results (created_at, result_id, slot_id, work_date, code) "
                    "VALUES (%s, %s, 1, %s, 'p1')", [old, rid, old.date()])
        sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, action) "
                    "VALUES (%s, '127.0.0.6', 'submit')", [old])
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status) "
                "VALUES (%s, 1, %s, 'failed')", [now, now.date()])
    digest = table_digest(sql, "v1_hub_work_results", "id, created_at, status")

    run = await maintenance.run_job(database, s, "monthly")
    assert run["status"] == "ok", run
    rows = run["rows_affected"]
    assert rows["archive_work_results"]["rows"] == 3 and rows["archive_work_results"]["partitions"] == 1
    assert rows["archive_product_results"]["rows"] == 3
    assert rows["archive_client_activity_logs"]["rows"] == 3

    live = sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0]
    archived = sql.execute("SELECT count(*) FROM v1_hub_work_results_archive").fetchone()[0]
    assert (live, archived) == (1, 3)
    both = sql.execute("SELECT count(*), md5(string_agg(row(id, created_at, status)::text, ',' ORDER BY id)) "
                       "FROM (SELECT * FROM v1_hub_work_results UNION ALL "
                       "SELECT * FROM v1_hub_work_results_archive) r").fetchone()
    assert both == digest
    month = old.astimezone(SEOUL)
    assert sql.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NULL",
                       [f"v1_hub_work_results_archive_y{month:%Y}m{month:%m}",
                        f"v1_hub_work_results_y{month:%Y}m{month:%m}"]).fetchone() == (True, True)
    assert sql.execute("SELECT count(*) FROM v1_hub_client_activity_logs_archive").fetchone()[0] == 3

    # partitions exist ahead of time: a result three months out lands in its own monthly partition
    ahead = (now.astimezone(SEOUL).replace(day=1) + timedelta(days=95)).replace(day=2)
    part = sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status) "
                       "VALUES (%s, 1, %s, 'success') RETURNING tableoid::regclass::text",
                       [ahead, ahead.date()]).fetchone()[0]
    assert part == f"v1_hub_work_results_y{ahead:%Y}m{ahead:%m}"
    week = (now + timedelta(weeks=3)).astimezone(SEOUL)
    part = sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, action) "
                       "VALUES (%s, '127.0.0.6', 'allocate') RETURNING tableoid::regclass::text",
                       [week]).fetchone()[0]
    assert part.startswith("v1_hub_client_activity_logs_y") and part != "v1_hub_client_activity_logs_default"
    # idempotent: nothing more to move, nothing more to create
    again = await maintenance.run_job(database, s, "monthly")
    assert again["rows_affected"]["ensure_partitions"] == 0
    assert again["rows_affected"]["archive_work_results"]["partitions"] == 0


async def test_minute_job_expires_leases_and_counts_client_activity(database, db_url, settings, sql, tmp_path):
    now = settings.now()
    today = now.astimezone(SEOUL).date()
    slot = add_slot(sql, today, today)
    tracking = sql.execute("INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, "
                           "allocated_count, in_flight_count) VALUES (%s, %s, 5, 1, 1) RETURNING id",
                           [slot, today]).fetchone()[0]
    sql.execute("INSERT INTO v1_hub_work_allocations (allocation_key, slot_id, tracking_id, work_date, client_ip, "
                "settings, allocated_at, expires_at) VALUES (gen_random_uuid(), %s, %s, %s, '127.0.0.7', '{}', "
                "%s, %s)", [slot, tracking, today, now - timedelta(minutes=10), now - timedelta(minutes=5)])
    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) VALUES ('127.0.0.7', %s)", [now])
    logs = [(now - timedelta(minutes=5), "allocate", "allocated", {"allocated": 3}),
            (now - timedelta(minutes=4), "allocate", "no_work", {}),
            (now - timedelta(minutes=3), "submit", "success", {}),
            (now - timedelta(minutes=3), "submit", "blocked", {}),
            (now - timedelta(seconds=10), "submit", "success", {})]  # too fresh: counted next time
    for at, action, status, detail in logs:
        sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, action, status, detail) "
                    "VALUES (%s, '127.0.0.7', %s, %s, %s::jsonb)", [at, action, status, __import__("json").dumps(detail)])

    run = await maintenance.run_job(database, settings, "minute")
    assert run["rows_affected"]["expire_leases"] == 1
    assert run["rows_affected"]["client_counters"]["clients"] == 1
    # the settings analysis' roll-up advanced too: it has spans (closed past days) to read
    assert run["rows_affected"]["settings_rollup"] >= 1
    assert sql.execute("SELECT in_flight_count, expired_count FROM v1_hub_daily_work_tracking WHERE id = %s",
                       [tracking]).fetchone() == (0, 1)
    counters = "SELECT request_count, allocation_count, result_count, success_count FROM v1_hub_clients " \
               "WHERE client_ip = '127.0.0.7'"
    assert sql.execute(counters).fetchone() == (2, 3, 2, 1)
    # a later run counts only what is new: the fresh row, once
    later = at_clock(db_url, tmp_path, now + timedelta(minutes=2))
    await maintenance.run_job(database, later, "minute")
    await maintenance.run_job(database, later, "minute")
    assert sql.execute(counters).fetchone() == (2, 3, 3, 2)
    recorded = sql.execute("SELECT count(*), bool_and(finished_at IS NOT NULL) FROM v1_hub_maintenance_runs "
                           "WHERE job = 'minute'").fetchone()
    assert recorded == (3, True)


async def test_unknown_job_is_refused(database, settings):
    from workhub.errors import HubError

    try:
        await maintenance.run_job(database, settings, "hourly")
    except HubError as exc:
        assert exc.code == "unknown_job"
    else:
        raise AssertionError("an unknown job ran")
