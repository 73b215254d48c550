"""Admin: sites (create, list, change, disable) and clients with their online status."""

from __future__ import annotations

from datetime import timedelta

from tests.api.customer_helpers import assert_error, new_site


def test_sites_create_list_patch_and_conflicts(api, sql):
    a = new_site(api, "alpha")
    assert a["api_key_prefix"] == a["api_key"][:10] and a["webhook_secret"] is None
    b = new_site(api, "beta", webhook_url="https://beta.example/hook", webhook_secret="a-long-secret")
    assert b["webhook_url"] == "https://beta.example/hook" and b["has_webhook_secret"] is True
    assert_error(api.post("/api/admin/sites", json={"name": "alpha"}), 409, "conflict")
    for bad in ({"name": ""}, {"name": "   "}, {"name": "x", "webhook_url": "not a url"},
                {"name": "x", "webhook_secret": "short"}, {"name": "x", "extra": 1}):
        assert_error(api.post("/api/admin/sites", json=bad), 422, "validation_error")
    listed = api.get("/api/admin/sites").json()
    assert [s["name"] for s in listed["items"]] == ["alpha", "beta"] and listed["next_after_id"] is None
    assert all("api_key" not in s and "webhook_secret" not in s for s in listed["items"])
    page = api.get("/api/admin/sites", params={"limit": 1}).json()
    assert [s["name"] for s in page["items"]] == ["alpha"] and page["next_after_id"] == a["id"]
    assert api.patch(f"/api/admin/sites/{a['id']}", json={"name": "alpha-2"}).json()["name"] == "alpha-2"
    assert_error(api.patch(f"/api/admin/sites/{a['id']}", json={"name": "beta"}), 409, "conflict")
    removed = api.patch(f"/api/admin/sites/{b['id']}", json={"webhook_url": None}).json()
    assert removed["webhook_url"] is None and removed["has_webhook_secret"] is False
    api.post(f"/api/admin/sites/{a['id']}/disable")
    assert [s["name"] for s in api.get("/api/admin/sites", params={"is_active": False}).json()["items"]] == ["alpha-2"]
    assert_error(api.get("/api/admin/sites/424242"), 404, "site_not_found")
    assert_error(api.post("/api/admin/sites/424242/rotate-key"), 404, "site_not_found")
    assert sql.execute("SELECT count(*) FROM v1_hub_external_sites").fetchone()[0] == 2


def test_clients_listed_with_online_status(api, anon, sql, settings):
    anon.get("/api/allocate-work")  # registers 127.0.0.1 now
    sql.execute("INSERT INTO v1_hub_clients (client_ip, first_seen_at, last_seen_at) VALUES "
                "('10.0.0.7', %(old)s, %(old)s)", {"old": settings.now() - timedelta(hours=2)})
    reply = api.get("/api/admin/clients").json()
    assert reply["total"] == 2 and reply["online"] == 1 and reply["online_window_seconds"] == 600
    status = {c["client_ip"]: c["online"] for c in reply["items"]}
    assert status == {"127.0.0.1": True, "10.0.0.7": False}
    offline = api.get("/api/admin/clients", params={"online": False}).json()["items"]
    assert [c["client_ip"] for c in offline] == ["10.0.0.7"]
