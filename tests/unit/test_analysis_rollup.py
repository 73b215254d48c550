"""The settings analysis (guide 3.4) read from its rollup (migration 0007): on data spanning several days,
once the closed days and today's closed steps are rolled up, the endpoint still returns exactly what
the guide's own query returns on the raw rows, and stays current."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from tests.unit.test_schema import guide_queries
from workhub.core import analysis, monitor

FLAGS = ("applied_cart_click", "applied_block_mercury", "applied_block_image_cdn", "applied_block_img1a_cdn",
         "applied_block_thumbnail_cdn")

# results spread from 9 days ago to a minute ago; NULL flags and NULL times, work_date != created day
# for some, all three statuses; plus rows exactly on and just before local midnights
SPREAD = """
INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, is_blocked, execution_time_ms,
    applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn,
    applied_block_thumbnail_cdn)
SELECT ts, 1, ts::date - (i %% 5 = 0)::int, (ARRAY['success', 'success', 'failed', 'blocked'])[1 + i %% 4],
       i %% 4 = 3, CASE WHEN i %% 9 = 0 THEN NULL ELSE 50 + (i * 37) %% 4000 END,
       CASE WHEN i %% 13 = 0 THEN NULL ELSE i %% 2 = 0 END, i %% 3 = 0, (i / 2) %% 2 = 0,
       CASE WHEN i %% 17 = 0 THEN NULL ELSE i %% 5 < 2 END, false
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT (CURRENT_DATE - 9)::timestamptz
                     + (now() - interval '1 minute' - (CURRENT_DATE - 9)::timestamptz) * i / %(n)s AS ts) t
"""
MIDNIGHTS = """
INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, execution_time_ms, applied_cart_click,
    applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn, applied_block_thumbnail_cdn)
