"""The dashboard's session middleware applies to dashboard pages only: the worker, customer and admin
APIs, metrics and health probes never read nor set the session cookie."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_KEY
from workhub.dashboard.views import SESSION_COOKIE


def _login(client: httpx.Client) -> None:
    page = client.get("/login")
    assert page.status_code == 200 and SESSION_COOKIE in page.headers.get("set-cookie", "")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/login", data={"csrf_token": csrf, "admin_key": ADMIN_KEY, "next": "/"},
                       follow_redirects=False)
    assert done.status_code == 303 and SESSION_COOKIE in done.headers.get("set-cookie", "")


def test_api_routes_get_no_session_cookie(hub, sql):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('laptop', '12345', CURRENT_DATE, CURRENT_DATE, 2)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 3128)")
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        _login(browser)
        assert browser.cookies.get(SESSION_COOKIE)
        assert browser.get("/", follow_redirects=False).status_code == 200  # the dashboard session works
        # the same browser (sending its session cookie) on the API, metrics and health routes
        lease = browser.get("/api/allocate-work")
        key = lease.json()["allocations"][0]["allocation_key"]
        replies = [
            lease,
            browser.post("/api/submit-result", json={"allocation_key": key, "status": "success",
                                                     "execution_time_ms": 10}),
            browser.post("/api/submit-result", json={"status": "success"}),  # 422
            browser.get("/api/v1/slots", headers={"Authorization": f"Bearer {ADMIN_KEY}"}),
            browser.get("/api/admin/no-such-route"),  # 404
            browser.get("/metrics"),
            browser.get("/healthz"),
            browser.get("/readyz"),
        ]
        for reply in replies:
            assert "set-cookie" not in reply.headers, reply.request.url
            assert "cookie" not in reply.headers.get("vary", "").lower(), reply.request.url
        assert [r.status_code for r in replies] == [200, 200, 422, 200, 404, 200, 200, 200]
        # the session is untouched by those requests and still logs the browser in
        assert browser.get("/clients", follow_redirects=False).status_code == 200


def test_dashboard_pages_still_use_the_session(anon):
    # no session: a page redirects to the login, whose form starts a session (CSRF token)
    page = anon.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    login = anon.get("/login")
    assert SESSION_COOKIE in login.headers["set-cookie"] and "httponly" in login.headers["set-cookie"].lower()
    # a wrong key is refused, a missing CSRF token too
    csrf = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert anon.post("/login", data={"csrf_token": csrf, "admin_key": "wrong"}).status_code == 401
    assert anon.post("/login", data={"admin_key": ADMIN_KEY}).status_code == 403


def test_session_middleware_is_skipped_outside_the_dashboard():
    """At the ASGI level: the session is neither loaded nor saved for the sessionless paths, even when a
    route would write to it; dashboard paths get it (and a Set-Cookie when it changes)."""
    import asyncio

    from workhub.dashboard.views import DashboardSessions

    seen = {}

    async def probe(scope, receive, send):
        seen[scope["path"]] = "session" in scope
        if "session" in scope:
            scope["session"]["touched"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = DashboardSessions(probe, secret_key="s" * 32, session_cookie=SESSION_COOKIE)

    async def call(path):
        messages = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"cookie", b"other=1")],
                 "query_string": b"", "http_version": "1.1"}
        await app(scope, receive, send)
        return dict(messages[0]["headers"])

    for path in ("/api/allocate-work", "/api/submit-result", "/api/v1/slots", "/metrics", "/healthz",
                 "/readyz", "/static/app.css"):
        headers = asyncio.run(call(path))
        assert seen[path] is False and b"set-cookie" not in headers, path
    for path in ("/", "/login", "/clients", "/ui/kpis", "/apix"):
        headers = asyncio.run(call(path))
        assert seen[path] is True and SESSION_COOKIE.encode() in headers[b"set-cookie"], path


def test_the_app_compiles_every_template_up_front(settings):
    from workhub.app import create_app
    from workhub.dashboard import views

    views.templates.env.cache.clear()
    create_app(settings)
    on_disk = {p.relative_to(views.HERE / "templates").as_posix()
               for p in (views.HERE / "templates").rglob("*.html")}
    compiled = {name for (_, name) in views.templates.env.cache}
    assert on_disk and on_disk <= compiled
