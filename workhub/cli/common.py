"""Helpers for commands: settings, the database URL, running core functions, clear errors."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable

import psycopg
import typer
from rich.console import Console

from workhub.config import Settings, get_settings
from workhub.errors import HubError

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return get_settings()


def database_url(s: Settings | None = None) -> str:
    from workhub.app import resolve_database_url

    return resolve_database_url(s or settings())


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def run_core(fn: Callable[..., Awaitable[Any]], *args, s: Settings | None = None, **kwargs) -> Any:
    """Run ``fn(conn, *args, **kwargs)`` in one transaction, as the API does."""
    from workhub.db.pool import Database

    s = s or settings()
    url = database_url(s)

    async def go():
        db = Database(s.model_copy(update={"pool_min": 1, "pool_max": 2}), url)
        await db.pool.open(wait=True, timeout=15)
        try:
            return await db.run(fn, *args, **kwargs)
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except HubError as exc:
        fail(f"{exc.message} ({exc.code})" + (f" {exc.details}" if exc.details else ""))
    except psycopg.Error as exc:
        fail(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def is_tty() -> bool:
    return sys.stdout.isatty()
