"""/api/v1/slots: create, list, get, patch, delete, progress; validation with nothing partly written."""

from __future__ import annotations

from datetime import timedelta

from tests.api.customer_helpers import assert_error, new_site, site_client, slot_body


def count(sql, table: str) -> int:
    return sql.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_create_is_idempotent_on_external_ref_and_get_shows_today(hub, api, settings, sql):
    site = new_site(api, "shop-create")
    today = settings.work_date()
    with site_client(hub, site["api_key"]) as shop:
        first = shop.post("/api/v1/slots", json=slot_body(today, external_ref="order-1"))
        assert first.status_code == 201, first.text
        again = shop.post("/api/v1/slots", json=slot_body(today, external_ref="order-1", daily_work_count=99))
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert again.json()["daily_work_count"] == 5  # the first registration stands
        other = shop.post("/api/v1/slots", json=slot_body(today, external_ref="order-2"))
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
        got = shop.get(f"/api/v1/slots/{first.json()['id']}").json()
        assert got["external_ref"] == "order-1" and got["external_site_id"] == site["id"]
        assert got["today"]["work_date"] == str(today) and got["today"]["target_count"] == 5
        assert got["today"]["remaining_count"] == 5 and got["today"]["completion_rate"] == 0
    # another site may reuse the same external_ref
    other_site = new_site(api, "shop-create-2")
    with site_client(hub, other_site["api_key"]) as shop2:
        assert shop2.post("/api/v1/slots", json=slot_body(today, external_ref="order-1")).status_code == 201
    assert count(sql, "v1_hub_work_slots") == 3


def test_admin_create_without_site_is_idempotent_on_external_ref(api, settings, sql):
    today = settings.work_date()
    first = api.post("/api/v1/slots", json=slot_body(today, external_ref="admin-order-1"))
    assert first.status_code == 201, first.text
    assert first.json()["external_site_id"] is None
    again = api.post("/api/v1/slots", json=slot_body(today, external_ref="admin-order-1", daily_work_count=99))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["daily_work_count"] == 5
    assert sql.execute("SELECT count(*) FROM v1_hub_work_slots WHERE external_ref = 'admin-order-1'"
                       ).fetchone()[0] == 1


def test_slots_without_external_ref_are_never_duplicates(sql):
    """The guide's INSERT (seed 000, 3.1: no site, no external_ref) may run any number of times."""
    insert = ("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
              "VALUES ('no-ref', '3.1', CURRENT_DATE, CURRENT_DATE, 1)")
    sql.execute(insert)
    sql.execute(insert)
    assert sql.execute("SELECT count(*) FROM v1_hub_work_slots WHERE keyword = 'no-ref'").fetchone()[0] == 2


