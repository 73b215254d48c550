"""The closed days' totals behind the trend charts (migration 0008): exact whatever changes a closed day,
never touched by today's rows, and safe against a change that races the recompute."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import psycopg
import pytest

from tests.conftest import TIMEZONE
from workhub.core import analysis

DAYS = 12


def live_sums(sql, today) -> dict:
    """What the trend must show per day: the sums over every tracking row, straight from the table."""
    rows = sql.execute(
        "SELECT work_date, count(*), sum(target_count), sum(allocated_count), sum(success_count), "
        "sum(failed_count), sum(blocked_count), sum(expired_count), sum(released_count) "
        "FROM v1_hub_daily_work_tracking WHERE work_date > %s - %s GROUP BY work_date",
        [today, DAYS]).fetchall()
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


async def trend(database, settings) -> dict:
    rows = await database.run(analysis.daily_trends, settings, days=DAYS, fresh=True)
    fields = ("slots", "target", "allocated", "success", "failed", "blocked", "expired", "released")
    return {date.fromisoformat(str(r["work_date"])): tuple(r[f] for f in fields) for r in rows if r["slots"]}


def totals(sql) -> dict:
    return dict(sql.execute("SELECT work_date, stale FROM v1_hub_daily_totals").fetchall())


@pytest.fixture
def history(sql, settings):
    """Three slots with a ledger row for each of the last 10 days and today, all counts different."""
    today = settings.work_date()
    slots = [sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                         "VALUES (%s, 'C', %s, %s, 50) RETURNING id", [f"kw{i}", today - timedelta(days=20), today]
                         ).fetchone()[0] for i in range(3)]
    for back in range(11):
        for i, slot in enumerate(slots):
            success, failed, blocked = back + i, i, (back * i) % 3
            sql.execute("INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, allocated_count,"
                        " success_count, failed_count, blocked_count) VALUES (%s, %s, 50, %s, %s, %s, %s) "
                        "ON CONFLICT (slot_id, work_date) DO UPDATE SET allocated_count = EXCLUDED.allocated_count, "
                        "success_count = EXCLUDED.success_count, failed_count = EXCLUDED.failed_count, "
                        "blocked_count = EXCLUDED.blocked_count",
                        [slot, today - timedelta(days=back), success + failed + blocked, success, failed, blocked])
    return today, slots


async def test_trends_stay_exact_through_every_change_to_a_closed_day(database, settings, sql, history):
    today, slots = history
    assert await trend(database, settings) == live_sums(sql, today)   # nothing summed yet: all live

    # the days from two days back are closed: summed once
    assert await database.run(analysis.refresh_daily_totals, settings) == 9
    assert totals(sql) == {today - timedelta(days=back): False for back in range(2, 11)}
    assert await trend(database, settings) == live_sums(sql, today)
    assert await database.run(analysis.refresh_daily_totals, settings) == 0   # nothing new, nothing done

    # the chart reads the stored totals (a wrong stored figure would show) ...
    five_back = today - timedelta(days=5)
    sql.execute("UPDATE v1_hub_daily_totals SET success = success + 1000 WHERE work_date = %s", [five_back])
    assert (await trend(database, settings))[five_back][3] == live_sums(sql, today)[five_back][3] + 1000
    sql.execute("UPDATE v1_hub_daily_totals SET success = success - 1000 WHERE work_date = %s", [five_back])

    # ... and a change to that day (a late result, an archive, a hand edit) makes it live again at once
    sql.execute("UPDATE v1_hub_daily_work_tracking SET success_count = success_count + 1, "
                "allocated_count = allocated_count + 1 WHERE slot_id = %s AND work_date = %s", [slots[0], five_back])
    assert totals(sql)[five_back] is True
    assert await trend(database, settings) == live_sums(sql, today)
    sql.execute("DELETE FROM v1_hub_daily_work_tracking WHERE slot_id = %s AND work_date = %s",
                [slots[1], today - timedelta(days=7)])
    assert totals(sql)[today - timedelta(days=7)] is True
    assert await trend(database, settings) == live_sums(sql, today)

    # the recompute brings exactly the stale days back
    assert await database.run(analysis.refresh_daily_totals, settings) == 2
    assert not any(totals(sql).values())
    assert await trend(database, settings) == live_sums(sql, today)


async def test_a_new_row_for_a_closed_day_marks_it(database, settings, sql, history):
    today, _ = history
    await database.run(analysis.refresh_daily_totals, settings)
    extra = sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                        "VALUES ('late', 'L', %s, %s, 7) RETURNING id", [today - timedelta(days=20), today]
                        ).fetchone()[0]
    sql.execute("INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count) VALUES (%s, %s, 7)",
                [extra, today - timedelta(days=4)])
    assert totals(sql)[today - timedelta(days=4)] is True
    assert await trend(database, settings) == live_sums(sql, today)


async def test_todays_ledger_never_touches_the_totals(database, settings, sql, history):
    today, _ = history
    await database.run(analysis.refresh_daily_totals, settings)
    before = sql.execute("SELECT work_date, computed_at, xmin::text FROM v1_hub_daily_totals ORDER BY 1").fetchall()
    for back in (0, 1):   # today and yesterday: the rows the ledger moves all day
        sql.execute("UPDATE v1_hub_daily_work_tracking SET success_count = success_count + 1, "
                    "allocated_count = allocated_count + 1 WHERE work_date = %s", [today - timedelta(days=back)])
    after = sql.execute("SELECT work_date, computed_at, xmin::text FROM v1_hub_daily_totals ORDER BY 1").fetchall()
    assert after == before   # not even a new row version
    assert await trend(database, settings) == live_sums(sql, today)


def _in_thread(url: str, query: str, params: list) -> threading.Thread:
    def work():
        with psycopg.connect(url, autocommit=True, options=f"-c TimeZone={TIMEZONE}") as conn:
            conn.execute(query, params)
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _wait_until_blocked(url: str, query_like: str) -> None:
    with psycopg.connect(url, autocommit=True) as watch:
        for _ in range(400):   # bounded: at most ~20 s
            if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND query LIKE %s", [query_like]).fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"nothing waited on a lock: {query_like}")


async def test_a_change_racing_the_recompute_is_never_lost(database, settings, sql, db_url, history):
    today, slots = history
    await database.run(analysis.refresh_daily_totals, settings)
    five_back = today - timedelta(days=5)
    options = f"-c TimeZone={TIMEZONE}"
    bump = ("UPDATE v1_hub_daily_work_tracking SET success_count = success_count + 1, "
            "allocated_count = allocated_count + 1 WHERE slot_id = %s AND work_date = %s")

    # 1. a change in flight when the recompute starts: the recompute waits for it, then counts it
    sql.execute(bump, [slots[2], five_back])   # stale now
    with psycopg.connect(db_url, options=options) as writer:
        writer.execute(bump, [slots[2], five_back])   # holds the day's totals row until commit
        done = _in_thread(db_url, "SELECT v1_hub_refresh_daily_totals(%s, %s)",
                          [today - timedelta(days=30), today - timedelta(days=1)])
        _wait_until_blocked(db_url, "SELECT v1_hub_refresh_daily_totals%")
        writer.commit()
        done.join(timeout=30)
    assert not done.is_alive()
    assert totals(sql)[five_back] is False
    assert await trend(database, settings) == live_sums(sql, today)

    # 2. a change that comes while the recompute holds the day: it waits, then marks the day stale
    sql.execute(bump, [slots[2], five_back])
    with psycopg.connect(db_url, options=options) as refresher:
        refresher.execute("SELECT v1_hub_refresh_daily_totals(%s, %s)",
                          [today - timedelta(days=30), today - timedelta(days=1)])
        late = _in_thread(db_url, bump, [slots[1], five_back])
        _wait_until_blocked(db_url, "UPDATE v1_hub_daily_work_tracking%")
        refresher.commit()
        late.join(timeout=30)
    assert not late.is_alive()
    assert totals(sql)[five_back] is True
    assert await trend(database, settings) == live_sums(sql, today)
