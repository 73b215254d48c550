"""The connection pool and the transaction helper every request goes through."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from workhub.config import Settings
from workhub.errors import HubError

log = logging.getLogger(__name__)

set_json_loads(orjson.loads)  # orjson parses the JSON replies of the ledger functions several times faster

RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure: safe to run the transaction again
# admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away or not up yet
_SHUTDOWN_STATES = {"57P01", "57P02", "57P03"}

# While the database is known to be down, a request waits at most this long for a connection before
# answering 503 (instead of the full pool timeout), so workers get a clear answer at once.
FAIL_FAST_SECONDS = 1.0
# psycopg_pool's reconnect backoff doubles without bound (1, 2, 4, ... s) until reconnect_timeout; a short
# timeout keeps the next attempt close: after giving up, the next request that waits starts a fresh attempt
# at once, so the hub recovers within about a second of the database coming back.
RECONNECT_TIMEOUT = 5.0


def is_unavailable(exc: BaseException) -> bool:
    """True for a failure of the connection itself (the database is down or unreachable), as opposed to
    an error of the statement: psycopg 3 makes deadlocks (40P01), serialization failures (40001),
    cancelled statements (57014) and lock timeouts (55P03) OperationalErrors too, and those are not
    "database down"."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SHUTDOWN_STATES


def connect_kwargs(settings: Settings, *, read_only: bool = False) -> dict:
    # read_only: every transaction is read-only, on a replica or not, so a report that tried to write
    # fails the same way in tests against the primary as it would on a real replica
    extra = " -c default_transaction_read_only=on" if read_only else ""
    # jit=off: the hub's statements read bounded ranges, but the planner's guesses for run-time
    # generate_series/unnest put some far above jit_above_cost, and on servers built with LLVM
    # compiling them took longer than running them (docs/performance.md, findings 1 and 14)
    return {
        "options": f"-c TimeZone={settings.timezone} -c application_name=workhub -c jit=off{extra}",
        "prepare_threshold": settings.prepare_threshold,
        "autocommit": True,
    }


class Database:
    """Owns the pool. ``async with db.transaction() as conn`` is one transaction on one connection."""

    def __init__(self, settings: Settings, url: str, *, read_only: bool = False):
        self.settings = settings
        self.url = url
        self.read_only = read_only
        self.pool = AsyncConnectionPool(
            url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            max_idle=settings.pool_idle_timeout,
            timeout=settings.pool_timeout,
            kwargs=connect_kwargs(settings, read_only=read_only),
            open=False,
            reconnect_timeout=RECONNECT_TIMEOUT,
        )
        self._down = False  # set by a failed connection or query, cleared by the next good connection

    async def open(self) -> None:
        # Don't wait for the database: the hub starts (and answers 503) while it is down.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection. Getting none, or losing it, is 503 database_unavailable (and marks the
        database down); any other error of the work done on it propagates unchanged."""
        timeout = min(FAIL_FAST_SECONDS, self.settings.pool_timeout) if self._down else None
        acquired = False
        try:
            async with self.pool.connection(timeout=timeout) as conn:
                acquired = True
                self._down = False
                yield conn
        except PoolTimeout as exc:
            self._down = True
            raise database_unavailable(exc) from None
        except psycopg.OperationalError as exc:
            if acquired and not is_unavailable(exc):
                raise
            self._down = True
            raise database_unavailable(exc) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.connection() as conn:
            async with conn.transaction():
                yield conn

    async def run(self, fn, *args, attempts: int = 3, single_statement: bool = False, **kwargs):
        """Run ``fn(conn, ...)`` in a transaction, again on a deadlock or serialization failure.

        ``single_statement=True`` is for functions that run exactly one statement (the ledger
        functions of the hot path): the statement is its own transaction on the autocommit connection,
        which saves the BEGIN and COMMIT round trips (3 -> 1 per request; see docs/performance.md)."""
        for attempt in range(1, attempts + 1):
            try:
                if single_statement:
                    async with self.connection() as conn:
                        return await fn(conn, *args, **kwargs)
                async with self.transaction() as conn:
                    return await fn(conn, *args, **kwargs)
            except psycopg.Error as exc:
                if exc.sqlstate in RETRYABLE and attempt < attempts:
                    log.warning("retrying after %s (attempt %d)", exc.sqlstate, attempt)
                    await asyncio.sleep(0.01 * attempt)
                    continue
                if is_unavailable(exc):
                    self._down = True
                    raise database_unavailable(exc) from None
                raise

    def stats(self) -> dict:
        return self.pool.get_stats()


def database_unavailable(exc: Exception) -> HubError:
    return HubError(503, "database_unavailable",
                    "The database is not reachable right now; retry shortly.",
                    {"reason": type(exc).__name__})
