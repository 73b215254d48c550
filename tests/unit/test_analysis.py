"""Analysis against the operations guide: on the same data each function returns the numbers of the
guide's own query (run verbatim), and the rollups take over for days whose raw rows are archived."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.unit.test_schema import guide_queries, seed_sample
from workhub.core import analysis, monitor
from workhub.errors import HubError


@pytest.fixture(autouse=True)
def no_stale_cache():
    monitor.clear_cache()
    yield
    monitor.clear_cache()


def _num(value) -> float | None:
    return None if value is None else round(float(value), 6)


def extra_results(sql, n: int = 8, ip: str = "10.0.0.3") -> None:
    for _ in range(n):
        reply = sql.execute("SELECT v1_hub_allocate_work(%s, 1, 1, 1, now(), 300, 3)", [ip]).fetchone()[0]
        key = reply["allocations"][0]["allocation_key"]
        sql.execute("SELECT v1_hub_submit_result(%s, 'success', 500, 1, 1, NULL, NULL, NULL, NULL, NULL, "
                    "%s, now())", [key, ip])


async def test_client_performance_equals_guide_3_3(sql, database, settings):
    seed_sample(sql)
    extra_results(sql, 2)
    _, _, per_client, _ = guide_queries("3")
    cur = sql.execute(per_client)
    cols = [c.name for c in cur.description]
    expected = {str(r[0]): {k: v for k, v in zip(cols, r)} for r in cur.fetchall()}
    got = {r["client_ip"]: r for r in await database.run(analysis.client_performance, settings)}
    assert set(got) == set(expected) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    for ip, row in expected.items():
        mine = got[ip]
        assert (mine["client_name"], mine["active_instances"], mine["today_tasks"], mine["successes"]) == \
               (row["client_name"], row["active_instances"], row["today_tasks"], row["successes"])
        assert _num(mine["avg_time"]) == _num(row["avg_time"])
    assert got["10.0.0.1"]["results"] == 6 and got["10.0.0.1"]["success_rate"] == pytest.approx(66.67)
    # another day has nothing
    assert await database.run(analysis.client_performance, settings, settings.work_date() - timedelta(days=3)) == []


async def test_client_performance_of_an_archived_day_comes_from_the_rollup(sql, database, settings):
    day = settings.work_date() - timedelta(days=40)
    sql.execute("INSERT INTO v1_hub_stats_daily_client (work_date, client_ip, requests, results, success_count, "
                "failed_count, blocked_count, active_instances, avg_execution_ms) "
                "VALUES (%s, '10.9.0.1', 30, 25, 20, 3, 2, 4, 1500.0)", [day])
    rows = await database.run(analysis.client_performance, settings, day)
    assert len(rows) == 1
    row = rows[0]
    assert (row["client_ip"], row["today_tasks"], row["successes"], row["active_instances"]) == ("10.9.0.1", 55, 20, 4)
    assert row["success_rate"] == 80.0


async def test_settings_effect_equals_guide_3_4(sql, database, settings):
    seed_sample(sql)
    extra_results(sql, 8)
    # a combination with fewer than 10 results, and results older than the window
    sql.execute("UPDATE v1_hub_work_slots SET cart_click_enabled = true WHERE code = '777'")
    extra_results(sql, 3, ip="10.0.0.4")
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, applied_cart_click, "
                "applied_block_mercury, applied_block_image_cdn, applied_block_img1a_cdn, "
                "applied_block_thumbnail_cdn, execution_time_ms) "
                "SELECT CURRENT_DATE - 9, 1, CURRENT_DATE - 9, 'failed', false, false, false, false, true, 10 "
                "FROM generate_series(1, 50)")
    *_, guide = guide_queries("3")
    expected = [(tuple(r[:5]), r[5], _num(r[6]), _num(r[7])) for r in sql.execute(guide).fetchall()]
    assert expected, "the sample must have a combination with 10 results"
    rows = await database.run(analysis.settings_effect, settings)
    got = [((r["applied_cart_click"], r["applied_block_mercury"], r["applied_block_image_cdn"],
             r["applied_block_img1a_cdn"], r["applied_block_thumbnail_cdn"]), r["total"], _num(r["avg_time"]),
            _num(r["success_rate"])) for r in rows]
    assert got == expected
    # the minimum sample is a parameter
    smaller = await database.run(analysis.settings_effect, settings, 7, 3)
    assert len(smaller) == len(rows) + 1
    with pytest.raises(HubError):
        await database.run(analysis.settings_effect, settings, 0)


async def test_settings_effect_combines_rollups_for_archived_days(sql, database, settings):
    seed_sample(sql)
    extra_results(sql, 8)
    live = {(r["applied_cart_click"], r["applied_block_thumbnail_cdn"]): r
            for r in await database.run(analysis.settings_effect, settings, 7, 1)}
    old_day = settings.work_date() - timedelta(days=settings.retain_results_days + 5)
    sql.execute("INSERT INTO v1_hub_stats_daily_settings VALUES (%s, false, false, false, false, true, "
                "100, 50, 10, 200000)", [old_day])
    combined = {(r["applied_cart_click"], r["applied_block_thumbnail_cdn"]): r
                for r in await database.run(analysis.settings_effect, settings,
                                            settings.retain_results_days + 10, 1)}
    key = (False, True)
    before = live[key]
    after = combined[key]
    assert after["total"] == before["total"] + 100
    successes = before["success_rate"] * before["total"] / 100 + 50
    assert after["success_rate"] == pytest.approx(100 * successes / after["total"])
    assert after["avg_time"] == pytest.approx((before["avg_time"] * before["total"] + 200000) / after["total"])


async def test_block_types_equal_guide_6(sql, database, settings):
    seed_sample(sql)
    # a blocked result from two days ago is outside both windows
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, client_ip, status, is_blocked, "
                "block_type) VALUES (now() - interval '2 days', 1, CURRENT_DATE - 2, '10.0.0.9', 'blocked', true, "
                "'old')")
    guide = guide_queries("6")[3]
    expected = sorted((r[0], r[1], r[2]) for r in sql.execute(guide).fetchall())
    rows = await database.run(analysis.block_types, settings)
    assert sorted((r["block_type"], r["count"], r["affected_clients"]) for r in rows) == expected
    assert sorted(rows[0]["clients"]) == ["10.0.0.1", "10.0.0.2"]
    assert rows[0]["share_of_results"] == pytest.approx(round(100 * 2 / 9, 2))
    wide = await database.run(analysis.block_types, settings, 72)
    assert {r["block_type"] for r in wide} == {"captcha", "old"}


async def test_rank_history_per_day(sql, database, settings):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('laptop', 'P1', CURRENT_DATE - 40, CURRENT_DATE, 10)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 3128)")
    slot_id = sql.execute("SELECT id FROM v1_hub_work_slots").fetchone()[0]
    for rank in (9, 4, 6):
        reply = sql.execute("SELECT v1_hub_allocate_work('10.0.0.1', 1, 1, 1, now(), 300, 3)").fetchone()[0]
        key = reply["allocations"][0]["allocation_key"]
        products = f'[{{"code": "P1", "rank": {rank}, "page": 1}}, {{"code": "OTHER", "rank": 1}}]'
        sql.execute("SELECT v1_hub_submit_result(%s, 'success', 100, %s, 1, NULL, NULL, NULL, %s::jsonb, NULL, "
                    "'10.0.0.1', now())", [key, rank, products])
    # an archived day, known only from the rollup
    sql.execute("INSERT INTO v1_hub_stats_daily_slot (work_date, slot_id, results, best_rank, avg_rank) "
                "VALUES (CURRENT_DATE - 35, %s, 12, 3, 5.5)", [slot_id])
    rows = await database.run(analysis.rank_history, settings, slot_id, 40)
    today = settings.work_date().isoformat()
    assert [(r["work_date"], r["samples"], r["best_rank"], r["avg_rank"], r["last_rank"], r["source"])
            for r in rows] == [
        ((settings.work_date() - timedelta(days=35)).isoformat(), 12, 3, 5.5, None, "rollup"),
        (today, 3, 4, pytest.approx(6.33), 6, "products")]
    assert len(await database.run(analysis.rank_history, settings, slot_id, 30)) == 1
    with pytest.raises(HubError) as err:
        await database.run(analysis.rank_history, settings, slot_id + 100)
    assert err.value.status == 404


async def test_daily_trends_fill_the_window(sql, database, settings):
    seed_sample(sql)
    old_day = settings.work_date() - timedelta(days=5)
    sql.execute("INSERT INTO v1_hub_stats_daily_slot (work_date, slot_id, target_count, success_count, "
                "failed_count) VALUES (%s, 1, 10, 7, 3), (%s, 2, 10, 10, 0)", [old_day, old_day])
    rows = await database.run(analysis.daily_trends, settings, 7)
    assert len(rows) == 7 and rows[-1]["work_date"] == settings.work_date().isoformat()
    today = rows[-1]
    expected = sql.execute("SELECT sum(target_count), sum(success_count), sum(failed_count), sum(blocked_count) "
                           "FROM v1_hub_daily_work_tracking WHERE work_date = CURRENT_DATE").fetchone()
    assert (today["target"], today["success"], today["failed"], today["blocked"]) == tuple(int(x) for x in expected)
    assert today["completion_rate"] == round(100 * expected[1] / expected[0], 2) and today["source"] == "live"
    old = rows[1]
    assert (date.fromisoformat(old["work_date"]), old["target"], old["success"], old["completion_rate"],
            old["source"]) == (old_day, 20, 17, 85.0, "rollup")
    assert rows[0]["target"] == 0 and rows[0]["source"] is None


async def test_statistics_are_cached_until_cleared_or_bypassed(sql, database, settings):
    seed_sample(sql)
    first = await database.run(analysis.block_types, settings)
    sql.execute("UPDATE v1_hub_work_results SET block_type = 'changed' WHERE is_blocked")
    assert await database.run(analysis.block_types, settings) == first  # cached for 5 minutes
    fresh = await database.run(analysis.block_types, settings, fresh=True)
    assert [r["block_type"] for r in fresh] == ["changed"]
    sql.execute("UPDATE v1_hub_work_results SET block_type = 'again' WHERE is_blocked")
    monitor.clear_cache()
    assert [r["block_type"] for r in await database.run(analysis.block_types, settings)] == ["again"]
    uncached = settings.model_copy(update={"cache_stats_seconds": 0})
    sql.execute("UPDATE v1_hub_work_results SET block_type = 'live' WHERE is_blocked")
    assert [r["block_type"] for r in await database.run(analysis.block_types, uncached)] == ["live"]
