"""The worker protocol (SPEC section 3) through real HTTP: reply shapes, lease life cycle, errors."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.conftest import ADMIN_KEY, TIMEZONE, HubThread, make_settings


# ---------------------------------------------------------------- helpers
def hub_today() -> date:
    return datetime.now(ZoneInfo(TIMEZONE)).date()


def add_proxies(api, n: int = 3, max_uses: int = 100, **extra) -> list[int]:
    reply = api.post("/api/admin/proxies", json={"proxies": [
        {"host": f"10.9.0.{i + 1}", "port": 3128, "max_uses": max_uses, **extra} for i in range(n)]})
    assert reply.status_code == 201, reply.text
    return reply.json()["ids"]


def add_slot(api, target: int = 3, **extra) -> int:
    today = hub_today()
    body = {"keyword": extra.pop("keyword", "노트북"), "code": extra.pop("code", "12345"),
            "start_date": str(today - timedelta(days=1)), "end_date": str(today + timedelta(days=1)),
            "daily_work_count": target, "cart_click_enabled": False, "block_mercury": False,
            "block_image_cdn": False, "block_img1a_cdn": False, "block_thumbnail_cdn": True, **extra}
    reply = api.post("/api/v1/slots", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def ledger(sql, slot_id: int) -> dict:
    cur = sql.execute("SELECT * FROM v1_hub_daily_work_tracking WHERE slot_id = %s AND work_date = CURRENT_DATE",
                      (slot_id,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone()))


def allocate(client, **params) -> dict:
    reply = client.get("/api/allocate-work", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def submit(client, key: str, status: str = "success", **extra) -> httpx.Response:
    return client.post("/api/submit-result", json={"allocation_key": key, "status": status,
                                                   "execution_time_ms": 1000, **extra})


def expire_now(sql, key: str) -> None:
    """Make a lease overdue (as if its 5 minutes had passed)."""
    sql.execute("UPDATE v1_hub_work_allocations SET expires_at = now() - interval '1 second' "
                "WHERE allocation_key = %s", (key,))


def sweep(sql) -> int:
    return sql.execute("SELECT v1_hub_expire_leases(now(), 5000)").fetchone()[0]


# ---------------------------------------------------------------- allocate
def test_allocate_reply_shape_get_and_post(api, anon, sql):
    proxy_ids = add_proxies(api, 2)
    slot_id = add_slot(api, target=3)
    got = allocate(anon, instance_number=4, user_folder_number=7, count=2)
    assert got["status"] == "allocated" and len(got["allocations"]) == 2
    package = got["allocations"][0]
    assert set(package) == {"allocation_key", "expires_at", "work_date", "slot", "settings", "proxy"}
    assert package["slot"] == {"id": slot_id, "keyword": "노트북", "code": "12345"}
    assert package["settings"] == {"cart_click_enabled": False, "block_mercury": False, "block_image_cdn": False,
                                   "block_img1a_cdn": False, "block_thumbnail_cdn": True}
    assert set(package["proxy"]) == {"id", "protocol", "host", "port", "username", "password", "url"}
    assert package["proxy"]["id"] in proxy_ids
    # two packages, two different proxies: fewest uses first
    assert {p["proxy"]["id"] for p in got["allocations"]} == set(proxy_ids)
    assert package["work_date"] == str(hub_today())
    lease = datetime.fromisoformat(package["expires_at"]) - datetime.now().astimezone()
    assert timedelta(minutes=4) < lease <= timedelta(minutes=5, seconds=5)
    uuid.UUID(package["allocation_key"])  # unguessable: a random UUID
    assert len({p["allocation_key"] for p in got["allocations"]}) == 2

    # POST with a JSON body; fewer than asked when less work is left
    posted = anon.post("/api/allocate-work", json={"instance_number": 4, "user_folder_number": 7, "count": 5})
    assert posted.status_code == 200 and len(posted.json()["allocations"]) == 1
    row = ledger(sql, slot_id)
    assert (row["allocated_count"], row["in_flight_count"]) == (3, 3)
    # the allocation remembers who took it
    rows = sql.execute("SELECT client_ip::text, instance_number, user_folder_number FROM v1_hub_work_allocations")
    assert set(rows.fetchall()) == {("127.0.0.1/32", 4, 7)}


def test_no_work_reasons(api, anon, sql):
    none = allocate(anon)
    assert none == {"status": "no_work", "reason": "no_active_slots", "retry_after_seconds": none["retry_after_seconds"],
                    "allocations": []}
    assert none["retry_after_seconds"] > 0

    slot_id = add_slot(api, target=1)
    assert allocate(anon)["reason"] == "no_proxy_available"          # slots, but no proxy at all
    add_proxies(api, 1, max_uses=2)
    key = allocate(anon)["allocations"][0]["allocation_key"]
    assert allocate(anon)["reason"] == "daily_quota_reached"         # target 1, one in flight
    assert submit(anon, key, "failed").json()["counted"] is True
    # the proxy's budget of 2 uses is spent: exhausted, and no work can go out without one
    key2 = allocate(anon)["allocations"][0]["allocation_key"]
    assert sql.execute("SELECT status, use_count FROM v1_hub_proxies").fetchone() == ("exhausted", 2)
    assert submit(anon, key2, "blocked", block_type="captcha").status_code == 200
    assert allocate(anon)["reason"] == "no_proxy_available"
    add_proxies(api, 1, max_uses=50, port=8080)
    key3 = allocate(anon)["allocations"][0]["allocation_key"]
    assert submit(anon, key3, "failed").status_code == 200
    # three attempts for a target of one (factor 3): the attempt limit stops the slot
    again = allocate(anon)
    assert again["reason"] == "attempt_limit_reached" and again["allocations"] == []
    row = ledger(sql, slot_id)
    assert (row["allocated_count"], row["failed_count"], row["blocked_count"], row["success_count"]) == (3, 2, 1, 0)


def test_count_bounds_and_malformed_bodies_store_nothing(api, anon, sql):
    add_proxies(api, 1)
    slot_id = add_slot(api, target=2)
    for params in ({"count": 0}, {"count": 101}, {"count": "many"}, {"instance_number": -1}):
        reply = anon.get("/api/allocate-work", params=params)
        assert reply.status_code == 422, params
        assert reply.json()["error"]["code"]
    assert anon.post("/api/allocate-work", json={"count": 1, "bogus": 1}).status_code == 422
    assert anon.post("/api/allocate-work", content=b"{not json", headers={"content-type": "application/json"}
                     ).status_code == 422
    assert sql.execute("SELECT count(*) FROM v1_hub_work_allocations").fetchone()[0] == 0

    key = allocate(anon)["allocations"][0]["allocation_key"]
    bad_bodies = [
        {"allocation_key": key, "status": "won", "execution_time_ms": 1},
        {"allocation_key": key, "status": "success"},
        {"allocation_key": "not-a-uuid", "status": "success", "execution_time_ms": 1},
        {"allocation_key": key, "status": "success", "execution_time_ms": -5},
        {"allocation_key": key, "status": "success", "execution_time_ms": 1, "rank": "first"},
        {"allocation_key": key, "status": "success", "execution_time_ms": 1, "products": [{"name": "no code"}]},
        {"allocation_key": key, "status": "success", "execution_time_ms": 1, "unknown_field": True},
    ]
    for body in bad_bodies:
        reply = anon.post("/api/submit-result", json=body)
        assert reply.status_code == 422, body
        assert reply.json()["error"]["code"] and reply.json()["error"]["details"]
    batch = anon.post("/api/submit-results", json={"results": [
        {"allocation_key": key, "status": "success", "execution_time_ms": 1},
        {"allocation_key": key, "status": "nope", "execution_time_ms": 1}]})
    assert batch.status_code == 422
    assert anon.post("/api/submit-results", json={"results": []}).status_code == 422
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == 0
    assert sql.execute("SELECT count(*) FROM v1_hub_product_results").fetchone()[0] == 0
    row = ledger(sql, slot_id)
    assert (row["in_flight_count"], row["success_count"]) == (1, 0)


# ---------------------------------------------------------------- submit
def test_submit_replay_is_idempotent(api, anon, sql):
    add_proxies(api, 1)
    slot_id = add_slot(api, target=2)
    key = allocate(anon)["allocations"][0]["allocation_key"]
    products = [{"code": "12345", "name": "Laptop", "price": 899000, "rank": 7, "page": 1, "seller": "x"}]
    first = submit(anon, key, rank=7, page=1, products=products, result_data={"screenshot": "a.png"},
                   applied_settings={"cart_click_enabled": True})
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "accepted" and body["counted"] is True and isinstance(body["result_id"], int)
    for _ in range(3):
        again = submit(anon, key, "blocked", products=products)
        assert again.status_code == 200
        assert again.json() == {**body, "status": "duplicate"}
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == 1
    assert sql.execute("SELECT count(*) FROM v1_hub_product_results").fetchone()[0] == 1
    stored = sql.execute("SELECT status, rank, applied_cart_click, applied_block_thumbnail_cdn, result_data "
                         "FROM v1_hub_work_results").fetchone()
    # applied settings default to those handed out; the worker's own values win
    assert stored == ("success", 7, True, True, {"screenshot": "a.png"})
    extra = sql.execute("SELECT extra FROM v1_hub_product_results").fetchone()[0]
    assert extra == {"seller": "x"}
    row = ledger(sql, slot_id)
    assert (row["success_count"], row["in_flight_count"], row["allocated_count"]) == (1, 0, 1)


def test_late_result_counts_only_below_target(api, anon, sql):
    add_proxies(api, 1)
    slot_id = add_slot(api, target=1)
    first = allocate(anon)["allocations"][0]["allocation_key"]
    expire_now(sql, first)
    # overdue but not yet swept: a late success still counts (its quota was still reserved)
    reply = submit(anon, first).json()
    assert reply["status"] == "late" and reply["counted"] is True
    assert ledger(sql, slot_id)["success_count"] == 1

    # now with the sweeper in between and the slot filled by someone else: stored, not counted
    sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 2 WHERE id = %s", (slot_id,))
    a = allocate(anon)["allocations"][0]["allocation_key"]
    expire_now(sql, a)
    assert sweep(sql) == 1
    row = ledger(sql, slot_id)
    assert (row["in_flight_count"], row["expired_count"]) == (0, 1)
    b = allocate(anon)["allocations"][0]["allocation_key"]
    assert submit(anon, b).json()["counted"] is True
    late = submit(anon, a).json()
    assert late["status"] == "late" and late["counted"] is False
    assert submit(anon, a).json() == {**late, "status": "duplicate"}
    row = ledger(sql, slot_id)
    assert (row["success_count"], row["expired_count"], row["late_count"], row["target_count"]) == (2, 1, 2, 2)
    stored = sql.execute("SELECT late, counted FROM v1_hub_work_results ORDER BY id").fetchall()
    assert stored == [(True, True), (False, True), (True, False)]

    # a late failure always moves its lease from expired to failed
    sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 3 WHERE id = %s", (slot_id,))
    c = allocate(anon)["allocations"][0]["allocation_key"]
    expire_now(sql, c)
    sweep(sql)
    late_failure = submit(anon, c, "failed").json()
    assert (late_failure["status"], late_failure["counted"]) == ("late", True)
    row = ledger(sql, slot_id)
    assert (row["expired_count"], row["failed_count"]) == (1, 1)


def test_unknown_key_released_and_batch(api, anon, sql):
    add_proxies(api, 1)
    slot_id = add_slot(api, target=5)
    unknown = str(uuid.uuid4())
    reply = submit(anon, unknown)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_allocation_key"
    assert anon.post(f"/api/allocations/{unknown}/extend", json={"seconds": 60}).status_code == 404
    assert anon.post(f"/api/allocations/{unknown}/release", json={}).status_code == 404

    keys = [p["allocation_key"] for p in allocate(anon, count=4)["allocations"]]
    released = anon.post(f"/api/allocations/{keys[0]}/release", json={"reason": "browser crashed"})
    assert released.status_code == 200 and released.json()["status"] == "released"
    row = ledger(sql, slot_id)
    assert (row["in_flight_count"], row["released_count"]) == (3, 1)        # quota back at once
    conflict = submit(anon, keys[0])
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "allocation_released"
    assert anon.post(f"/api/allocations/{keys[0]}/release", json={}).status_code == 200   # harmless twice
    assert anon.post(f"/api/allocations/{keys[0]}/extend", json={"seconds": 60}).status_code == 409

    first = submit(anon, keys[1]).json()
    batch = anon.post("/api/submit-results", json={"results": [
        {"allocation_key": keys[1], "status": "failed", "execution_time_ms": 5},
        {"allocation_key": keys[2], "status": "success", "execution_time_ms": 5, "rank": 1},
        {"allocation_key": keys[3], "status": "blocked", "execution_time_ms": 5, "block_type": "captcha"},
        {"allocation_key": unknown, "status": "success", "execution_time_ms": 5},
        {"allocation_key": keys[0], "status": "success", "execution_time_ms": 5},
        {"allocation_key": keys[2], "status": "failed", "execution_time_ms": 5},
    ]})
    assert batch.status_code == 200, batch.text
    outcomes = batch.json()["results"]
    assert [o["status"] for o in outcomes] == ["duplicate", "accepted", "accepted", "error", "error", "duplicate"]
    assert outcomes[0]["result_id"] == first["result_id"]
    assert outcomes[3]["error"]["code"] == "unknown_allocation_key"
    assert outcomes[4]["error"]["code"] == "allocation_released"
    assert outcomes[5]["result_id"] == outcomes[1]["result_id"]
    row = ledger(sql, slot_id)
    assert (row["success_count"], row["blocked_count"], row["in_flight_count"], row["released_count"]) == (2, 1, 0, 1)
    assert sql.execute("SELECT count(*) FROM v1_hub_work_results").fetchone()[0] == 3


def test_extend_is_capped(db_url, tmp_path, sql):
    hub = HubThread(make_settings(db_url, tmp_path, lease_seconds=60, lease_max_seconds=120)).start()
    try:
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as api:
            add_proxies(api, 1)
            add_slot(api, target=1)
            package = allocate(api)["allocations"][0]
            key = package["allocation_key"]
            first = datetime.fromisoformat(package["expires_at"])
            longer = api.post(f"/api/allocations/{key}/extend", json={"seconds": 100})
            assert longer.status_code == 200 and longer.json()["capped"] is False
            assert datetime.fromisoformat(longer.json()["expires_at"]) > first
            capped = api.post(f"/api/allocations/{key}/extend", json={"seconds": 3600}).json()
            assert capped["capped"] is True
            assert datetime.fromisoformat(capped["expires_at"]) <= first + timedelta(seconds=61)
            assert sql.execute("SELECT extended_count FROM v1_hub_work_allocations").fetchone()[0] == 2
            assert api.post(f"/api/allocations/{key}/extend", json={"seconds": 0}).status_code == 422
            assert submit(api, key).json()["status"] == "accepted"
            done = api.post(f"/api/allocations/{key}/extend", json={"seconds": 10})
            assert done.status_code == 409 and done.json()["error"]["code"] == "allocation_submitted"
            sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 2")
            expire_key = allocate(api)["allocations"][0]["allocation_key"]
            expire_now(sql, expire_key)
            gone = api.post(f"/api/allocations/{expire_key}/extend", json={"seconds": 10})
            assert gone.status_code == 409 and gone.json()["error"]["code"] == "allocation_expired"
    finally:
        hub.stop()


# ---------------------------------------------------------------- slots from plain SQL, targets, clients
def test_seed_query_slot_is_served_and_target_change_applies_today(api, anon, sql):
    add_proxies(api, 2)
    today = hub_today()
    sql.execute("""
        INSERT INTO v1_hub_work_slots
        (keyword, code, start_date, end_date, daily_work_count,
         cart_click_enabled, block_mercury, block_image_cdn,
         block_img1a_cdn, block_thumbnail_cdn)
        VALUES
        ('노트북', '12345', %s, %s, 2,
         false, false, false, false, true)""", (today - timedelta(days=3), today + timedelta(days=27)))
    slot_id = sql.execute("SELECT id FROM v1_hub_work_slots").fetchone()[0]
    keys = [p["allocation_key"] for p in allocate(anon, count=5)["allocations"]]
    assert len(keys) == 2                                       # today's row was created on demand
    assert sql.execute("SELECT count(*) FROM v1_hub_tracking_days WHERE work_date = CURRENT_DATE").fetchone()[0] == 1
    sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 4 WHERE id = %s", (slot_id,))
    assert ledger(sql, slot_id)["target_count"] == 4
    assert len(allocate(anon, count=5)["allocations"]) == 2
    # lowered below what is in flight: nothing more goes out, and the ledger stays consistent
    sql.execute("UPDATE v1_hub_work_slots SET daily_work_count = 1 WHERE id = %s", (slot_id,))
    assert allocate(anon)["reason"] == "daily_quota_reached"
    for key in keys:
        submit(anon, key)
    assert allocate(anon)["reason"] == "daily_quota_reached"
    row = ledger(sql, slot_id)
    assert row["success_count"] + row["in_flight_count"] <= row["target_count"]


def test_client_registration_and_activity_log(db_url, tmp_path, sql):
    settings = make_settings(db_url, tmp_path, trusted_proxies=["127.0.0.1/32"])
    hub = HubThread(settings).start()
    try:
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as api:
            add_proxies(api, 1)
            add_slot(api, target=3)
            allocate(api, instance_number=1)                           # from the socket address
            forwarded = {"X-Forwarded-For": "198.51.100.7"}            # documentation range, never contacted
            got = api.get("/api/allocate-work", params={"instance_number": 2}, headers=forwarded).json()
            key = got["allocations"][0]["allocation_key"]
            submit(api, key).raise_for_status()
            api.post("/api/submit-result", headers=forwarded, json={
                "allocation_key": key, "status": "success", "execution_time_ms": 1}).raise_for_status()
        clients = dict(sql.execute("SELECT host(client_ip), last_seen_at >= first_seen_at FROM v1_hub_clients"))
        assert clients == {"127.0.0.1": True, "198.51.100.7": True}
        actions = sql.execute("SELECT host(client_ip), action, status FROM v1_hub_client_activity_logs ORDER BY id")
        assert actions.fetchall() == [("127.0.0.1", "allocate", "allocated"), ("198.51.100.7", "allocate", "allocated"),
                                      ("127.0.0.1", "submit", "success"), ("198.51.100.7", "submit", "duplicate")]
    finally:
        hub.stop()


def test_forwarded_for_ignored_from_untrusted_peer(hub_processes, sql):
    """Through the real `workhub serve`: a client cannot pick its own address with X-Forwarded-For."""
    (hub,) = hub_processes(1)
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as api:
        add_proxies(api, 1)
        add_slot(api, target=1)
        api.get("/api/allocate-work", headers={"X-Forwarded-For": "203.0.113.9"}).raise_for_status()
    assert [r[0] for r in sql.execute("SELECT host(client_ip) FROM v1_hub_clients")] == ["127.0.0.1"]
    assert sql.execute("SELECT host(client_ip) FROM v1_hub_work_allocations").fetchone()[0] == "127.0.0.1"
