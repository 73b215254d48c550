"""The worker fast path (workhub/api/fastpath.py): well-formed allocate and submit requests are served
without FastAPI, everything else reaches FastAPI with its body intact, and the replies are the same.

Whether FastAPI served a request is seen through a dependency override of the worker routes' own
dependency (require_fleet): FastAPI calls it for every request it routes there, the fast path never."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Request

from tests.api.test_worker_protocol import add_proxies, add_slot, ledger
from tests.conftest import ADMIN_KEY, HubThread, make_settings
from workhub.api.worker import AllocateReply, SubmitReply
from workhub.auth import require_fleet

FLEET_TOKEN = "fleet-token-for-tests-0123456789"


@pytest.fixture
def hub_with(db_url, tmp_path):
    """Starts a hub with settings overrides; returns it and the list of requests FastAPI routed."""
    started = []

    def start(**overrides):
        hub = HubThread(make_settings(db_url, tmp_path, **overrides)).start()
        started.append(hub)
        routed: list[str] = []

        async def spy(request: Request):
            routed.append(f"{request.method} {request.url.path}")
            return await require_fleet(request)

        hub.app.dependency_overrides[require_fleet] = spy
        return hub, routed

    yield start
    for hub in started:
        hub.stop()


def client(hub, token: str | None = ADMIN_KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=hub.url, headers=headers, timeout=30)


def test_well_formed_calls_skip_fastapi_and_keep_the_ledger_exact(hub_with, sql):
    hub, routed = hub_with()
    with client(hub) as api:
        add_proxies(api, 3)
        slot = add_slot(api, target=10)
        replies = [api.get("/api/allocate-work", params={"instance_number": 2, "user_folder_number": 1}),
                   api.post("/api/allocate-work", json={"instance_number": 3, "count": 2}),
                   api.post("/api/allocate-work", content=b"", headers={"Content-Type": "application/json"}),
                   api.post("/api/allocate-work", content=b"null", headers={"Content-Type": "application/json"})]
        keys = []
        for reply in replies:
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"] == "application/json"
            body = AllocateReply.model_validate(reply.json())
            assert body.status == "allocated"
            keys += [str(p.allocation_key) for p in body.allocations]
        assert len(keys) == 5
        outcomes = [api.post("/api/submit-result", json={"allocation_key": key, "status": "success",
                                                          "execution_time_ms": 900, "rank": 3, "page": 1,
                                                          "products": [{"code": "12345", "rank": 3}]})
                    for key in keys]
        again = api.post("/api/submit-result", json={"allocation_key": keys[0], "status": "success",
                                                     "execution_time_ms": 900})
    for outcome in outcomes:
        assert outcome.status_code == 200, outcome.text
        assert SubmitReply.model_validate(outcome.json()).status == "accepted"
        assert list(outcome.json()) == ["status", "result_id", "counted"]
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert routed == [], routed
    row = ledger(sql, slot)
    assert (row["allocated_count"], row["success_count"]) == (5, 5)
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results WHERE rank = 3").fetchone()[0] == 5


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), [
    ("GET", "/api/allocate-work", {"params": {"count": 0}}, "count"),
    ("GET", "/api/allocate-work", {"params": {"count": "two"}}, "count"),
    ("GET", "/api/allocate-work", {"params": {"count": -1}}, "count"),
    ("POST", "/api/allocate-work", {"json": {"count": 101}}, "count"),
    ("POST", "/api/allocate-work", {"json": {"instance": 1}}, "instance"),
    ("POST", "/api/submit-result", {"json": {"allocation_key": "00000000-0000-4000-8000-000000000000",
                                             "status": "success", "execution_time_ms": 1, "bogus": 1}}, "bogus"),
    ("POST", "/api/submit-result", {"json": {"allocation_key": "not-a-uuid", "status": "success",
                                             "execution_time_ms": 1}}, "allocation_key"),
    ("POST", "/api/submit-result", {"json": {"allocation_key": "00000000-0000-4000-8000-000000000000",
                                             "execution_time_ms": 1}}, "status"),
    ("POST", "/api/submit-result", {"content": b'{"allocation_key": ', "headers": {"Content-Type": "application/json"}},
     "json_invalid"),
    ("POST", "/api/submit-result", {"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, None),
    ("POST", "/api/submit-result", {"content": b'{"status": "success"}', "headers": {"Content-Type": "text/plain"}},
     None),
])
def test_invalid_requests_reach_fastapi_with_their_body(hub_with, method, path, kwargs, field):
    """FastAPI gives its own 422, naming the field: it saw the very body the fast path had read."""
    hub, routed = hub_with()
    with client(hub) as api:
        reply = api.request(method, path, **kwargs)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "validation_error"
    if field == "json_invalid":
        # FastAPI's own JSON error: it rejects the body before it resolves the route's dependencies
        assert [d["type"] for d in error["details"]] == ["json_invalid"]
        return
    if field is not None:
        assert any(d["field"].split(".")[-1] == field for d in error["details"]), error
    assert routed == [f"{method} {path}"]


def test_ledger_errors_keep_their_shape_on_the_fast_path(hub_with):
    hub, routed = hub_with()
    with client(hub) as api:
        unknown = api.post("/api/submit-result", json={"allocation_key": "00000000-0000-4000-8000-000000000000",
                                                       "status": "success", "execution_time_ms": 1})
        no_work = api.get("/api/allocate-work")
    assert unknown.status_code == 404, unknown.text
    assert set(unknown.json()["error"]) == {"code", "message", "details"}
    assert no_work.status_code == 200 and no_work.json()["status"] == "no_work"
    assert routed == []


def test_fleet_token(hub_with):
    hub, routed = hub_with(fleet_token=FLEET_TOKEN, auth_fail_limit=3)
    with client(hub) as admin:
        add_proxies(admin, 2)
        add_slot(admin, target=5)
    for token in (FLEET_TOKEN, ADMIN_KEY):
        with client(hub, token) as api:
            assert api.get("/api/allocate-work").json()["status"] == "allocated"
    assert routed == []
    for token in (None, "wrong-token"):
        with client(hub, token) as api:
            reply = api.get("/api/allocate-work")
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"]["code"] == "unauthorized"
    assert routed == ["GET /api/allocate-work"] * 2
    with client(hub, "wrong-again") as api:
        for _ in range(2):
            api.get("/api/allocate-work")
    # over the failed-authentication limit, even the right token is answered 429 (by FastAPI)
    with client(hub, FLEET_TOKEN) as api:
        limited = api.get("/api/allocate-work")
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "too_many_failed_authentications"


def test_switched_off_everything_goes_through_fastapi(hub_with):
    hub, routed = hub_with(worker_fast_path=False)
    with client(hub) as api:
        add_proxies(api, 2)
        add_slot(api, target=5)
        package = api.get("/api/allocate-work").json()["allocations"][0]
        reply = api.post("/api/submit-result", json={"allocation_key": package["allocation_key"],
                                                      "status": "success", "execution_time_ms": 5})
    assert reply.json()["status"] == "accepted"
    assert routed == ["GET /api/allocate-work", "POST /api/submit-result"]
