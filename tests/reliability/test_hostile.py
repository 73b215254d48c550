"""Hostile input (SPEC sections 3, 4 and 8): only 4xx with the error contract, nothing stored partly.

schemathesis (positive and negative generation) over the worker protocol, plus targeted payloads:
huge bodies, deep JSON, wrong types, unicode and NUL characters, SQL-looking strings, negative and
huge numbers. The whole-API conformance run lives in tests/api/test_schemathesis.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import ADMIN_KEY, HubThread, make_settings
from tests.reliability.load import check_ledger, hub_today, seed_work

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def assert_error_contract(r: httpx.Response, *statuses: int) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if statuses:
        assert r.status_code in statuses, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"] and err["code"] == err["code"].lower(), err
    assert isinstance(err["message"], str) and err["message"], err
    assert "details" in err
    return err


def _contract_check(ctx, response, case):
    """A schemathesis check: every 4xx carries the error contract."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content or b"null")
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(body["error"].get("code"), str) and isinstance(body["error"].get("message"), str)


@pytest.fixture
def small_hub(db_url, tmp_path, sql):
    today = hub_today()
    seed_work(sql, slots=3, target=50, start=today - timedelta(days=1), end=today + timedelta(days=1), proxies=3)
    hub = HubThread(make_settings(db_url, tmp_path, max_body_bytes=100_000)).start()
    yield hub
    hub.stop()


def _snapshot(sql) -> tuple:
    return sql.execute("SELECT (SELECT count(*) FROM v1_hub_work_results), (SELECT count(*) FROM v1_hub_product_results), "
                       "(SELECT count(*) FROM v1_hub_work_slots), (SELECT count(*) FROM v1_hub_proxies), "
                       "(SELECT count(*) FROM v1_hub_external_sites), "
                       "(SELECT coalesce(sum(allocated_count + success_count + failed_count + blocked_count), 0) "
                       " FROM v1_hub_daily_work_tracking)").fetchone()


def test_schemathesis_worker_protocol_never_5xx(small_hub, sql):
    schema = schemathesis.openapi.from_url(small_hub.url + "/openapi.json")
    failures, operations = {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if "worker" not in (operation.tags or []):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            operations += 1

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=small_hub.url, headers=AUTH, timeout=30,
                                       checks=[not_a_server_error, _contract_check])

            try:
                check()
            except Exception as exc:  # noqa: BLE001 - collected, reported below
                failures[f"{operation.label} [{mode.value}]"] = str(exc)[:2000]
    assert operations >= 8
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    check_ledger(sql)


def test_targeted_hostile_payloads(small_hub, sql):
    before = _snapshot(sql)
    key = str(uuid.uuid4())
    with httpx.Client(base_url=small_hub.url, timeout=30) as c:
        # huge bodies: declared and streamed (chunked, no content-length)
        assert_error_contract(c.post("/api/submit-result", content=b"{" + b" " * 2_000_000 + b"}",
                                     headers={"content-type": "application/json"}), 413)

        def chunks():
            for _ in range(50):
                yield b"x" * 10_000
        assert_error_contract(c.post("/api/submit-result", content=chunks(),
                                     headers={"content-type": "application/json"}), 413)
        # deeply nested JSON (under the size limit)
        nested = "[" * 20_000 + "]" * 20_000
        deep = '{"allocation_key": "' + key + '", "status": "success", "execution_time_ms": 1, "result_data": ' + nested + "}"
        assert_error_contract(c.post("/api/submit-result", content=deep.encode(),
                                     headers={"content-type": "application/json"}))
        # malformed JSON, wrong content type, not an object
        for content, ctype in ((b'{"allocation_key": ', "application/json"), (b"\xff\xfe\x00", "application/json"),
                               (b"allocation_key=x", "application/x-www-form-urlencoded"), (b"[1,2]", "application/json"),
                               (b"null", "application/json"), (b'"x"', "application/json")):
            assert_error_contract(c.post("/api/submit-result", content=content, headers={"content-type": ctype}))
        # wrong types, negative and huge numbers, out-of-range enums
        bad_submits = [
            {"allocation_key": "not-a-uuid", "status": "success", "execution_time_ms": 1},
            {"allocation_key": key, "status": "SUCCESS", "execution_time_ms": 1},
            {"allocation_key": key, "status": 1, "execution_time_ms": 1},
            {"allocation_key": key, "status": "success", "execution_time_ms": "fast"},
            {"allocation_key": key, "status": "success", "execution_time_ms": -1},
            {"allocation_key": key, "status": "success", "execution_time_ms": 2**63},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1e308},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "rank": 10**30},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "rank": -5},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "products": [{"code": ""}]},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "products": [{"code": "x", "price": -1}]},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "applied_settings": {"evil": True}},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "unknown_field": 1},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "result_data": [1]},
            {"allocation_key": key, "status": "success", "execution_time_ms": 1, "error_message": "x" * 5000},
        ]
        for body in bad_submits:
            assert_error_contract(c.post("/api/submit-result", json=body), 422)
        # an unknown key: 404, in the contract
        assert_error_contract(c.post("/api/submit-result", json={
            "allocation_key": key, "status": "success", "execution_time_ms": 1}), 404)
        for params in ({"count": 0}, {"count": -1}, {"count": 101}, {"count": 10**30}, {"count": "many"},
                       {"instance_number": -1}, {"instance_number": 2**31}, {"user_folder_number": "1; DROP TABLE x"}):
            assert_error_contract(c.get("/api/allocate-work", params=params), 422)
            assert_error_contract(c.post("/api/allocate-work", json=params), 422)
        assert_error_contract(c.post(f"/api/allocations/{key}/extend", json={"seconds": -5}), 422)
        assert_error_contract(c.post(f"/api/allocations/{key}/extend", json={"seconds": 10**12}), 422)
        assert_error_contract(c.post("/api/allocations/'%20OR%201=1--/release", json={}), 422)
        assert_error_contract(c.post("/api/submit-results", json={"results": []}), 422)
        # a batch with one bad item is refused whole
        assert_error_contract(c.post("/api/submit-results", json={"results": [
            {"allocation_key": key, "status": "success", "execution_time_ms": 1},
            {"allocation_key": key, "status": "nope", "execution_time_ms": 1}]}), 422)
    assert _snapshot(sql) == before, "a refused request left something behind"


