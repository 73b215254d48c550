"""GET /api/monitor, the analysis endpoints and the alert endpoints over real HTTP."""

from __future__ import annotations

import pytest

from tests.unit.test_schema import guide_queries, seed_sample
from workhub.core import monitor


@pytest.fixture(autouse=True)
def no_stale_cache():
    monitor.clear_cache()
    yield
    monitor.clear_cache()


def test_monitor_needs_the_admin_key(anon):
    for path in ("/api/monitor", "/api/admin/analysis/clients", "/api/admin/alerts"):
        reply = anon.get(path)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"


def test_monitor_snapshot_follows_the_protocol(api, sql):
    empty = api.get("/api/monitor").json()
    assert empty["active_slots"] == 0 and empty["in_flight"] == 0
    assert empty["today"]["target"] == 0 and empty["alerts"] == {"firing": 0, "items": []}

    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('laptop', '12345', CURRENT_DATE, CURRENT_DATE + 1, 5), "
                "('mouse', '777', CURRENT_DATE, CURRENT_DATE, 5)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) SELECT '127.0.0.1', 3000 + g FROM generate_series(1, 4) g")
    sql.execute("INSERT INTO v1_hub_proxies (host, port, status) VALUES ('127.0.0.1', 3999, 'disabled')")
    sql.execute("INSERT INTO v1_hub_clients (client_ip, last_seen_at) VALUES ('10.5.0.1', now() - interval '1 hour')")
    leases = api.get("/api/allocate-work", params={"count": 4, "instance_number": 1}).json()["allocations"]
    assert len(leases) == 4
    for lease, status in zip(leases, ["success", "blocked", "failed"]):
        reply = api.post("/api/submit-result", json={"allocation_key": lease["allocation_key"], "status": status,
                                                     "execution_time_ms": 800})
        assert reply.status_code == 200

    snap = api.get("/api/monitor").json()
    assert snap["active_slots"] == 2 and snap["in_flight"] == 1
    assert snap["clients"]["online"] == 1 and snap["clients"]["total"] == 2  # the loopback caller and the idle one
    today = snap["today"]
    assert (today["target"], today["success"], today["failed"], today["blocked"], today["in_flight"]) == (10, 1, 1, 1, 1)
    assert today["completion_rate"] == 10.0 and today["work_date"] == sql.execute("SELECT CURRENT_DATE").fetchone()[0].isoformat()
    proxies = snap["proxies"]
    assert proxies["total"] == 5 and proxies["disabled"] == 1
    assert {"available", "exhausted", "cooldown", "utilisation"} <= set(proxies)


def test_analysis_endpoints_match_the_guide(api, sql):
    seed_sample(sql)
    per_client = guide_queries("3")[2]
    expected = {str(r[0]): (r[2], r[3], r[5]) for r in sql.execute(per_client).fetchall()}
    body = api.get("/api/admin/analysis/clients").json()
    assert {c["client_ip"]: (c["active_instances"], c["today_tasks"], c["successes"]) for c in body["clients"]} == expected

    blocks = api.get("/api/admin/analysis/blocks", params={"hours": 2}).json()
    expected_blocks = [(r[0], r[1], r[2]) for r in sql.execute(guide_queries("6")[3]).fetchall()]
    assert [(b["block_type"], b["count"], b["affected_clients"]) for b in blocks["block_types"]] == expected_blocks

    effect = api.get("/api/admin/analysis/settings", params={"min_sample": 1}).json()
    assert sum(c["total"] for c in effect["combinations"]) == 9 and effect["min_sample"] == 1
    assert api.get("/api/admin/analysis/settings").json()["combinations"] == []  # below the guide's 10

    trends = api.get("/api/admin/analysis/trends", params={"days": 3}).json()["trends"]
    assert len(trends) == 3 and trends[-1]["success"] == 5

    slot_id = sql.execute("SELECT id FROM v1_hub_work_slots WHERE code = '777'").fetchone()[0]
    ranks = api.get(f"/api/admin/analysis/slots/{slot_id}/ranks").json()
    assert ranks["slot_id"] == slot_id and isinstance(ranks["history"], list)
    missing = api.get("/api/admin/analysis/slots/999999/ranks")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "slot_not_found"
    assert api.get("/api/admin/analysis/trends", params={"days": 0}).status_code == 422


def test_alert_endpoints(api, sql):
    sql.execute("INSERT INTO v1_hub_work_results (created_at, slot_id, work_date, status, is_blocked) "
                "SELECT now(), 1, CURRENT_DATE, CASE WHEN g <= 5 THEN 'blocked' ELSE 'success' END, g <= 5 "
                "FROM generate_series(1, 30) g")
    outcome = api.post("/api/admin/alerts/evaluate").json()
    assert outcome["fired"] == 1 and outcome["notifications"]["claimed"] == 1
    alerts = api.get("/api/admin/alerts", params={"status": "firing"}).json()["alerts"]
    assert [a["rule"] for a in alerts] == ["block_rate"]
    one = api.get(f"/api/admin/alerts/{alerts[0]['id']}").json()
    assert one["status"] == "firing" and one["value"] == pytest.approx(5 / 30, abs=1e-6)
    assert api.get("/api/admin/alerts/99999").status_code == 404
    assert api.get("/api/admin/alerts", params={"status": "bogus"}).status_code == 422
    snap = api.get("/api/monitor").json()
    assert snap["alerts"]["firing"] == 1 and snap["alerts"]["items"][0]["rule"] == "block_rate"