def test_validation_errors_name_fields_and_write_nothing(hub, api, settings, sql):
    site = new_site(api, "shop-validate")
    today = settings.work_date()
    audit_before = count(sql, "v1_hub_audit_log")
    with site_client(hub, site["api_key"]) as shop:
        cases = [
            (slot_body(today, end_date=str(today - timedelta(days=5))), None),
            (slot_body(today, daily_work_count=0), "daily_work_count"),
            (slot_body(today, daily_work_count=-3), "daily_work_count"),
            (slot_body(today, keyword=""), "keyword"),
            (slot_body(today, keyword="   "), "keyword"),
            (slot_body(today, code=""), "code"),
            (slot_body(today, pace="fast"), "pace"),
            (slot_body(today, unknown_field=1), "unknown_field"),
            ({"keyword": "x"}, "code"),
        ]
        for body, field in cases:
            error = assert_error(shop.post("/api/v1/slots", json=body), 422, "validation_error")
            assert error["details"] and all(d["message"] for d in error["details"])
            if field:
                assert field in {d["field"] for d in error["details"]}, (body, error)
        big = slot_body(today, keyword="k" * 400, result_data="x" * 2_000_000)
        assert_error(shop.post("/api/v1/slots", json=big), 413, "payload_too_large")
        slot = shop.post("/api/v1/slots", json=slot_body(today)).json()
        audit_after_create = count(sql, "v1_hub_audit_log")
        bad_patches = [({"end_date": str(today - timedelta(days=30))}, "end_date"),
                       ({"daily_work_count": 0}, "daily_work_count"), ({"keyword": None}, "keyword"),
                       ({"keyword": ""}, "keyword"), ({"id": 5}, "id")]
        for body, field in bad_patches:
            error = assert_error(shop.patch(f"/api/v1/slots/{slot['id']}", json=body), 422, "validation_error")
            assert field in {d["field"] for d in error["details"]}, (body, error)
        assert shop.get(f"/api/v1/slots/{slot['id']}").json()["daily_work_count"] == 5
        assert_error(shop.get("/api/v1/slots/0"), 422, "validation_error")
        assert_error(shop.get(f"/api/v1/slots/{slot['id']}/progress",
                              params={"from": str(today), "to": str(today - timedelta(days=2))}),
                     422, "validation_error")
        # the default 7-day range would start before year 1: a field error, not a 500
        error = assert_error(shop.get(f"/api/v1/slots/{slot['id']}/progress", params={"to": "0001-01-03"}),
                             422, "validation_error")
        assert "to" in {d["field"] for d in error["details"]}
    assert count(sql, "v1_hub_work_slots") == 1
    assert audit_after_create == audit_before + 1  # only the one good create
    assert count(sql, "v1_hub_audit_log") == audit_after_create


def test_list_filters_and_keyset_pagination(hub, api, settings):
    site = new_site(api, "shop-list")
    today = settings.work_date()
    with site_client(hub, site["api_key"]) as shop:
        ids = [shop.post("/api/v1/slots", json=slot_body(today, keyword=f"kw {i}", code=f"c{i % 2}")).json()["id"]
               for i in range(5)]
        future = shop.post("/api/v1/slots", json=slot_body(today, start_date=str(today + timedelta(days=30)),
                                                           end_date=str(today + timedelta(days=40)))).json()
        shop.delete(f"/api/v1/slots/{ids[0]}")
        seen, after = [], 0
        for _ in range(10):
            page = shop.get("/api/v1/slots", params={"limit": 2, "after_id": after}).json()
            seen += [s["id"] for s in page["items"]]
            if page["next_after_id"] is None:
                break
            after = page["next_after_id"]
        assert seen == ids + [future["id"]]
        active = [s["id"] for s in shop.get("/api/v1/slots", params={"is_active": True}).json()["items"]]
        assert active == ids[1:] + [future["id"]]
        assert [s["id"] for s in shop.get("/api/v1/slots", params={"code": "c1"}).json()["items"]] == [ids[1], ids[3]]
        assert [s["id"] for s in shop.get("/api/v1/slots", params={"keyword": "KW 4"}).json()["items"]] == [ids[4]]
        on_today = shop.get("/api/v1/slots", params={"active_on": str(today)}).json()["items"]
        assert future["id"] not in [s["id"] for s in on_today] and len(on_today) == 5
        listed = {s["id"]: s for s in shop.get("/api/v1/slots").json()["items"]}
        assert listed[ids[1]]["today"]["target_count"] == 5 and listed[future["id"]]["today"] is None


