"""The external-trigger log (every customer request, errors too) and the audit trail (old/new data, actor)."""

from __future__ import annotations

from tests.api.customer_helpers import assert_error, new_site, site_client, slot_body


def test_every_customer_request_is_recorded_errors_included(hub, api, anon, settings, sql):
    site = new_site(api, "shop-log")
    key = site["api_key"]
    today = settings.work_date()
    with site_client(hub, key) as shop:
        slot = shop.post("/api/v1/slots", json=slot_body(today, external_ref="r1")).json()
        shop.get("/api/v1/slots", params={"is_active": True})
        shop.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 8})
        shop.get(f"/api/v1/slots/{slot['id']}/progress")
        assert_error(shop.get("/api/v1/slots/999999"), 404, "slot_not_found")
        assert_error(shop.post("/api/v1/slots", json=slot_body(today, daily_work_count=0)), 422, "validation_error")
        assert_error(shop.post("/api/v1/slots", content=b"{broken", headers={"content-type": "application/json"}),
                     422, "validation_error")
        shop.delete(f"/api/v1/slots/{slot['id']}")
    api.get(f"/api/v1/slots/{slot['id']}")  # the admin acting on /api/v1 is recorded too
    assert_error(anon.get("/api/v1/slots"), 401, "unauthorized")  # no key: nobody to record
    rows = sql.execute("SELECT site_id, trigger_type, response_status, slot_id, host(source_ip), payload "
                       "FROM v1_hub_external_triggers ORDER BY id").fetchall()
    summary = [(r[0], r[1], r[2], r[3]) for r in rows]
    assert summary == [
        (site["id"], "slot.create", 201, slot["id"]),
        (site["id"], "slot.list", 200, None),
        (site["id"], "slot.update", 200, slot["id"]),
        (site["id"], "slot.progress", 200, slot["id"]),
        (site["id"], "slot.get", 404, 999999),
        (site["id"], "slot.create", 422, None),
        (site["id"], "slot.create", 422, None),
        (site["id"], "slot.delete", 200, slot["id"]),
        (site["id"], "slot.get", 200, slot["id"]),
    ]
    assert all(r[4] == "127.0.0.1" for r in rows)
    create_payload = rows[0][5]
    assert create_payload["body"]["external_ref"] == "r1" and create_payload["method"] == "POST"
    assert rows[1][5]["query"] == {"is_active": "true"}
    assert rows[8][5]["actor"] == "admin"
    everything = str(sql.execute("SELECT json_agg(t) FROM v1_hub_external_triggers t").fetchone()[0])
    assert key not in everything and key[4:20] not in everything
    # the admin can query the log
    page = api.get("/api/admin/external-triggers", params={"site_id": site["id"], "trigger_type": "slot.create"})
    assert [t["response_status"] for t in page.json()["items"]] == [422, 422, 201]


def test_audit_log_records_old_and_new_data_and_the_acting_key(hub, api, settings, sql):
    site = new_site(api, "shop-audit")
    with site_client(hub, site["api_key"]) as shop:
        slot = shop.post("/api/v1/slots", json=slot_body(settings.work_date())).json()
        shop.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 11})
        shop.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 11})  # no change: no audit row
    api.patch(f"/api/v1/slots/{slot['id']}", json={"keyword": "모니터"})
    api.post(f"/api/admin/sites/{site['id']}/rotate-key")
    api.patch(f"/api/admin/sites/{site['id']}", json={"webhook_url": "http://127.0.0.1:9/x",
                                                      "webhook_secret": "s3cret-value"})
    entries = api.get("/api/admin/audit-log", params={"table_name": "v1_hub_work_slots",
                                                      "record_id": slot["id"]}).json()["items"]
    assert [(e["action"], e["changed_by"]) for e in entries] == [
        ("UPDATE", "admin"), ("UPDATE", f"site:{site['id']}:shop-audit"), ("INSERT", f"site:{site['id']}:shop-audit")]
    count_change = entries[1]
    assert count_change["old_data"]["daily_work_count"] == 5 and count_change["new_data"]["daily_work_count"] == 11
    assert entries[0]["old_data"]["keyword"] == "노트북" and entries[0]["new_data"]["keyword"] == "모니터"
    assert entries[2]["old_data"] is None
    site_entries = api.get("/api/admin/audit-log", params={"table_name": "v1_hub_external_sites",
                                                           "record_id": site["id"]}).json()["items"]
    assert [e["action"] for e in site_entries] == ["UPDATE", "UPDATE", "INSERT"]
    assert all(e["changed_by"] == "admin" for e in site_entries)
    text = str(site_entries)
    assert "s3cret-value" not in text and site["api_key"] not in text
    assert site_entries[0]["new_data"]["webhook_secret"] == "***"
    # paging backwards through the whole trail
    seen, before = [], None
    for _ in range(20):
        params = {"limit": 2} | ({"before_id": before} if before else {})
        page = api.get("/api/admin/audit-log", params=params).json()
        seen += [e["id"] for e in page["items"]]
        before = page["next_before_id"]
        if before is None:
            break
    total = sql.execute("SELECT count(*) FROM v1_hub_audit_log").fetchone()[0]
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen, reverse=True)
    assert api.get("/api/admin/audit-log", params={"changed_by": "admin", "action": "INSERT"}).json()["items"][0][
        "table_name"] == "v1_hub_external_sites"
