"""Security under hostile use (SPEC sections 3, 4, 8): keys hashed and compared in constant time, site
isolation, rate limiting of failed authentication, forged X-Forwarded-For, no secret in any log line
or listing, and the dashboard's CSRF protection."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import httpx
import pytest

from tests.conftest import ADMIN_KEY, HubThread, make_settings
from tests.reliability.load import hub_today, seed_work
from tests.reliability.test_hostile import assert_error_contract

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _slot(today, **kw):
    return {"keyword": "k", "code": "c", "start_date": str(today), "end_date": str(today + timedelta(days=1)),
            "daily_work_count": 2, **kw}


def test_failed_authentication_is_rate_limited(db_url, tmp_path):
    hub = HubThread(make_settings(db_url, tmp_path, auth_fail_limit=3)).start()
    try:
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            for i in range(3):
                assert_error_contract(c.get("/api/admin/sites", headers={"Authorization": f"Bearer wrong{i}"}), 401)
            r = c.get("/api/admin/sites", headers={"Authorization": "Bearer wrong-again"})
            err = assert_error_contract(r, 429)
            assert err["code"] == "too_many_failed_authentications" and int(r.headers["Retry-After"]) > 0
            # while limited, even the right key is refused: guessing gains nothing
            assert_error_contract(c.get("/api/admin/sites", headers=AUTH), 429)
            assert_error_contract(c.get("/api/v1/slots", headers={"Authorization": "Bearer whs_guess"}), 429)
    finally:
        hub.stop()


def test_keys_stored_hashed_and_compared_in_constant_time(api, anon, sql, monkeypatch):
    from workhub import auth

    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    site = api.post("/api/admin/sites", json={"name": "hashed"}).json()
    key = site["api_key"]
    assert calls, "the admin key was not compared with hmac.compare_digest"
    row = sql.execute("SELECT * FROM v1_hub_external_sites WHERE id = %s", (site["id"],)).fetchone()
    assert key not in repr(row), "a site key is stored in plain text"
    assert hashlib.sha256(key.encode()).hexdigest() in repr(row)
    assert anon.get("/api/v1/slots", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # a rotated key replaces the old one at once
    new = api.post(f"/api/admin/sites/{site['id']}/rotate-key").json()["api_key"]
    assert_error_contract(anon.get("/api/v1/slots", headers={"Authorization": f"Bearer {key}"}), 401)
    assert anon.get("/api/v1/slots", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_site_isolation(api, anon):
    a = api.post("/api/admin/sites", json={"name": "iso-a"}).json()["api_key"]
    b = api.post("/api/admin/sites", json={"name": "iso-b"}).json()["api_key"]
    ha, hb = {"Authorization": f"Bearer {a}"}, {"Authorization": f"Bearer {b}"}
    today = hub_today()
    slot = anon.post("/api/v1/slots", headers=ha, json=_slot(today, external_ref="x1")).json()
    assert anon.get(f"/api/v1/slots/{slot['id']}", headers=ha).status_code == 200
    for method, path, body in (("GET", f"/api/v1/slots/{slot['id']}", None),
                               ("PATCH", f"/api/v1/slots/{slot['id']}", {"daily_work_count": 99}),
                               ("DELETE", f"/api/v1/slots/{slot['id']}", None),
                               ("GET", f"/api/v1/slots/{slot['id']}/progress", None)):
        r = anon.request(method, path, headers=hb, json=body)
        assert_error_contract(r, 403, 404)
    assert [s["id"] for s in anon.get("/api/v1/slots", headers=hb).json()["items"]] == []
    # the same external_ref in another site is another slot, not site a's
    other = anon.post("/api/v1/slots", headers=hb, json=_slot(today, external_ref="x1"))
    assert other.status_code == 201 and other.json()["id"] != slot["id"]
    # a site key is not an admin key
    assert_error_contract(anon.get("/api/admin/sites", headers=ha), 403)
    got = anon.get(f"/api/v1/slots/{slot['id']}", headers=ha).json()
    assert got["daily_work_count"] == 2 and got["is_active"]


@pytest.mark.parametrize("trusted", [False, True])
def test_forged_x_forwarded_for(db_url, tmp_path, sql, trusted):
    today = hub_today()
    seed_work(sql, slots=1, target=5, start=today, end=today, proxies=1)
    hub = HubThread(make_settings(db_url, tmp_path, trusted_proxies=["127.0.0.1/32"] if trusted else [])).start()
    try:
        r = httpx.get(hub.url + "/api/allocate-work", headers={"X-Forwarded-For": "203.0.113.77"}, timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "allocated"
        # a garbage hop must not be taken for an address either
        r2 = httpx.get(hub.url + "/api/allocate-work", headers={"X-Forwarded-For": "evil, 198.51.100.1x"}, timeout=30)
        assert r2.status_code == 200, r2.text
    finally:
        hub.stop()
    clients = {str(ip) for (ip,) in sql.execute("SELECT host(client_ip) FROM v1_hub_clients")}
    allocs = {str(ip) for (ip,) in sql.execute("SELECT host(client_ip) FROM v1_hub_work_allocations")}
    if trusted:
        assert "203.0.113.77" in clients and "203.0.113.77" in allocs
        assert clients <= {"203.0.113.77", "127.0.0.1"}
    else:
        assert clients == {"127.0.0.1"} and allocs == {"127.0.0.1"}


def test_no_secret_in_logs_or_listings(hub_processes, sql):
    proxy_password = "pxpw-" + uuid.uuid4().hex
    webhook_secret = "whsec-" + uuid.uuid4().hex
    wrong_key = "whs_" + uuid.uuid4().hex + "wrongkey"
    (hub,) = hub_processes(1, env={"HUB_LOG_LEVEL": "DEBUG", "HUB_FLEET_TOKEN": "fleet-" + "t" * 24})
    fleet = {"Authorization": "Bearer fleet-" + "t" * 24}
    secrets_seen = {ADMIN_KEY, proxy_password, webhook_secret, wrong_key, "fleet-" + "t" * 24}
    listings = []
    with httpx.Client(base_url=hub.url, headers=AUTH, timeout=30) as c:
        site = c.post("/api/admin/sites", json={"name": "sec", "webhook_url": "http://127.0.0.1:9/hook",
                                                "webhook_secret": webhook_secret})
        assert site.status_code == 201, site.text
        key = site.json()["api_key"]
        secrets_seen.add(key)
        rotated = c.post(f"/api/admin/sites/{site.json()['id']}/rotate-key").json()["api_key"]
        secrets_seen.add(rotated)
        imported = c.post("/api/admin/proxies", json={"proxies": [
            {"host": "127.0.0.1", "port": 3999, "username": "user", "password": proxy_password}]})
        assert imported.status_code == 201, imported.text
        listings.append(imported)
        today = hub_today()
        slot = c.post("/api/v1/slots", headers={"Authorization": f"Bearer {rotated}"},
                      json=_slot(today, external_ref="s1", daily_work_count=1))
        assert slot.status_code == 201, slot.text
        listings.append(slot)
        # failed authentications (the wrong key must not be echoed or logged)
        for h in ({"Authorization": f"Bearer {wrong_key}"}, {"Authorization": f"Bearer {key}"}):
            r = c.get("/api/v1/slots", headers=h)
            assert r.status_code == 401
            listings.append(r)
        listings.append(c.get("/api/v1/slots", headers={"Authorization": f"Basic {wrong_key}"}))
        # the worker gets its proxy credentials (by design), then submits
        assert_error_contract(c.get("/api/allocate-work", headers={"Authorization": "Bearer nope"}), 401)
        pkg = c.get("/api/allocate-work", headers=fleet).json()["allocations"][0]
        assert pkg["proxy"]["password"] == proxy_password
        done = c.post("/api/submit-result", headers=fleet, json={"allocation_key": pkg["allocation_key"],
                                                                 "status": "success", "execution_time_ms": 5})
        assert done.status_code == 200, done.text
        # every listing an operator or a site sees
        for path in ("/api/admin/sites", f"/api/admin/sites/{site.json()['id']}", "/api/admin/proxies",
                     "/api/admin/clients", "/api/monitor", "/api/admin/alerts", "/metrics", "/readyz",
                     "/api/admin/audit", "/api/admin/maintenance/runs", "/openapi.json"):
            r = c.get(path)
            if r.status_code != 404:
                listings.append(r)
        listings.append(c.get("/api/v1/slots", headers={"Authorization": f"Bearer {rotated}"}))
    hub.stop()
    log_text = hub.log_path.read_text(errors="replace")
    assert log_text.strip(), "the hub wrote no log at all"
    for secret in secrets_seen:
        assert secret not in log_text, f"a secret ({secret[:8]}...) appears in the log"
        for r in listings:
            assert secret not in r.text, f"a secret ({secret[:8]}...) appears in {r.request.method} {r.request.url.path}"
    # the audit log names the acting key's role, never the key
    audit = " ".join(str(r) for r in sql.execute("SELECT * FROM v1_hub_audit_log"))
    for secret in secrets_seen - {proxy_password}:
        assert secret not in audit


def test_dashboard_refuses_posts_without_a_valid_csrf_token(anon):
    page = anon.get("/login")
    assert page.status_code == 200, page.text[:300]
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', page.text)
    assert token, "the login form carries no CSRF token"
    token = token.group(1)
    for sent in (None, "", "forged-" + token[:10], token + "x"):
        data = {"admin_key": ADMIN_KEY, "next": "/"}
        if sent is not None:
            data["csrf_token"] = sent
        r = anon.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 403, (sent, r.status_code)
        assert "admin" not in anon.cookies.get("workhub_session", "") or anon.get("/", follow_redirects=False
                                                                                  ).status_code in (302, 303, 307)
    # a request from another site has the form but not the victim's session: refused as well
    with httpx.Client(base_url=str(anon.base_url), timeout=30) as stranger:
        r = stranger.post("/login", data={"admin_key": ADMIN_KEY, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 403
    ok = anon.post("/login", data={"admin_key": ADMIN_KEY, "csrf_token": token, "next": "/"}, follow_redirects=False)
    assert ok.status_code == 303
    assert anon.get("/", follow_redirects=False).status_code == 200
    # logged in: logout without the (new) token is refused and the session survives
    assert anon.post("/logout", follow_redirects=False).status_code == 403
    assert anon.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 403
    assert anon.get("/", follow_redirects=False).status_code == 200
    fresh = re.search(r'name="csrf_token"\s+value="([^"]+)"', anon.get("/").text).group(1)
    assert anon.post("/logout", data={"csrf_token": fresh}, follow_redirects=False).status_code == 303
    assert anon.get("/", follow_redirects=False).status_code in (302, 303, 307)
