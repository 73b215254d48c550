"""GET /metrics: figures move with traffic, route templates (not raw paths) label requests, and the
counts stay right with several worker processes (multiprocess mode)."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_KEY


def scrape(client) -> dict[tuple, float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels) -> float:
    """Sum over every series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def test_metrics_move_as_traffic_flows(api, anon, sql):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('laptop', '12345', CURRENT_DATE, CURRENT_DATE, 3)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 3128), ('127.0.0.1', 3129)")
    before = scrape(anon)
    assert value(before, "workhub_database_up") == 1
    assert value(before, "workhub_active_slots") == 1 and value(before, "workhub_proxies", state="total") == 2

    leases = api.get("/api/allocate-work", params={"count": 3}).json()["allocations"]
    assert api.get("/api/allocate-work").json()["status"] == "no_work"
    api.post("/api/submit-result", json={"allocation_key": leases[0]["allocation_key"], "status": "success",
                                         "execution_time_ms": 100})
    api.post("/api/submit-result", json={"allocation_key": leases[0]["allocation_key"], "status": "success",
                                         "execution_time_ms": 100})  # duplicate
    api.post("/api/submit-result", json={"allocation_key": leases[1]["allocation_key"], "status": "blocked",
                                         "execution_time_ms": 100})
    api.get("/api/v1/slots/123456")  # a path with an id: labelled by its template
    after = scrape(anon)

    route = "/api/allocate-work"
    assert total(after, "workhub_http_requests_total", route=route) - total(before, "workhub_http_requests_total", route=route) == 2
    assert value(after, "workhub_http_request_duration_seconds_count", method="GET", route=route) >= 2
    # per-process counters live as long as the process: compare with the scrape before the traffic
    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("workhub_allocate_replies_total", status="no_work", reason="daily_quota_reached") == 1
    assert delta("workhub_allocate_replies_total", status="allocated", reason="") == 1
    assert delta("workhub_submit_outcomes_total", outcome="accepted") == 2
    assert delta("workhub_submit_outcomes_total", outcome="duplicate") == 1
    assert delta("workhub_packages_allocated_total") == 3
    assert value(after, "workhub_ledger_today", figure="success") == 1
    assert value(after, "workhub_ledger_today", figure="blocked") == 1
    assert value(after, "workhub_in_flight_allocations") == 1
    assert abs(value(after, "workhub_ledger_today_completion_ratio") - 1 / 3) < 0.01
    raw_paths = {dict(ls).get("route") for (n, ls) in after if n == "workhub_http_requests_total"}
    assert "/api/v1/slots/123456" not in raw_paths and "/api/v1/slots/{slot_id}" in raw_paths
    assert total(after, "workhub_db_connections") >= 1
    assert total(after, "workhub_db_pool_connections", state="size") >= 1


def test_worker_outcomes_are_counted_from_the_routes(anon, sql):
    """allocate and submit outcomes come from the routes (no reply body is parsed): every kind is counted
    once, and submits answered with an error status count as outcome "error"."""
    # a keyword and a code that look like the key the package counter looks for: never counted
    sql.execute("""INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count)
                   VALUES ('x "allocation_key": y', 'allocation_key', CURRENT_DATE, CURRENT_DATE, 3)""")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 3128), ('127.0.0.1', 3129)")
    before = scrape(anon)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    leases = anon.get("/api/allocate-work", params={"count": 3}).json()["allocations"]
    assert len(leases) == 3
    assert anon.post("/api/allocate-work", json={"count": 5}).json()["reason"] == "daily_quota_reached"
    assert anon.get("/api/allocate-work", params={"count": 0}).status_code == 422  # not an allocate reply

    def key(i: int) -> str:
        return leases[i]["allocation_key"]

    result = {"status": "success", "execution_time_ms": 100}
    assert anon.post("/api/submit-result", json={"allocation_key": key(0), **result}).json()["status"] == "accepted"
    again = anon.post("/api/submit-result", json={"allocation_key": key(0), **result})
    assert again.json() == {"status": "duplicate", "result_id": again.json()["result_id"], "counted": True}
    unknown = "00000000-0000-4000-8000-000000000000"
    assert anon.post("/api/submit-result", json={"allocation_key": unknown, **result}).status_code == 404
    assert anon.post("/api/submit-result", json={"allocation_key": key(1), "status": "nope"}).status_code == 422
    assert anon.post(f"/api/allocations/{key(2)}/release", json={}).status_code == 200
    assert anon.post("/api/submit-result", json={"allocation_key": key(2), **result}).status_code == 409
    batch = anon.post("/api/submit-results", json={"results": [
        {"allocation_key": key(1), **result}, {"allocation_key": unknown, **result},
        {"allocation_key": key(0), **result}]})
    assert [o["status"] for o in batch.json()["results"]] == ["accepted", "error", "duplicate"]
    assert anon.post("/api/submit-results", json={"results": []}).status_code == 422  # a rejected batch: one error
    after = scrape(anon)

    assert delta("workhub_allocate_replies_total", status="allocated", reason="") == 1
    assert delta("workhub_allocate_replies_total", status="no_work", reason="daily_quota_reached") == 1
    assert sum(v for (n, _), v in after.items() if n == "workhub_allocate_replies_total") \
        - sum(v for (n, _), v in before.items() if n == "workhub_allocate_replies_total") == 2
    assert delta("workhub_packages_allocated_total") == 3
    assert delta("workhub_submit_outcomes_total", outcome="accepted") == 2
    assert delta("workhub_submit_outcomes_total", outcome="duplicate") == 2
    assert delta("workhub_submit_outcomes_total", outcome="error") == 5  # 404, 422, 409, batch item, batch
    assert delta("workhub_submit_outcomes_total", outcome="late") == 0
    route = "/api/submit-result"
    assert total(after, "workhub_http_requests_total", route=route, status="404") \
        - total(before, "workhub_http_requests_total", route=route, status="404") == 1


