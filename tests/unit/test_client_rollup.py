"""The per-client analysis (guide 3.3) read from its day rollup (migration 0009): for a closed day and for
today, after several roll-ups with rows arriving in between, the reader returns exactly what the raw
query returns; a day without a mark is read raw; rolling is idempotent; the minute job keeps yesterday
and today current and the monthly job drops the rollup of days whose logs leave."""

from __future__ import annotations

import threading
import time as clock
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.conftest import make_settings
from tests.unit.test_schema import guide_queries
from workhub.core import analysis, maintenance, monitor
from workhub.db import queries as q

SEOUL = ZoneInfo("Asia/Seoul")

# the guide's 3.3 for one day [day 00:00, day + 1 00:00) with the endpoint's extra columns
RAW = """
SELECT c.client_ip,
       c.client_name,
       COUNT(DISTINCT al.instance_number) AS active_instances,
       COUNT(*) AS today_tasks,
       AVG(al.execution_time_ms) AS avg_time,
       SUM(CASE WHEN al.status = 'success' THEN 1 ELSE 0 END) AS successes,
       COUNT(*) FILTER (WHERE al.status = 'failed') AS failures,
       COUNT(*) FILTER (WHERE al.status = 'blocked') AS blocks,
       COUNT(*) FILTER (WHERE al.action = 'submit') AS results,
       MAX(al.reported_at) AS last_activity,
       c.last_seen_at
FROM v1_hub_clients c
JOIN v1_hub_client_activity_logs al ON c.client_ip = al.client_ip
WHERE al.reported_at >= %(day)s::date::timestamptz AND al.reported_at < (%(day)s::date + 1)::timestamptz
GROUP BY c.client_ip, c.client_name, c.last_seen_at
ORDER BY today_tasks DESC, c.client_ip
"""

# n rows evenly over [start, end): four clients (10.1.0.9 is not a registered client), instances 1-4 and
# NULL, NULL times, every action and status; `seed` shifts the mix so batches differ
LOGS = """
INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, instance_number, action, status,
                                         execution_time_ms)
SELECT %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (i - 1) / %(n)s,
       (ARRAY['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.9']::inet[])[1 + (i * 7 + %(seed)s) %% 4],
       CASE WHEN (i + %(seed)s) %% 5 = 0 THEN NULL ELSE 1 + (i / 4 + %(seed)s) %% 4 END,
       (ARRAY['allocate', 'submit', 'submit', 'extend', 'release', 'submit', 'allocate'])[1 + i %% 7],
       (ARRAY['allocated', 'success', 'failed', 'blocked', 'ok', NULL, 'success', 'no_work', 'duplicate',
              'success', 'failed'])[1 + (i + %(seed)s) %% 11],
       CASE WHEN i %% 3 = 0 THEN NULL ELSE 40 + (i * 37 + %(seed)s) %% 5000 END
FROM generate_series(1, %(n)s) AS i
"""


@pytest.fixture(autouse=True)
def no_stale_cache():
    monitor.clear_cache()
    yield
    monitor.clear_cache()


@pytest.fixture
def clients(sql):
    sql.execute("INSERT INTO v1_hub_clients (client_ip, client_name) VALUES ('10.1.0.1', 'alpha'), "
                "('10.1.0.2', 'beta'), ('10.1.0.3', NULL)")


def midnight(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=SEOUL)


def logs(sql, start: datetime, end: datetime, n: int, seed: int) -> None:
    sql.execute(LOGS, {"start": start, "end": end, "n": n, "seed": seed})


def raw(sql, day) -> list[tuple]:
    return sql.execute(RAW, {"day": day}).fetchall()


def reader(sql, day) -> list[tuple]:
    """The hub's named query, on a read-only transaction (it must never write)."""
    with sql.transaction():
        sql.execute("SET TRANSACTION READ ONLY")
        return sql.execute(q.sql("analysis_client_performance"), {"day": day}).fetchall()


def roll(sql, day, now: datetime) -> tuple:
    return sql.execute("SELECT rolled_until, log_rows FROM v1_hub_client_day_rollup(%s, %s)", [day, now]).fetchone()


