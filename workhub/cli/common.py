"""Helpers for commands: settings, the database URL, running core functions, clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

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


@asynccontextmanager
async def open_database(s: Settings, url: str | None = None, *, pool_max: int = 2,
                        timeout: float = 15) -> AsyncIterator[Any]:
    """A small Database on the configured URL (or ``url``), closed afterwards; a clear error if unreachable."""
    from workhub.db.pool import Database

    db = Database(s.model_copy(update={"pool_min": 1, "pool_max": pool_max}), url or database_url(s))
    try:
        await db.pool.open(wait=True, timeout=timeout)
    except Exception:  # noqa: BLE001 - e.g. the pool timing out on an unreachable database
        await db.close()
        fail("cannot connect to the database (is it running? check HUB_DATABASE_URL)")
    try:
        yield db
    finally:
        await db.close()


def with_database(fn: Callable[..., Awaitable[Any]], *args, s: Settings | None = None, pool_max: int = 2,
                  **kwargs) -> Any:
    """Run ``fn(db, *args, **kwargs)`` with a small Database; hub and database errors end the command
    with a clear message instead of a traceback."""
    s = s or settings()

    async def go():
        async with open_database(s, pool_max=pool_max) as db:
            return await fn(db, *args, **kwargs)

    try:
        return asyncio.run(go())
    except HubError as exc:
        fail(f"{exc.message} ({exc.code})" + (f" {exc.details}" if exc.details else ""))
    except psycopg.Error as exc:
        fail(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def run_core(fn: Callable[..., Awaitable[Any]], *args, s: Settings | None = None, **kwargs) -> Any:
    """Run ``fn(conn, *args, **kwargs)`` in one transaction, as the API does."""

    async def one(db):
        return await db.run(fn, *args, **kwargs)

    return with_database(one, s=s)

