"""The protocol end to end through HTTP, briefly (the full suite is in test_worker_protocol.py)."""

from datetime import date, timedelta


def test_register_allocate_submit(api, anon, sql):
    site = api.post("/api/admin/sites", json={"name": "shop-a"})
    assert site.status_code == 201, site.text
    key = site.json()["api_key"]
    proxies = api.post("/api/admin/proxies", json={"proxies": [{"host": "127.0.0.1", "port": 3128,
                                                              "username": "u", "password": "pw"}]})
    assert proxies.status_code == 201 and proxies.json()["created"] == 1
    today = date.today()
    slot = anon.post("/api/v1/slots", headers={"Authorization": f"Bearer {key}"}, json={
        "keyword": "노트북", "code": "12345", "start_date": str(today - timedelta(days=1)),
        "end_date": str(today + timedelta(days=1)), "daily_work_count": 2, "external_ref": "o-1"})
    assert slot.status_code == 201, slot.text
    again = anon.post("/api/v1/slots", headers={"Authorization": f"Bearer {key}"}, json={
        "keyword": "노트북", "code": "12345", "start_date": str(today - timedelta(days=1)),
        "end_date": str(today + timedelta(days=1)), "daily_work_count": 2, "external_ref": "o-1"})
    assert again.status_code == 200 and again.json()["id"] == slot.json()["id"]

    got = anon.get("/api/allocate-work", params={"instance_number": 1, "user_folder_number": 2, "count": 5}).json()
    assert got["status"] == "allocated" and len(got["allocations"]) == 2
    package = got["allocations"][0]
    assert package["slot"]["keyword"] == "노트북" and package["proxy"]["url"] == "http://u:pw@127.0.0.1:3128"
    reply = anon.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "success",
                                                  "execution_time_ms": 1200, "rank": 3, "page": 1,
                                                  "products": [{"code": "12345", "name": "x", "price": 10}]})
    assert reply.status_code == 200 and reply.json()["status"] == "accepted" and reply.json()["counted"]
    dup = anon.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "failed",
                                                "execution_time_ms": 1})
    assert dup.json() == {**reply.json(), "status": "duplicate"}
    none = anon.get("/api/allocate-work").json()
    assert none["status"] == "no_work" and none["reason"] == "daily_quota_reached"
    row = sql.execute("SELECT success_count, in_flight_count, allocated_count FROM v1_hub_daily_work_tracking").fetchone()
    assert row == (1, 1, 2)
    assert sql.execute("SELECT count(*) FROM v1_hub_product_results").fetchone()[0] == 1
