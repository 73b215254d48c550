"""App factory, health, readiness and the error contract."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import HubThread, drop_database, free_port, make_settings


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_healthz_and_readyz(anon):
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_fails_clearly_when_the_database_is_down(tmp_path):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    hub = HubThread(make_settings(dead, tmp_path, pool_timeout=1.0)).start()
    try:
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            assert c.get("/healthz").status_code == 200
            error = assert_error(c.get("/readyz"), 503, "database_unavailable")
            assert "nothing" not in str(error)  # no connection details leak
            assert_error(c.get("/api/allocate-work"), 503, "database_unavailable")
    finally:
        hub.stop()


def test_readyz_reports_pending_migrations(pg_admin_url, tmp_path):
    from workhub.db.urls import with_database

    name = "whempty_" + str(free_port())
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    hub = HubThread(make_settings(with_database(pg_admin_url, name), tmp_path)).start()
    try:
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            error = assert_error(c.get("/readyz"), 503, "schema_not_current")
            assert "0001_schema" in error["details"]["pending"]
    finally:
        hub.stop()
        drop_database(pg_admin_url, name)


def test_unknown_route_and_method_follow_the_contract(anon):
    assert_error(anon.get("/no/such/route"), 404, "not_found")
    assert_error(anon.delete("/api/submit-result"), 405, "method_not_allowed")


def test_validation_errors_name_the_field(anon):
    error = assert_error(anon.get("/api/allocate-work", params={"count": 0}), 422, "validation_error")
    assert error["details"][0]["field"] == "count"
    error = assert_error(anon.post("/api/submit-result", json={"status": "weird"}), 422, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert {"allocation_key", "status", "execution_time_ms"} <= fields
    assert_error(anon.post("/api/submit-result", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "validation_error")


def test_oversize_bodies_are_rejected(anon, sql):
    big = {"results": [{"allocation_key": "00000000-0000-0000-0000-000000000000", "status": "success",
                        "execution_time_ms": 1, "error_message": "x" * 4000}] * 100}
    big["results"] = big["results"] * 3
    assert_error(anon.post("/api/submit-results", json=big), 413, "payload_too_large")
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == 0


def test_openapi_is_served(anon):
    spec = anon.get("/openapi.json").json()
    assert "/api/allocate-work" in spec["paths"] and "/readyz" in spec["paths"]