SELECT (CURRENT_DATE - d)::timestamptz + off, 1, CURRENT_DATE - d, 'success', 10 * d, true, true, true, true, true
FROM generate_series(1, 8) AS d, unnest(ARRAY[interval '0', interval '-1 microsecond']) AS off
"""


@pytest.fixture(autouse=True)
def no_stale_cache():
    monitor.clear_cache()
    yield
    monitor.clear_cache()


def guide_3_4(sql, days: int = 7, min_sample: int = 10) -> dict:
    """The guide's query on the raw rows (verbatim for the defaults; else with the window and the minimum
    sample changed): {combination: (total, avg_time, success_rate)}."""
    guide = guide_queries("3")[-1]
    changed = guide.replace("INTERVAL '7 days'", f"INTERVAL '{days} days'").replace(
        "COUNT(*) >= 10", f"COUNT(*) >= {min_sample}")
    assert (changed == guide) == ((days, min_sample) == (7, 10))
    rows = sql.execute(changed).fetchall()
    return {tuple(r[:5]): (r[5], float(r[6]) if r[6] is not None else None, float(r[7])) for r in rows}


def mine(rows: list[dict]) -> dict:
    return {tuple(r[f] for f in FLAGS): (r["total"], r["avg_time"], r["success_rate"]) for r in rows}


def spans(sql) -> list[tuple]:
    return sql.execute("SELECT span_start, span_end, results FROM v1_hub_stats_settings_spans "
                       "ORDER BY span_start, span_end").fetchall()


async def test_rolled_up_days_give_the_guide_numbers(sql, database, settings):
    sql.execute(SPREAD, {"n": 4000})
    sql.execute(MIDNIGHTS)
    expected = guide_3_4(sql)
    assert len(expected) >= 8 and any(None in k for k in expected), "the data must have NULL combinations"
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results WHERE work_date <> created_at::date "
                       "AND created_at >= CURRENT_DATE - 7").fetchone()[0] > 0

    today = settings.work_date()
    midnight = datetime.combine(today, time.min, tzinfo=settings.tz)
    if settings.now() - midnight < timedelta(minutes=10):
        pytest.skip("yesterday is not rolled up until 5 minutes past midnight")
    rows = await database.run(analysis.settings_effect, settings)
    assert mine(rows) == expected  # the same rows and exactly the same numbers
    rates = [r["success_rate"] for r in rows]
    assert rates == sorted(rates, reverse=True)

    # the seven closed days are whole-day spans; today is rolled up to a step at least 5 minutes ago
    rolled = spans(sql)
    days = [s for s in rolled if s[1] - s[0] == timedelta(days=1)]
    assert [s[0] for s in days] == [midnight - timedelta(days=k) for k in range(7, 0, -1)]
    for start, end, results in days:
        raw = sql.execute("SELECT count(*) FROM v1_hub_work_results WHERE created_at >= %s AND created_at < %s",
                          [start, end]).fetchone()[0]
        assert results == raw > 0
    chain_end = max(s[1] for s in rolled)
    assert midnight <= chain_end <= settings.now() - timedelta(minutes=5)

    # those days are read from the rollup: changing it changes the answer
    key = (True, True, True, True, True)
    sql.execute("UPDATE v1_hub_stats_settings_by_span SET total = total + 1000, success_count = success_count + 1000 "
                "WHERE applied_cart_click AND applied_block_mercury AND applied_block_image_cdn "
                "AND applied_block_img1a_cdn AND applied_block_thumbnail_cdn "
                "AND span_id = (SELECT id FROM v1_hub_stats_settings_spans WHERE span_start = %s)",
                [midnight - timedelta(days=2)])
    tampered = mine(await database.run(analysis.settings_effect, settings, fresh=True))
    assert tampered[key][0] == expected[key][0] + 1000


async def test_rollup_stays_current_and_exact_for_other_windows(sql, database, settings):
    sql.execute(SPREAD, {"n": 3000})
    sql.execute(MIDNIGHTS)
    assert mine(await database.run(analysis.settings_effect, settings, 7, 1)) == guide_3_4(sql, 7, 1)
    before = spans(sql)

    # results arriving now land after the rolled-up part and are counted at once
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, execution_time_ms, "
                "applied_cart_click, applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn, "
                "applied_block_thumbnail_cdn) SELECT now() - interval '2 minutes', 1, CURRENT_DATE, 'failed', 7, "
                "false, false, false, false, true FROM generate_series(1, 25)")
    fresh = mine(await database.run(analysis.settings_effect, settings, 7, 1, fresh=True))
    assert fresh == guide_3_4(sql, 7, 1) and fresh[(False, False, False, False, True)][0] >= 25
    assert spans(sql) == before  # nothing new had closed

    # a shorter window reuses the same spans; its numbers are the guide's with the window changed
    three = mine(await database.run(analysis.settings_effect, settings, 3, 1))
    assert three == guide_3_4(sql, 3, 1) != guide_3_4(sql, 7, 1)
    assert spans(sql) == before
    # a longer one rolls up its first days and then goes on along the spans that are there
    nine = mine(await database.run(analysis.settings_effect, settings, 9, 1))
    assert nine == guide_3_4(sql, 9, 1) != guide_3_4(sql, 7, 1)
    assert spans(sql)[2:] == before and len(spans(sql)) == len(before) + 2

    # back-dated rows written by hand into a rolled-up day are not seen until the rollup is reset
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, applied_cart_click, "
                "applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn, "
                "applied_block_thumbnail_cdn) SELECT CURRENT_DATE - 3 + time '12:00', 1, CURRENT_DATE - 3, "
                "'success', true, false, true, false, true FROM generate_series(1, 5)")
    assert mine(await database.run(analysis.settings_effect, settings, 7, 1, fresh=True)) != guide_3_4(sql, 7, 1)
    sql.execute("SELECT v1_hub_settings_rollup_reset()")
    assert mine(await database.run(analysis.settings_effect, settings, 7, 1, fresh=True)) == guide_3_4(sql, 7, 1)


def test_steps_of_a_day_merge_when_it_closes(sql):
    """Drive the rollup with an explicit hub clock over a past day D: steps of 15 minutes while D is
    open, then one day span once D has closed (plus the lag); the chain always equals the raw rows."""
    sql.execute(SPREAD, {"n": 3000})
    d = sql.execute("SELECT CURRENT_DATE - 3").fetchone()[0]
    roll = "SELECT span_ids, chain_end FROM v1_hub_settings_rollup(%s::date::timestamptz, %s::timestamptz)"
    sums = ("SELECT {cols}, sum(total), sum(timed), sum(sum_execution_ms), sum(success_count), sum(blocked_count) "
            "FROM v1_hub_stats_settings_by_span WHERE span_id = ANY (%s) GROUP BY {cols}")
    raw = ("SELECT {cols}, count(*), count(execution_time_ms), coalesce(sum(execution_time_ms), 0), "
           "count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE is_blocked) "
           "FROM v1_hub_work_results WHERE created_at >= %s::date::timestamptz AND created_at < %s GROUP BY {cols}")
    cols = ", ".join(FLAGS)

    def at(clock: str):
        ids, end = sql.execute(roll, [d - timedelta(days=1), clock]).fetchone()
        got = sorted(sql.execute(sums.format(cols=cols), [ids]).fetchall(), key=lambda r: repr(r[:5]))
        want = sorted(sql.execute(raw.format(cols=cols), [d - timedelta(days=1), end]).fetchall(),
                      key=lambda r: repr(r[:5]))
        assert got == want and got
        return ids, end

    ids, end = at(f"{d} 10:07+09")  # 10:02 with the lag: steps up to 10:00
    # the day before D whole, and D up to 10:00 in one span so far
    assert end == datetime.fromisoformat(f"{d} 10:00+09:00") and len(ids) == 2
    assert at(f"{d} 10:19+09")[1] == end  # less than a step more has closed: nothing to do
    ids, end = at(f"{d} 23:59+09")
    assert len(ids) == 3 and end == datetime.fromisoformat(f"{d} 23:45+09:00")
    assert at(f"{d + timedelta(days=1)} 00:04+09")[1] == end  # closed, but not yet the lag past it
    ids, end = at(f"{d + timedelta(days=1)} 00:06+09")
    assert end == datetime.fromisoformat(f"{d + timedelta(days=1)} 00:00+09:00") and len(ids) == 2  # merged
    day = sql.execute("SELECT span_start, span_end FROM v1_hub_stats_settings_spans WHERE id = %s",
                      [max(ids)]).fetchone()
    assert day == (datetime.fromisoformat(f"{d} 00:00+09:00"), end)
    # the merged steps stay for an hour (a reader may have chosen them), then go
    assert len(spans(sql)) == 5
    at(f"{d + timedelta(days=1)} 01:10+09")
    assert [(s, e) for s, e, _ in spans(sql) if s.date() == d and e - s < timedelta(days=1)] == []