def test_allocate_outcome_from_the_reply_text():
    from workhub.api.metrics import allocate_outcome

    # json_build_object's spacing ("key" : value), as v1_hub_allocate_work prints it: the counting path
    package = ('{"allocation_key" : "3f1c9a4e-8a43-4f51-9d65-2f7f4cf3b2a1", "expires_at" : "x", '
               '"work_date" : "2024-01-01", "slot" : {"id" : 1, "keyword" : "a \\"allocation_key\\" : b", '
               '"code" : "allocation_key"}, "settings" : {}, "proxy" : {"id" : 2}}')
    packages = ", ".join([package] * 50)
    assert allocate_outcome('{"status" : "allocated", "allocations" : [' + packages + ']}') == ("allocated", "", 50)
    assert allocate_outcome('{"reason": "no_proxy_available", "status": "no_work", "allocations": [], '
                            '"retry_after_seconds": 15}') == ("no_work", "no_proxy_available", 0)
    # another key order (a different server) is parsed
    assert allocate_outcome('{"allocations": [' + package + '], "status": "allocated"}') == ("allocated", "", 1)


def test_metrics_report_alerts_and_job_runs(anon, sql):
    sql.execute("INSERT INTO v1_hub_alerts (rule, subject, severity, message) VALUES "
                "('client_offline', '10.0.0.1', 'warning', 'x'), ('client_offline', '10.0.0.2', 'warning', 'y')")
    sql.execute("INSERT INTO v1_hub_maintenance_runs (job, status, finished_at) VALUES "
                "('minute', 'ok', now()), ('minute', 'ok', now()), ('daily', 'failed', now())")
    samples = scrape(anon)
    assert value(samples, "workhub_alerts_firing", rule="client_offline", severity="warning") == 2
    assert value(samples, "workhub_maintenance_runs_total", job="minute", status="ok") == 2
    assert value(samples, "workhub_maintenance_runs_total", job="daily", status="failed") == 1
    assert value(samples, "workhub_maintenance_last_finished_timestamp_seconds", job="minute", status="ok") > 0


def test_metrics_sum_across_worker_processes(hub_processes, tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (hub,) = hub_processes(1, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    with httpx.Client(base_url=hub.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        # readiness polling already hit /readyz; count it too, then make our own requests
        before = total(scrape(client), "workhub_http_requests_total", route="/healthz")
        for _ in range(40):  # a new connection each: the requests spread over the workers
            assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
        # new connections spread over both workers; every scrape, whichever worker answers, sees all 40
        seen = set()
        deadline = time.monotonic() + 60
        for _ in range(6):
            with httpx.Client(base_url=hub.url, timeout=30) as fresh:
                samples = scrape(fresh)
            seen.add(total(samples, "workhub_http_requests_total", route="/healthz") - before)
            if time.monotonic() > deadline:
                break
        assert seen == {40}
    assert len(list(metrics_dir.iterdir())) >= 2  # both workers wrote their values


def test_allocate_outcome_reads_the_allocators_own_text_without_parsing_it(sql, monkeypatch):
    # the fast path depends on how PostgreSQL prints the reply: check it against the real function
    from workhub.api import metrics

    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('a \"allocation_key\" : x', 'C1', current_date - 1, current_date + 1, 10)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('10.9.0.1', 3128), ('10.9.0.2', 3128)")
    reply = sql.execute("SELECT v1_hub_allocate_work('10.0.0.1', 1, 1, 3, now(), 300, 3)::text").fetchone()[0]
    monkeypatch.setattr(metrics.orjson, "loads", None)  # the fast path must not parse
    assert metrics.allocate_outcome(reply) == ("allocated", "", 3)
    monkeypatch.undo()
    none_left = sql.execute("SELECT v1_hub_allocate_work('10.0.0.1', 1, 1, 50, now(), 300, 3)::text").fetchone()[0]
    assert metrics.allocate_outcome(none_left) == ("allocated", "", 7)  # the other 7 of the 10
    empty = sql.execute("SELECT v1_hub_allocate_work('10.0.0.1', 1, 1, 1, now(), 300, 3)::text").fetchone()[0]
    assert metrics.allocate_outcome(empty) == ("no_work", "daily_quota_reached", 0)