def test_unicode_nul_and_sql_looking_strings(small_hub, sql):
    """Stored verbatim where valid (parameters, never SQL text); NUL bytes refused with a 4xx, not a 500."""
    sql_like = "'; DROP TABLE v1_hub_work_slots; --"
    with httpx.Client(base_url=small_hub.url, headers=AUTH, timeout=30) as c:
        site = c.post("/api/admin/sites", json={"name": "hostile-" + uuid.uuid4().hex[:6]}).json()
        today = hub_today()
        base = {"code": "C1", "start_date": str(today), "end_date": str(today), "daily_work_count": 1,
                "site_id": site["id"]}
        keywords = ["노트북 🖥️ \u202egnp.exe", sql_like, "a\u200bb\u200dc", "ｆｕｌｌｗｉｄｔｈ", "\\x00", "%s %(x)s {}"]
        for i, kw in enumerate(keywords):
            r = c.post("/api/v1/slots", json={**base, "keyword": kw, "external_ref": f"u{i}"})
            assert r.status_code == 201, r.text
            assert c.get(f"/api/v1/slots/{r.json()['id']}").json()["keyword"] == kw
        before = _snapshot(sql)
        r = c.post("/api/v1/slots", json={**base, "keyword": "bad\u0000keyword", "external_ref": "nul"})
        assert_error_contract(r, 422)
        # a NUL inside a result travels to text and JSONB columns: refused whole, nothing stored
        package = c.post("/api/allocate-work", json={"count": 1}).json()["allocations"][0]
        after_alloc = _snapshot(sql)
        for extra in ({"error_message": "x\u0000y"}, {"block_type": "\u0000"},
                      {"result_data": {"k": "v\u0000"}}, {"products": [{"code": "\u0000"}]}):
            r = c.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "failed",
                                                   "execution_time_ms": 1, **extra})
            assert_error_contract(r, 422)
        assert _snapshot(sql) == after_alloc
        assert before[2] == _snapshot(sql)[2]
        ok = c.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "failed",
                                                "execution_time_ms": 1, "error_message": sql_like + " 🙂",
                                                "result_data": {sql_like: ["ü", {"deep": [1, 2.5, None]}]}})
        assert ok.status_code == 200 and ok.json()["status"] == "accepted", ok.text
    row = sql.execute("SELECT error_message, result_data FROM v1_hub_work_results").fetchone()
    assert row[0] == sql_like + " 🙂" and row[1] == {sql_like: ["ü", {"deep": [1, 2.5, None]}]}
    assert sql.execute("SELECT to_regclass('v1_hub_work_slots') IS NOT NULL").fetchone()[0]
    check_ledger(sql)
