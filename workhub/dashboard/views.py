"""The operator dashboard: server-rendered pages (Jinja2 + htmx) behind an admin login.

- Login takes the admin key once and keeps a signed session cookie (Starlette's SessionMiddleware,
  SameSite=Lax); every state-changing form carries a per-session CSRF token.
- Pages redirect to /login when the session is missing; /api/... keeps its JSON error contract.
- htmx partials under /ui/... refresh dashboard data every HUB_CACHE_DASHBOARD_SECONDS and statistics
  every HUB_CACHE_STATS_SECONDS; statistics are also cached on the server for that long.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined
from markupsafe import Markup
from starlette.middleware.sessions import SessionMiddleware

from workhub import __version__
from workhub.config import Settings
from workhub.dashboard import data
from workhub.errors import HubError
from workhub.web import client_ip, db_of, read_db_of, settings_of

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "workhub_session"
SESSION_MAX_AGE = 12 * 3600
# everything is served by the hub itself (vendored htmx and Chart.js): no outside origin is allowed
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")

_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- template helpers
def _fmt_time(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value)
    if isinstance(value, str):
        try:  # the capability modules hand timestamps over as ISO strings
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _fmt_number(value) -> str:
    if value is None or isinstance(value, Undefined):
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _humanize(name: str) -> str:
    return str(name).replace("_", " ").capitalize()


def _fmt_cell(value) -> Markup | str:
    """One value of a generic table (the analysis functions decide their own columns)."""
    if value is True:
        return Markup('<span class="yes">yes</span>')
    if value is False:
        return Markup('<span class="no">no</span>')
    if value is None:
        return "—"
    if isinstance(value, (int, float, Decimal)):
        return _fmt_number(float(value) if isinstance(value, Decimal) else value)
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_TIME.match(value)):
        return _fmt_time(value)
    if isinstance(value, (dict, list)):
        return ", ".join(str(v) for v in value) if isinstance(value, list) else json.dumps(value)
    return str(value)


templates.env.filters.update(time=_fmt_time, number=_fmt_number, humanize=_humanize, cell=_fmt_cell)


# ---------------------------------------------------------------- sessions, login, CSRF
class LoginRequired(Exception):
    pass


def session_secret(settings: Settings) -> str:
    """HUB_SESSION_SECRET, or a random secret kept under the data folder (shared by all hub processes)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.data_dir / "session_secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # create-exclusive, so two processes starting together end up with one secret
    try:
        with open(path, "x") as fh:
            fh.write(secret + "\n")
        path.chmod(0o600)
    except FileExistsError:
        return path.read_text().strip()
    return secret


def _admin_mark(request: Request) -> str:
    """What the session stores for a login: bound to the admin key, so changing the key logs everyone out."""
    key = request.app.state.admin_key.encode()
    return hmac.new(key, b"workhub-dashboard-session", hashlib.sha256).hexdigest()


def is_logged_in(request: Request) -> bool:
    mark = request.session.get("admin")
    return isinstance(mark, str) and hmac.compare_digest(mark, _admin_mark(request))


def require_login(request: Request) -> None:
    if not is_logged_in(request):
        raise LoginRequired()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> dict:
    """Parse the form of a state-changing request and verify its CSRF token (form field or header)."""
    form = await request.form()
    sent = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
    expected = request.session.get("csrf") or ""
    if not expected or not hmac.compare_digest(str(sent), expected):
        raise HubError(403, "csrf_failed", "The form has expired; reload the page and try again.")
    return dict(form)


def _safe_next(target: str | None) -> str:
    # only local paths: no scheme, no host, no protocol-relative //host
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render(request: Request, name: str, context: dict | None = None, status_code: int = 200,
           headers: dict | None = None) -> HTMLResponse:
    settings = settings_of(request)
    ctx = {"request": request, "csrf_token": csrf_token(request), "version": __version__,
           "refresh_data": settings.cache_dashboard_seconds, "refresh_stats": settings.cache_stats_seconds,
           "path": request.url.path, "now": settings.now().astimezone(settings.tz), "tz": settings.timezone}
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=headers)
    # pages show live figures and carry a CSRF token: never cached by the browser or a proxy
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _partial_headers(seconds: int) -> dict:
    # the browser may reuse a partial for as long as the server would cache its data
    return {"Cache-Control": f"private, max-age={seconds}"}


# ---------------------------------------------------------------- login / logout
@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/"):
    if is_logged_in(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    limiter = request.app.state.auth_limiter
    ip = client_ip(request)
    try:
        form = await check_csrf(request)
        limiter.check(ip)
    except HubError as exc:
        return render(request, "login.html", {"next": "/", "error": exc.message}, status_code=exc.status)
    target = _safe_next(form.get("next"))
    key = str(form.get("admin_key") or "").strip()
    if not key or not hmac.compare_digest(key.encode(), request.app.state.admin_key.encode()):
        limiter.record_failure(ip)
        return render(request, "login.html", {"next": target, "error": "That is not the admin key."},
                      status_code=401)
    request.session.clear()  # a fresh session (and CSRF token) on login: no session fixation
    request.session["admin"] = _admin_mark(request)
    request.session["csrf"] = secrets.token_urlsafe(32)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request):
    await check_csrf(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ---------------------------------------------------------------- pages
@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, q: str = "", sort: str = "completion", dir: str = "asc",
                        page: int = 1):
    require_login(request)
    page_data = await data.overview_page(read_db_of(request), settings_of(request), search=q, sort=sort,
                                         direction=dir, page=page)
    return render(request, "overview.html", page_data)


