"""Keys and roles: admin key, site keys (hashed, rotatable, disable-able), fleet token."""

from __future__ import annotations

import hashlib

import httpx

from tests.api.customer_helpers import assert_error, new_site, site_client, slot_body
from tests.conftest import ADMIN_KEY, HubThread, make_settings


def test_missing_or_wrong_key_is_401_and_wrong_role_is_403(hub, api, anon, settings):
    assert_error(anon.get("/api/v1/slots"), 401, "unauthorized")
    assert_error(anon.get("/api/admin/sites"), 401, "unauthorized")
    assert_error(anon.get("/api/v1/slots", headers={"Authorization": "Bearer whs_not-a-key"}), 401, "unauthorized")
    assert_error(anon.get("/api/v1/slots", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    site = new_site(api, "shop-auth")
    with site_client(hub, site["api_key"]) as shop:
        assert shop.get("/api/v1/slots").status_code == 200
        # a site key is not an admin key
        assert_error(shop.get("/api/admin/sites"), 403, "forbidden")
        assert_error(shop.get("/api/admin/audit-log"), 403, "forbidden")
        assert_error(shop.post("/api/admin/sites", json={"name": "evil"}), 403, "forbidden")


def test_site_keys_are_stored_hashed_and_never_listed(hub, api, sql):
    site = new_site(api, "shop-hash")
    key = site["api_key"]
    assert key.startswith("whs_") and len(key) > 40
    stored = sql.execute("SELECT api_key_hash FROM v1_hub_external_sites WHERE id = %s", (site["id"],)).fetchone()[0]
    assert stored == hashlib.sha256(key.encode()).hexdigest() and key not in stored
    listing = api.get("/api/admin/sites").text + api.get(f"/api/admin/sites/{site['id']}").text
    assert key not in listing and stored not in listing
    audit = api.get("/api/admin/audit-log", params={"table_name": "v1_hub_external_sites"}).text
    assert key not in audit and stored not in audit


def test_rotated_key_replaces_the_old_one_at_once(hub, api):
    site = new_site(api, "shop-rotate")
    old = site["api_key"]
    rotated = api.post(f"/api/admin/sites/{site['id']}/rotate-key")
    assert rotated.status_code == 200
    new = rotated.json()["api_key"]
    assert new != old and rotated.json()["api_key_prefix"] == new[:10]
    with site_client(hub, old) as shop_old, site_client(hub, new) as shop_new:
        assert_error(shop_old.get("/api/v1/slots"), 401, "unauthorized")
        assert shop_new.get("/api/v1/slots").status_code == 200


def test_disabled_site_gets_403_and_enabling_restores_it(hub, api):
    site = new_site(api, "shop-disable")
    with site_client(hub, site["api_key"]) as shop:
        assert api.post(f"/api/admin/sites/{site['id']}/disable").json()["is_active"] is False
        assert_error(shop.get("/api/v1/slots"), 403, "site_disabled")
        assert api.post(f"/api/admin/sites/{site['id']}/enable").json()["is_active"] is True
        assert shop.get("/api/v1/slots").status_code == 200


def test_fleet_token_guards_worker_routes_only_when_set(db_url, tmp_path):
    settings = make_settings(db_url, tmp_path, fleet_token="fleet-secret-123")
    hub = HubThread(settings).start()
    try:
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            assert_error(c.get("/api/allocate-work"), 401, "unauthorized")
            fleet = {"Authorization": "Bearer fleet-secret-123"}
            assert c.get("/api/allocate-work", headers=fleet).status_code == 200
            assert c.get("/api/allocate-work", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
            # the fleet token is not a customer or admin key
            assert_error(c.get("/api/v1/slots", headers=fleet), 403, "forbidden")
            assert_error(c.get("/api/admin/sites", headers=fleet), 403, "forbidden")
            site = c.post("/api/admin/sites", json={"name": "s"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert_error(c.get("/api/allocate-work", headers={"Authorization": f"Bearer {site.json()['api_key']}"}),
                         403, "forbidden")
    finally:
        hub.stop()


def test_admin_key_is_generated_and_kept_when_unset(db_url, tmp_path):
    settings = make_settings(db_url, tmp_path, admin_key=None)
    first = settings.resolved_admin_key()
    assert first.startswith("whadm_") and settings.admin_key_file.exists()
    assert (settings.admin_key_file.stat().st_mode & 0o077) == 0  # readable by the owner only
    hub = HubThread(settings).start()
    try:
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            assert c.get("/api/admin/sites", headers={"Authorization": f"Bearer {first}"}).status_code == 200
            assert_error(c.get("/api/admin/sites", headers={"Authorization": f"Bearer {ADMIN_KEY}"}), 401,
                         "unauthorized")
    finally:
        hub.stop()
    assert make_settings(db_url, tmp_path, admin_key=None).resolved_admin_key() == first


def test_admin_acts_for_any_site_and_sites_never_see_each_other(hub, api, settings):
    a, b = new_site(api, "shop-a"), new_site(api, "shop-b")
    today = settings.work_date()
    with site_client(hub, a["api_key"]) as shop_a, site_client(hub, b["api_key"]) as shop_b:
        slot = shop_a.post("/api/v1/slots", json=slot_body(today)).json()
        assert slot["external_site_id"] == a["id"]
        for call in (lambda: shop_b.get(f"/api/v1/slots/{slot['id']}"),
                     lambda: shop_b.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 9}),
                     lambda: shop_b.delete(f"/api/v1/slots/{slot['id']}"),
                     lambda: shop_b.get(f"/api/v1/slots/{slot['id']}/progress")):
            assert_error(call(), 404, "slot_not_found")
        assert shop_b.get("/api/v1/slots").json()["items"] == []
        # a site cannot create for another site, nor list another's by site_id
        assert_error(shop_b.post("/api/v1/slots", json=slot_body(today, site_id=a["id"])), 422, "validation_error")
        assert shop_b.get("/api/v1/slots", params={"site_id": a["id"]}).json()["items"] == []
        # nothing changed for shop a
        assert shop_a.get(f"/api/v1/slots/{slot['id']}").json()["daily_work_count"] == 5
    # the admin sees and changes any site's slot, and creates for a chosen site
    assert api.get(f"/api/v1/slots/{slot['id']}").status_code == 200
    assert api.patch(f"/api/v1/slots/{slot['id']}", json={"daily_work_count": 7}).json()["daily_work_count"] == 7
    made = api.post("/api/v1/slots", json=slot_body(today, site_id=b["id"])).json()
    assert made["external_site_id"] == b["id"]
    assert [s["id"] for s in api.get("/api/v1/slots", params={"site_id": b["id"]}).json()["items"]] == [made["id"]]
    assert_error(api.post("/api/v1/slots", json=slot_body(today, site_id=999999)), 422, "validation_error")
