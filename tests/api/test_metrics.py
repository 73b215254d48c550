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
