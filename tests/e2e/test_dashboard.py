"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium) against a real hub.

Data is created through the API (sites, slots, proxies, allocations, results). Screenshots of every page
go to the test's tmp folder; with HUB_UPDATE_SCREENSHOTS=1 they also refresh docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ADMIN_KEY, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT_MS = 30_000  # a slow, shared machine: generous waits for real events

SLOTS = [("standing desk", "SD-1001", 12), ("wireless mouse", "WM-2040", 8), ("laptop stand", "LS-3300", 10),
         ("usb-c hub", "UH-4410", 6), ("mechanical keyboard", "MK-5120", 5)]


@pytest.fixture(scope="module")
def browser() -> Browser:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser`"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, hub):
    context = browser.new_context(base_url=hub.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page: Page, key: str = ADMIN_KEY) -> None:
    page.goto("/login")
    page.fill("#admin_key", key)
    page.click("button[type=submit]")


def shot(page: Page, name: str, tmp_path: Path) -> None:
    target = tmp_path / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("HUB_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, SCREENSHOTS / target.name)


def seed_fleet(api: httpx.Client, sql, settings) -> dict:
    """A small fleet's day through the API: two sites, five slots, proxies, leases and mixed results."""
    today = settings.work_date()
    sites = [api.post("/api/admin/sites", json={"name": name}).json() for name in ("shop-north", "shop-south")]
    created = api.post("/api/admin/proxies", json={"proxies": [
        {"host": "127.0.0.1", "port": 3100 + i, "username": f"u{i}", "password": f"secret-pw-{i}", "max_uses": 40}
        for i in range(4)]})
    assert created.status_code == 201, created.text
    slot_ids = []
    for i, (keyword, code, per_day) in enumerate(SLOTS):
        reply = api.post("/api/v1/slots", json={
            "keyword": keyword, "code": code, "start_date": str(today - timedelta(days=3)),
            "end_date": str(today + timedelta(days=20)), "daily_work_count": per_day,
            "block_image_cdn": i % 2 == 0, "cart_click_enabled": i % 2 == 0,
            "external_ref": f"order-{i}", "site_id": sites[i % 2]["id"]})
        assert reply.status_code == 201, reply.text
        slot_ids.append(reply.json()["id"])

    outcomes = ["success"] * 5 + ["failed", "success", "blocked", "success", "success"]
    submitted = 0
    for round_ in range(3):
        got = api.get("/api/allocate-work", params={"instance_number": round_ + 1, "user_folder_number": 2,
                                                     "count": 10}).json()
        assert got["status"] == "allocated", got
        for i, package in enumerate(got["allocations"]):
            status = outcomes[(i + round_) % len(outcomes)]
            body = {"allocation_key": package["allocation_key"], "status": status,
                    "execution_time_ms": 900 + 37 * i}
            if status == "success":
                body.update(rank=3 + (i + round_) % 9, page=1,
                            products=[{"code": package["slot"]["code"], "name": package["slot"]["keyword"],
                                       "price": 19.9, "rank": 3 + (i + round_) % 9}])
            elif status == "blocked":
                body["block_type"] = "captcha"
            else:
                body["error_message"] = "timeout"
            reply = api.post("/api/submit-result", json=body)
            assert reply.status_code == 200, reply.text
            submitted += 1
    # the first proxy's agent reports its exit IP, then a new one: the old IP goes to the history
    first_proxy = created.json()["ids"][0]
    for ip in ("203.0.113.7", "203.0.113.8"):
        beat = api.post(f"/api/proxies/{first_proxy}/heartbeat", json={"ip": ip})
        assert beat.status_code == 200, beat.text
    # a couple of leases still in flight
    assert api.get("/api/allocate-work", params={"count": 2}).json()["status"] == "allocated"

    # an earlier day of the first slot, and an alert and maintenance run, arranged directly
    sql.execute("""INSERT INTO v1_hub_daily_work_tracking (slot_id, work_date, target_count, allocated_count,
                   success_count, failed_count, blocked_count) VALUES (%s, %s, 12, 14, 11, 2, 1)""",
                (slot_ids[0], today - timedelta(days=1)))
    sql.execute("""INSERT INTO v1_hub_alerts (rule, subject, severity, message, value, threshold)
                   VALUES ('block_rate', 'fleet', 'warning', 'Block rate 12.5% over the last hour', 12.5, 10)""")
    sql.execute("""INSERT INTO v1_hub_maintenance_runs (job, started_at, finished_at, status, rows_affected, run_by)
                   VALUES ('daily', now() - interval '5 min', now() - interval '4 min', 'ok',
                           '{"archived_allocations": 120}', 'scheduler')""")
    return {"slots": slot_ids, "submitted": submitted}


def kpi(page: Page, name: str) -> int:
    return int(page.locator(f"[data-kpi={name}]").inner_text().replace(",", ""))


def chart_drawn(page: Page, canvas_id: str) -> bool:
    """Chart.js owns the canvas and has painted pixels on it."""
    return page.evaluate("""(id) => {
        const canvas = document.getElementById(id);
        const chart = window.Chart && Chart.getChart(canvas);
        if (!chart || canvas.width === 0) return false;
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
        return false;
    }""", canvas_id)


# ---------------------------------------------------------------- tests
def test_login_is_required(page, anon, api):
    # plain HTTP: pages redirect to the login form; the API keeps its JSON errors
    reply = anon.get("/clients", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/clients"
    partial = anon.get("/ui/kpis", headers={"HX-Request": "true"}, follow_redirects=False)
    assert partial.status_code == 401 and partial.headers["hx-redirect"] == "/login"
    api_reply = anon.get("/api/monitor")
    assert api_reply.status_code == 401 and api_reply.json()["error"]["code"] == "unauthorized"
    assert anon.get("/static/vendor/htmx-2.0.11.min.js").status_code == 200
    # a form post without the session's CSRF token is refused
    assert anon.post("/login", data={"admin_key": ADMIN_KEY}).status_code == 403

    page.goto("/proxies")
    expect(page).to_have_url(re.compile(r"/login\?next=/proxies$"))
    login(page, "whadm_wrong_key")
    expect(page.locator(".error")).to_contain_text("not the admin key")
    assert ADMIN_KEY not in page.content()
    login(page)
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("h1")).to_contain_text("Today")
    # the session cookie is HttpOnly and SameSite=Lax
    cookie = next(c for c in page.context.cookies() if c["name"] == "workhub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))


def test_every_page_renders_with_data(page, api, sql, settings, tmp_path):
    fleet = seed_fleet(api, sql, settings)
    login(page)
    shot_dir = tmp_path

    # overview: KPIs, progress bars, trend chart
    expect(page.locator("[data-kpi=active_slots]")).to_have_text(str(len(SLOTS)))
    assert kpi(page, "in_flight") == 2
    assert kpi(page, "clients_online") == 1
    ledger = sql.execute("SELECT sum(success_count) FROM v1_hub_daily_work_tracking WHERE work_date = %s",
                         (settings.work_date(),)).fetchone()[0]
    assert kpi(page, "success") == ledger > 0
    expect(page.locator("table.slots tbody tr")).to_have_count(len(SLOTS))
    expect(page.locator("table.slots .bar").first).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('trend-chart'))")
    assert chart_drawn(page, "trend-chart")
    expect(page.locator("#firing-alerts")).to_contain_text("Block rate 12.5%")
    shot(page, "overview", shot_dir)

    # search and sort through htmx
    page.fill("input[name=q]", "mouse")
    expect(page.locator("table.slots tbody tr")).to_have_count(1)
    expect(page.locator("table.slots tbody")).to_contain_text("WM-2040")
    page.fill("input[name=q]", "")
    expect(page.locator("table.slots tbody tr")).to_have_count(len(SLOTS))
    page.click("a[data-sort=keyword]")
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Keyword")
    keywords = page.locator("table.slots tbody tr td:nth-child(2) > a").all_inner_texts()
    assert keywords == sorted(k for k, _, _ in SLOTS)
    page.click("a[data-sort=keyword]")
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Keyword")
    keywords = page.locator("table.slots tbody tr td:nth-child(2) > a").all_inner_texts()
    assert keywords == sorted((k for k, _, _ in SLOTS), reverse=True)

    # slot page: today's ledger, both charts, recent results
    slot_id = fleet["slots"][0]
    page.goto(f"/slots/{slot_id}")
    expect(page.locator("h1")).to_contain_text("standing desk")
    row = sql.execute("SELECT success_count FROM v1_hub_daily_work_tracking WHERE slot_id = %s AND work_date = %s",
                      (slot_id, settings.work_date())).fetchone()
    expect(page.locator("[data-today=success]")).to_have_text(str(row[0]))
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('rank-chart'))")
    assert chart_drawn(page, "progress-chart") and chart_drawn(page, "rank-chart")
    bars = page.evaluate("Chart.getChart(document.getElementById('progress-chart')).data.labels.length")
    assert bars == 2  # yesterday and today
    results = sql.execute("SELECT count(*) FROM v1_hub_work_results WHERE slot_id = %s", (slot_id,)).fetchone()[0]
    expect(page.locator("section:has(h2:text('Recent results')) tbody tr")).to_have_count(results)
    shot(page, "slot", shot_dir)

    page.goto("/clients")
    expect(page.locator("tr[data-client='127.0.0.1']")).to_contain_text("online")
    shot(page, "clients", shot_dir)

    page.goto("/proxies")
    expect(page.locator("tr[data-proxy]")).to_have_count(4)
    used = sql.execute("SELECT sum(use_count) FROM v1_hub_proxies").fetchone()[0]
    shown = sum(int(t.split("/")[0]) for t in page.locator("tr[data-proxy] .bar em").all_inner_texts())
    assert shown == used > 0
    assert "secret-pw" not in page.content()  # passwords never listed
    first = page.locator("tr[data-proxy]").first
    expect(first).to_contain_text("203.0.113.8")
    first.locator("summary").click()
    expect(first.locator("details li")).to_contain_text("203.0.113.7")
    shot(page, "proxies", shot_dir)

    page.goto("/analysis")
    expect(page.locator("section:has(h2:text('Block types'))")).to_contain_text("captcha")
    expect(page.locator("section:has(h2:text('Settings combinations')) tbody tr").first).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('completion-chart'))")
    assert chart_drawn(page, "completion-chart")
    shot(page, "analysis", shot_dir)

    page.goto("/alerts")
    expect(page.locator("tbody")).to_contain_text("block_rate")
    shot(page, "alerts", shot_dir)

    page.goto("/maintenance")
    expect(page.locator(".cards")).to_contain_text("daily")
    expect(page.locator("tbody")).to_contain_text("archived_allocations: 120")
    shot(page, "maintenance", shot_dir)

    # a phone: the overview fits the width (no sideways scrolling of the page itself)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "overview-phone", shot_dir)


def test_overview_reflects_a_result_after_refresh(page, api, sql, settings):
    seed_fleet(api, sql, settings)
    login(page)
    before = kpi(page, "success")
    in_flight = kpi(page, "in_flight")
    # finish one of the leases still in flight, through the worker API
    got = api.get("/api/allocate-work", params={"count": 1}).json()
    assert got["status"] == "allocated"
    package = got["allocations"][0]
    reply = api.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "success",
                                                 "execution_time_ms": 800, "rank": 2, "page": 1})
    assert reply.json()["counted"] is True
    page.reload()
    assert kpi(page, "success") == before + 1
    assert kpi(page, "in_flight") == in_flight
    slot_row = page.locator(f"tr[data-slot='{package['slot']['id']}'] [data-col=success]")
    done = sql.execute("SELECT success_count FROM v1_hub_daily_work_tracking WHERE slot_id = %s AND work_date = %s",
                       (package["slot"]["id"], settings.work_date())).fetchone()[0]
    expect(slot_row).to_have_text(str(done))
    # the auto-refresh partial serves the same live figures
    fresh = page.evaluate("fetch('/ui/kpis').then(r => r.text())")
    assert f'data-kpi="success">{before + 1}<' in fresh
