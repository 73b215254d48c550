"""`workhub serve`: migrate, then serve the API and dashboard (uvicorn or granian)."""

from __future__ import annotations

import os

import typer

from workhub.cli.common import console, database_url, fail, settings
from workhub.db import migrate
from workhub.db.urls import redact


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Address to bind (default HUB_HOST)"),
        port: int = typer.Option(None, help="Port (default HUB_PORT)"),
        workers: int = typer.Option(None, help="Hub processes (default HUB_WORKERS)"),
        server: str = typer.Option(None, help="uvicorn or granian (default HUB_SERVER)"),
        scheduler: bool = typer.Option(None, "--scheduler/--no-scheduler", help="Run the maintenance scheduler"),
    ) -> None:
        """Start the hub: embedded PostgreSQL unless HUB_DATABASE_URL is set."""
        s = settings()
        updates = {k: v for k, v in {"host": host, "port": port, "workers": workers, "server": server,
                                     "scheduler_enabled": scheduler}.items() if v is not None}
        s = s.model_copy(update=updates)
        url = database_url(s)
        try:
            migrate.migrate(url, s.timezone, months_ahead=s.partitions_months_ahead,
                            weeks_ahead=s.partitions_weeks_ahead)
        except Exception as exc:  # noqa: BLE001
            fail(f"cannot prepare the database at {redact(url)}: {exc}")
        s.resolved_admin_key()
        where = "HUB_ADMIN_KEY" if s.admin_key else str(s.admin_key_file.resolve())
        console.print(f"[bold]workhub[/] on http://{s.host}:{s.port}  (dashboard: http://{s.host}:{s.port}/)")
        console.print(f"database: {redact(url)}")
        if s.read_database_url:
            console.print(f"reports read from: {redact(s.read_database_url)}")
        console.print(f"admin key: {where}")
        run_server(s, url)


def run_server(s, url: str) -> None:
    # child processes (several workers) find the database and settings through the environment
    os.environ["HUB_DATABASE_URL"] = url
    os.environ["HUB_SCHEDULER_ENABLED"] = "true" if s.scheduler_enabled else "false"
    if s.workers > 1:  # metrics summed across the worker processes
        from workhub.api.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(s.data_dir)
    if s.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian("workhub.app:app_from_env", factory=True, interface=Interfaces.ASGI, address=s.host,
                port=s.port, workers=s.workers, log_access=False).serve()
        return
    import uvicorn

    if s.workers > 1:
        # proxy_headers off: the app alone decides whom to believe (HUB_TRUSTED_PROXIES, workhub.web.client_ip)
        uvicorn.run("workhub.app:app_from_env", factory=True, host=s.host, port=s.port, workers=s.workers,
                    log_level=s.log_level.lower(), access_log=False, proxy_headers=False)
    else:
        from workhub.app import create_app

        uvicorn.run(create_app(s, url), host=s.host, port=s.port, log_level=s.log_level.lower(),
                    access_log=False, proxy_headers=False)
