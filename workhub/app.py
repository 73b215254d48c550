"""The app factory: settings, pool, routers, dashboard and background services wired together."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

from workhub import __version__
from workhub.api import clients, errors, fastpath, health, maintenance, metrics, monitor, proxies, sites, slots, worker
from workhub.auth import FailedAuthLimiter
from workhub.config import Settings, get_settings
from workhub.dashboard import views as dashboard_views
from workhub.db.pool import Database
from workhub.logs import configure_logging
from workhub.scheduler import start_scheduler

log = logging.getLogger(__name__)

DESCRIPTION = """
workhub hands out daily, quota'd search-rank checks (keyword + product code) to a fleet of
workers, keeps an exact ledger of every day's work in PostgreSQL, manages the proxy pool, tracks
every client machine and raises alarms.

* **Worker protocol** (`/api/allocate-work`, `/api/submit-result`, ...): optional fleet token.
* **Customer API** (`/api/v1/slots`): `Authorization: Bearer <site key>` (or the admin key).
* **Admin API** (`/api/admin/...`): `Authorization: Bearer <admin key>`.

Every error is `{"error": {"code", "message", "details"}}` with a matching HTTP status.
"""


def fastapi_telemetry() -> dict | None:
    """FastAPI's native OpenTelemetry, only when OpenTelemetry is configured through its environment
    (OTEL_* or FASTAPI_OTEL_AUTO_CONFIGURE). Left on, FastAPI looks up the global tracer, meter and logger
    providers on every request to find out that none is set, a measurable share of a hot request's CPU."""
    if any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ):
        return None  # FastAPI's defaults
    return {"tracing": False, "metrics": False, "logs": False}


def resolve_database_url(settings: Settings) -> str:
    """HUB_DATABASE_URL, or the embedded server under HUB_DATA_DIR (started or joined)."""
    if settings.database_url:
        return settings.database_url
    from workhub.db import embedded

    return embedded.start(settings.data_dir / "pgdata", max_connections=settings.embedded_max_connections)


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    url = database_url or resolve_database_url(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app.state.db.open()
        if app.state.read_db is not app.state.db:
            await app.state.read_db.open()
        services = [start_scheduler(app)] if settings.scheduler_enabled else []
        try:
            yield
        finally:
            for service in reversed(services):
                await service.stop()
            if app.state.read_db is not app.state.db:
                await app.state.read_db.close()
            await app.state.db.close()

    app = FastAPI(title="workhub", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  telemetry=fastapi_telemetry(),
                  openapi_tags=[
                      {"name": "worker", "description": "The worker protocol: lease, submit, extend, release."},
                      {"name": "customer", "description": "Work slots of a customer site."},
                      {"name": "admin", "description": "Sites, proxies, clients, audit, maintenance."},
                      {"name": "monitor", "description": "Monitoring, analysis and alerts."},
                      {"name": "health", "description": "Liveness and readiness."},
                  ])
    app.state.settings = settings
    app.state.db = Database(settings, url)
    app.state.read_db = (Database(settings, settings.read_database_url, read_only=True)
                         if settings.read_database_url else app.state.db)
    app.state.admin_key = settings.resolved_admin_key()
    app.state.auth_limiter = FailedAuthLimiter(settings.auth_fail_limit)
    app.state.expected_migrations = health.expected_migrations()

    errors.install(app)
    for router in _routers():
        app.include_router(router)
    fastpath.install(app)  # inside the metrics middleware, so the requests it serves are counted too
    metrics.install(app)
    dashboard_views.install(app)
    app.add_middleware(errors.BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _routers():
    routers = [health.router, worker.router]
    for module in (sites, slots, proxies, clients, maintenance, monitor):
        routers.extend(getattr(module, "routers", None) or [module.router])
    return routers


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory workhub.app:app_from_env` (multi-process serving)."""
    return create_app()