def test_patch_moves_todays_target_at_once_and_delete_keeps_history(hub, api, settings, sql):
    site = new_site(api, "shop-patch")
    today = settings.work_date()
    with site_client(hub, site["api_key"]) as shop:
        slot = shop.post("/api/v1/slots", json=slot_body(today)).json()
        sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', 3128, 1000)")
        lease = api.get("/api/allocate-work", params={"count": 3}).json()
        assert len(lease["allocations"]) == 3
        patched = shop.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 12, "block_image_cdn": True})
        assert patched.status_code == 200, patched.text
        assert patched.json()["today"]["target_count"] == 12 and patched.json()["block_image_cdn"] is True
        target = sql.execute("SELECT target_count FROM v1_hub_daily_work_tracking WHERE slot_id = %s AND work_date = %s",
                             (slot["id"], today)).fetchone()[0]
        assert target == 12
        # never below what is in flight
        lowered = shop.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 1}).json()
        assert lowered["daily_work_count"] == 1 and lowered["today"]["target_count"] == 3
        deleted = shop.delete(f"/api/v1/slots/{slot['id']}")
        assert deleted.status_code == 200 and deleted.json()["is_active"] is False
        assert shop.get(f"/api/v1/slots/{slot['id']}").json()["is_active"] is False
        assert api.get("/api/allocate-work").json()["status"] == "no_work"
        # submitting the leases still works and the history is there
        for allocation in lease["allocations"]:
            api.post("/api/submit-result", json={"allocation_key": allocation["allocation_key"], "status": "success",
                                                 "execution_time_ms": 900, "rank": 4})
        progress = shop.get(f"/api/v1/slots/{slot['id']}/progress").json()
        assert progress["days"][-1]["success_count"] == 3
    actions = [r[0] for r in sql.execute("SELECT action FROM v1_hub_audit_log WHERE table_name = 'v1_hub_work_slots' "
                                         "AND record_id = %s ORDER BY id", (slot["id"],))]
    assert actions == ["INSERT", "UPDATE", "UPDATE", "UPDATE"]


def test_progress_shows_daily_ledger_and_rank_history(hub, api, settings, sql):
    site = new_site(api, "shop-progress")
    today = settings.work_date()
    yesterday = today - timedelta(days=1)
    with site_client(hub, site["api_key"]) as shop:
        slot = shop.post("/api/v1/slots", json=slot_body(today, daily_work_count=4)).json()
        sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', 3128, 1000)")
        lease = api.get("/api/allocate-work", params={"count": 3}).json()["allocations"]
        outcomes = [("success", 7), ("success", 3), ("blocked", None)]
        for allocation, (status, rank) in zip(lease, outcomes):
            reply = api.post("/api/submit-result", json={
                "allocation_key": allocation["allocation_key"], "status": status, "execution_time_ms": 1000,
                "rank": rank, "block_type": "captcha" if status == "blocked" else None})
            assert reply.status_code == 200, reply.text
        # an archived day from last week, and its rollup, come back too
        old = today - timedelta(days=5)
        sql.execute("INSERT INTO v1_hub_daily_work_tracking_archive (id, slot_id, work_date, target_count, "
                    "allocated_count, success_count, failed_count) VALUES (-1, %s, %s, 4, 5, 4, 1)", (slot["id"], old))
        sql.execute("INSERT INTO v1_hub_stats_daily_slot (work_date, slot_id, results, best_rank, avg_rank) "
                    "VALUES (%s, %s, 5, 2, 4.5)", (old, slot["id"]))
        reply = shop.get(f"/api/v1/slots/{slot['id']}/progress",
                         params={"from": str(today - timedelta(days=6)), "to": str(today)})
        assert reply.status_code == 200, reply.text
        progress = reply.json()
        assert progress["slot"]["id"] == slot["id"] and progress["from"] == str(today - timedelta(days=6))
        days = {d["work_date"]: d for d in progress["days"]}
        assert days[str(old)]["archived"] is True and days[str(old)]["success_count"] == 4
        live = days[str(today)]
        assert (live["target_count"], live["success_count"], live["blocked_count"], live["in_flight_count"]) == (4, 2, 1, 0)
        assert live["remaining_count"] == 2 and live["completion_rate"] == 50
        ranks = {r["work_date"]: r for r in progress["rank_history"]}
        assert ranks[str(today)]["checks"] == 3 and ranks[str(today)]["best_rank"] == 3
        assert ranks[str(today)]["avg_rank"] == 5 and ranks[str(today)]["source"] == "results"
        assert ranks[str(old)]["source"] == "rollup" and ranks[str(old)]["best_rank"] == 2
        assert progress["totals"]["success_count"] == 6
        # default range: the last 7 days ending today
        default = shop.get(f"/api/v1/slots/{slot['id']}/progress").json()
        assert default["to"] == str(today) and default["from"] == str(today - timedelta(days=6))
        assert str(yesterday) not in {d["work_date"] for d in default["days"]}