def rollup_rows(sql) -> list[tuple]:
    return sql.execute("SELECT * FROM v1_hub_client_day_rollup ORDER BY day_start, client_ip, instance_number"
                       ).fetchall()


def log_count(sql, start: datetime, end: datetime) -> int:
    return sql.execute("SELECT count(*) FROM v1_hub_client_activity_logs WHERE reported_at >= %s "
                       "AND reported_at < %s", [start, end]).fetchone()[0]


def assert_same(sql, day) -> list[tuple]:
    """Exactly the raw query's rows (numeric avg_time equal to the last digit), and a meaningful case."""
    expected = raw(sql, day)
    assert reader(sql, day) == expected
    assert {str(r[0]) for r in expected} == {"10.1.0.1", "10.1.0.2", "10.1.0.3"}
    assert all(r[4] is not None and r[2] >= 4 for r in expected)   # timed rows, NULL + several instances
    return expected


def at_clock(db_url, tmp_path, instant: datetime):
    return make_settings(db_url, tmp_path, clock_offset_seconds=(instant - datetime.now(UTC)).total_seconds())


def test_closed_day_rolled_up_in_steps_gives_the_raw_numbers(sql, clients, settings):
    day = settings.work_date() - timedelta(days=3)
    start, end = midnight(day), midnight(day + timedelta(days=1))
    logs(sql, start, start + timedelta(hours=10), 3000, 1)
    # the day's edges: its first instant is in, its last too; the neighbours' are out
    for at in (start - timedelta(microseconds=1), start, end - timedelta(microseconds=1), end):
        sql.execute("INSERT INTO v1_hub_client_activity_logs (reported_at, client_ip, instance_number, action, "
                    "status, execution_time_ms) VALUES (%s, '10.1.0.1', 9, 'submit', 'success', 7)", [at])
    assert_same(sql, day)   # no mark yet: all raw
    assert sql.execute("SELECT count(*) FROM v1_hub_client_day_marks").fetchone()[0] == 0

    mark = start + timedelta(hours=10)
    assert roll(sql, day, mark + timedelta(minutes=7)) == (mark, log_count(sql, start, mark))
    assert rollup_rows(sql) and log_count(sql, start, mark) > 3000
    assert_same(sql, day)

    # rows arrive after the mark: read raw on top of the rollup, then rolled up in their turn
    logs(sql, mark, start + timedelta(hours=18), 2000, 2)
    assert_same(sql, day)
    second = start + timedelta(hours=18, minutes=15)
    assert roll(sql, day, second + timedelta(minutes=5)) == (second, log_count(sql, mark, second))
    assert_same(sql, day)
    logs(sql, second, end, 1500, 3)
    assert_same(sql, day)
    # 4 minutes past midnight the day is not closed yet (lag 5 minutes): the last full step only
    assert roll(sql, day, end + timedelta(minutes=4))[0] == end - timedelta(minutes=15)
    assert_same(sql, day)
    assert roll(sql, day, end + timedelta(minutes=6))[0] == end
    expected = assert_same(sql, day)

    # one rollup row per (client, instance): NULL instances were merged across rolls, not duplicated
    keys = [(r[1], r[2]) for r in rollup_rows(sql)]
    assert len(keys) == len(set(keys)) and any(k[1] is None for k in keys)
    assert sum(r[3] for r in rollup_rows(sql)) == log_count(sql, start, end)

    # closed: rolling again changes nothing
    before = rollup_rows(sql)
    assert roll(sql, day, end + timedelta(hours=3)) == (end, 0)
    assert rollup_rows(sql) == before
    # the reader really takes the day from the rollup: without the raw rows it still has every number
    sql.execute("DELETE FROM v1_hub_client_activity_logs WHERE reported_at >= %s AND reported_at < %s",
                [start, end])
    assert raw(sql, day) == []
    assert reader(sql, day) == expected