@router.get("/slots/{slot_id}", response_class=HTMLResponse)
async def slot_page(request: Request, slot_id: int):
    require_login(request)
    detail = await read_db_of(request).run(data.slot_detail, settings_of(request), slot_id)
    if detail is None:
        return render(request, "not_found.html", {"what": f"slot {slot_id}"}, status_code=404)
    return render(request, "slot.html", detail)


@router.get("/clients", response_class=HTMLResponse)
async def clients_page(request: Request):
    require_login(request)
    listing = await read_db_of(request).run(data.clients, settings_of(request))
    return render(request, "clients.html", listing)


@router.get("/proxies", response_class=HTMLResponse)
async def proxies_page(request: Request, status: str | None = None):
    require_login(request)
    status = status if status in ("active", "exhausted", "cooldown", "offline", "disabled") else None
    pool = await read_db_of(request).run(data.proxies, settings_of(request), status)
    return render(request, "proxies.html", {"pool": pool, "status": status})


@router.get("/analysis", response_class=HTMLResponse)
async def analysis_page(request: Request):
    require_login(request)
    result = await data.analysis_page(db_of(request), read_db_of(request), settings_of(request))
    return render(request, "analysis.html", result)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, status: str | None = None):
    require_login(request)
    status = status if status in ("firing", "resolved") else None
    rows = await read_db_of(request).run(data.alerts, status=status)
    return render(request, "alerts.html", {"alerts": rows, "status": status})


@router.get("/maintenance", response_class=HTMLResponse)
async def maintenance_page(request: Request):
    require_login(request)
    info = await read_db_of(request).run(data.maintenance, settings_of(request))
    return render(request, "maintenance.html", info)


# ---------------------------------------------------------------- htmx partials (auto-refresh)
@router.get("/ui/kpis", response_class=HTMLResponse)
async def kpis_partial(request: Request):
    require_login(request)
    settings = settings_of(request)
    kpis = await read_db_of(request).run(data.overview, settings)
    return render(request, "partials/kpis.html", {"kpis": kpis},
                  headers=_partial_headers(settings.cache_dashboard_seconds))


@router.get("/ui/slots", response_class=HTMLResponse)
async def slots_partial(request: Request, q: str = "", sort: str = "completion", dir: str = "asc",
                        page: int = 1):
    require_login(request)
    settings = settings_of(request)
    progress = await read_db_of(request).run(data.slot_progress, settings, search=q, sort=sort, direction=dir,
                                        page=page)
    # a search or sort is a fresh request, not a cached refresh
    return render(request, "partials/slot_table.html", {"progress": progress})


@router.get("/ui/trends", response_class=HTMLResponse)
async def trends_partial(request: Request):
    require_login(request)
    settings = settings_of(request)
    trends = await read_db_of(request).run(data.trends, settings)
    return render(request, "partials/trends.html", {"trends": trends},
                  headers=_partial_headers(settings.cache_stats_seconds))


@router.get("/ui/alerts", response_class=HTMLResponse)
async def alerts_partial(request: Request):
    require_login(request)
    settings = settings_of(request)
    kpis = await read_db_of(request).run(data.overview, settings)
    return render(request, "partials/alert_list.html", {"alerts": kpis["alerts"]},
                  headers=_partial_headers(settings.cache_dashboard_seconds))


# ---------------------------------------------------------------- wiring
# Paths that never use the dashboard session: the worker, customer and admin APIs, metrics, health probes
# and static files. They skip SessionMiddleware (cookie parsing and signature check on the way in, a
# header wrapper on the way out), so they never read nor set the session cookie.
SESSIONLESS_PREFIXES = ("/api/", "/metrics", "/healthz", "/readyz", "/static/")


class DashboardSessions:
    """Pure ASGI: Starlette's SessionMiddleware for the dashboard pages only."""

    def __init__(self, app, **session_options):
        self.app = app
        self.sessions = SessionMiddleware(app, **session_options)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(SESSIONLESS_PREFIXES):
            return await self.app(scope, receive, send)
        return await self.sessions(scope, receive, send)


def compile_templates() -> int:
    """Compile every template now (once per process: the environment keeps them), so the first visitor
    of each page does not wait for it (~200 ms for all of them, measured by the bench's first calls)."""
    names = templates.env.list_templates(extensions=["html"])
    for name in names:
        templates.env.get_template(name)
    return len(names)


def install(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    compile_templates()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    app.add_middleware(DashboardSessions, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_MAX_AGE, same_site="lax", https_only=False)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired):
        if request.headers.get("hx-request"):
            # a partial's refresh after the session ended: htmx follows HX-Redirect with a full page load
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = "/login?next=" + quote(_safe_next(target), safe="/")
        return RedirectResponse(login, status_code=303)