async def test_today_through_the_minute_job(sql, clients, database, db_url, tmp_path):
    # the hub clock at 14:37:13 today (Seoul), whatever the time of the test run
    t = datetime.combine(datetime.now(SEOUL).date(), time(14, 37, 13), tzinfo=SEOUL)
    s = at_clock(db_url, tmp_path, t)
    today = s.work_date()
    yesterday = today - timedelta(days=1)
    logs(sql, midnight(yesterday) + timedelta(hours=20), midnight(today), 500, 4)
    logs(sql, midnight(today), t - timedelta(minutes=1), 4000, 5)

    run = await maintenance.run_job(database, s, "minute")
    step = run["rows_affected"]["client_rollup"]
    mark = midnight(today) + timedelta(hours=14, minutes=30)
    assert step == {
        yesterday.isoformat(): {"rolled_until": midnight(today).isoformat(), "log_rows": 500},
        today.isoformat(): {"rolled_until": mark.isoformat(), "log_rows": log_count(sql, midnight(today), mark)}}
    expected = assert_same(sql, today)
    got = await database.run(analysis.client_performance, s, fresh=True)
    assert_endpoint(got, expected)
    # the guide's query verbatim (today: `reported_at >= CURRENT_DATE`), its six columns
    guide = {str(r[0]): r for r in sql.execute(guide_queries("3")[2]).fetchall()}
    assert {r["client_ip"]: (r["client_name"], r["active_instances"], r["today_tasks"], r["successes"])
            for r in got} == {ip: (r[1], r[2], r[3], r[5]) for ip, r in guide.items()}
    assert all(r["avg_time"] == pytest.approx(float(guide[r["client_ip"]][4]), rel=1e-12) for r in got)

    # more rows come in; the next minute runs roll on (yesterday: nothing more)
    logs(sql, t - timedelta(minutes=1), t + timedelta(minutes=30), 1000, 6)
    later = at_clock(db_url, tmp_path, t + timedelta(minutes=31))
    step = (await maintenance.run_job(database, later, "minute"))["rows_affected"]["client_rollup"]
    assert step[yesterday.isoformat()]["log_rows"] == 0
    assert step[today.isoformat()] == {"rolled_until": (mark + timedelta(minutes=30)).isoformat(),
                                       "log_rows": log_count(sql, mark, mark + timedelta(minutes=30))}
    again = (await maintenance.run_job(database, later, "minute"))["rows_affected"]["client_rollup"]
    assert again[today.isoformat()]["log_rows"] == 0
    expected = assert_same(sql, today)
    assert_endpoint(await database.run(analysis.client_performance, later, fresh=True), expected)


def assert_endpoint(got: list[dict], expected: list[tuple]) -> None:
    """The core function's rows (JSON-plain: float avg_time, ISO times) against the raw query's."""
    assert [r["client_ip"] for r in got] == [str(r[0]) for r in expected]
    for mine, row in zip(got, expected):
        assert (mine["client_name"], mine["active_instances"], mine["today_tasks"], mine["successes"],
                mine["failures"], mine["blocks"], mine["results"], mine["last_activity"]) == \
               (row[1], row[2], row[3], row[5], row[6], row[7], row[8], row[9].isoformat())
        assert mine["avg_time"] == pytest.approx(float(row[4]), rel=1e-12)


def test_a_day_without_mark_is_read_raw_and_never_written(sql, clients, settings):
    day = settings.work_date() - timedelta(days=5)
    logs(sql, midnight(day), midnight(day) + timedelta(hours=23), 2500, 7)
    assert_same(sql, day)
    assert sql.execute("SELECT count(*) FROM v1_hub_client_day_marks").fetchone()[0] == 0
    # a mark cut in another TimeZone is not this day's: still read raw, still exact
    with psycopg.connect(sql.info.dsn, autocommit=True, options="-c TimeZone=UTC") as utc:
        assert utc.execute("SELECT log_rows FROM v1_hub_client_day_rollup(%s, now())", [day]).fetchone()[0] > 0
    assert sql.execute("SELECT count(*) FROM v1_hub_client_day_marks").fetchone()[0] == 1
    assert_same(sql, day)
    # reset: the day is read raw again, and rolls up again from its start
    roll(sql, day, midnight(day) + timedelta(hours=12))
    assert sql.execute("SELECT v1_hub_client_day_rollup_reset(%s)", [day]).fetchone()[0] == 1
    assert sql.execute("SELECT count(*) FROM v1_hub_client_day_rollup r JOIN v1_hub_client_day_marks m "
                       "USING (day_start) WHERE m.day_start = %s", [midnight(day)]).fetchone()[0] == 0
    assert_same(sql, day)
    assert roll(sql, day, midnight(day) + timedelta(days=2)) == (
        midnight(day + timedelta(days=1)), log_count(sql, midnight(day), midnight(day + timedelta(days=1))))
    assert_same(sql, day)


def test_rolls_that_have_nothing_to_do(sql, clients, settings):
    today = settings.work_date()
    day = today - timedelta(days=2)
    logs(sql, midnight(day), midnight(day) + timedelta(hours=6), 600, 8)
    # a day that has not begun (or whose first step has not closed) gets no mark
    assert roll(sql, today + timedelta(days=2), settings.now()) == (midnight(today + timedelta(days=2)), 0)
    assert roll(sql, day, midnight(day) + timedelta(minutes=19)) == (midnight(day), 0)
    assert sql.execute("SELECT count(*) FROM v1_hub_client_day_marks").fetchone()[0] == 0

    mark = midnight(day) + timedelta(hours=3)
    assert roll(sql, day, mark + timedelta(minutes=5)) == (mark, 300)
    state = rollup_rows(sql), sql.execute("SELECT * FROM v1_hub_client_day_marks").fetchall()
    # the same clock, a clock inside the lag, an older clock: no change at all (not even rolled_at)
    for now in (mark + timedelta(minutes=5), mark + timedelta(minutes=19), mark - timedelta(hours=1)):
        assert roll(sql, day, now) == (mark, 0)
        assert (rollup_rows(sql), sql.execute("SELECT * FROM v1_hub_client_day_marks").fetchall()) == state
    assert_same(sql, day)


def test_concurrent_rollers_count_each_row_once(sql, clients, settings, db_url):
    day = settings.work_date() - timedelta(days=4)
    logs(sql, midnight(day), midnight(day) + timedelta(hours=20), 2000, 9)
    assert roll(sql, day, midnight(day) + timedelta(hours=10, minutes=5))[1] == 1000   # the mark exists
    now = midnight(day) + timedelta(days=1, minutes=10)
    first = psycopg.connect(db_url, options="-c TimeZone=Asia/Seoul")
    try:
        assert roll(first, day, now)[1] == 1000          # in an open transaction: holds the lock
        second: list = []
        other = threading.Thread(target=lambda: second.append(roll(sql, day, now)))
        other.start()
        clock.sleep(0.5)
        assert other.is_alive()                          # waits for the first roller
        first.commit()
        other.join(10)
        assert second == [(midnight(day + timedelta(days=1)), 0)]
    finally:
        first.close()
    assert sum(r[3] for r in rollup_rows(sql)) == 2000
    assert_same(sql, day)


async def test_monthly_job_drops_the_rollup_of_days_whose_logs_leave(sql, clients, database, db_url, tmp_path):
    s = make_settings(db_url, tmp_path)
    old_day = s.work_date() - timedelta(weeks=s.retain_activity_log_weeks + 2)
    recent = s.work_date() - timedelta(days=1)
    sql.execute("SELECT v1_hub_ensure_partitions(%s, 0, 0)", [midnight(old_day)])
    for day, seed in ((old_day, 10), (recent, 11)):
        logs(sql, midnight(day), midnight(day) + timedelta(hours=20), 400, seed)
        assert roll(sql, day, midnight(day) + timedelta(days=1, minutes=6))[1] == 400
    run = await maintenance.run_job(database, s, "monthly")
    assert run["rows_affected"]["prune_client_rollup"] == 1
    assert run["rows_affected"]["archive_client_activity_logs"]["rows"] >= 400
    assert [r[0] for r in sql.execute("SELECT day_start FROM v1_hub_client_day_marks").fetchall()] == \
           [midnight(recent)]
    assert {r[0] for r in rollup_rows(sql)} == {midnight(recent)}
    # the archived day is not served from a rollup any more (the weekly rollup has nothing for it)
    assert await database.run(analysis.client_performance, s, old_day, fresh=True) == []
    assert_same(sql, recent)
