"""Database.run and the pool: statement errors are not "database down"; deadlocks are retried."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from workhub.db.pool import is_unavailable
from workhub.errors import HubError


@pytest.fixture
def two_rows(sql):
    sql.execute("CREATE TABLE pool_test (id integer PRIMARY KEY, v integer NOT NULL DEFAULT 0)")
    sql.execute("INSERT INTO pool_test (id) VALUES (1), (2)")
    return sql


async def test_deadlock_is_retried_by_run(database, two_rows):
    """Two transactions lock the same two rows in opposite orders: PostgreSQL aborts one with 40P01,
    Database.run runs it again, and both end up committed."""
    calls = {"a": 0, "b": 0}
    both_hold_their_first_row = asyncio.Barrier(2)

    async def bump(conn, name: str, first: int, second: int) -> int:
        calls[name] += 1
        await conn.execute("UPDATE pool_test SET v = v + 1 WHERE id = %s", [first])
        if calls[name] == 1:
            await both_hold_their_first_row.wait()
        await conn.execute("UPDATE pool_test SET v = v + 1 WHERE id = %s", [second])
        return calls[name]

    attempts = await asyncio.wait_for(asyncio.gather(database.run(bump, "a", 1, 2), database.run(bump, "b", 2, 1)),
                                      timeout=30)
    assert sorted(attempts) == [1, 2]  # one ran once, the deadlock victim a second time, and succeeded
    assert calls["a"] + calls["b"] == 3
    assert two_rows.execute("SELECT sum(v) FROM pool_test").fetchone()[0] == 4  # every committed update
    assert not database._down


async def test_serialization_failure_is_retried(database, two_rows):
    calls = 0

    async def conflicting(conn) -> int:
        nonlocal calls
        calls += 1
        await conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        await conn.execute("SELECT v FROM pool_test WHERE id = 1")  # takes the snapshot
        if calls == 1:  # someone else commits a change to the row after our snapshot
            async with database.connection() as other:
                await other.execute("UPDATE pool_test SET v = v + 10 WHERE id = 1")
        await conn.execute("UPDATE pool_test SET v = v + 1 WHERE id = 1")
        return calls

    assert await database.run(conflicting) == 2
    assert two_rows.execute("SELECT v FROM pool_test WHERE id = 1").fetchone()[0] == 11


async def test_lock_timeout_is_not_database_down(database, two_rows):
    async def update_with_short_lock_timeout(conn):
        await conn.execute("SET LOCAL lock_timeout = '50ms'")
        await conn.execute("UPDATE pool_test SET v = 1 WHERE id = 1")

    with psycopg.connect(database.url) as holder:  # a transaction keeps the row locked
        holder.execute("SELECT 1 FROM pool_test WHERE id = 1 FOR UPDATE")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await database.run(update_with_short_lock_timeout)
    assert not database._down
    await database.run(update_with_short_lock_timeout)  # the pool is fine afterwards


async def test_retries_give_up_with_the_error_not_a_503(database):
    async def always_deadlocks(conn):
        raise psycopg.errors.DeadlockDetected("simulated")

    with pytest.raises(psycopg.errors.DeadlockDetected):
        await database.run(always_deadlocks, attempts=2)
    assert not database._down


def test_is_unavailable():
    from psycopg_pool import PoolTimeout

    assert is_unavailable(PoolTimeout("no connection"))
    assert is_unavailable(psycopg.OperationalError("connection refused"))  # no sqlstate: the link failed
    assert is_unavailable(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_unavailable(psycopg.errors.ConnectionFailure("gone"))
    for exc in (psycopg.errors.DeadlockDetected(), psycopg.errors.SerializationFailure(),
                psycopg.errors.LockNotAvailable(), psycopg.errors.QueryCanceled()):
        assert isinstance(exc, psycopg.OperationalError) and not is_unavailable(exc)
    assert not is_unavailable(psycopg.errors.UniqueViolation())
    assert not is_unavailable(HubError(503, "x", "y"))


async def test_plan_custom_queries_are_never_prepared(database, settings):
    """`-- plan: custom` (the slot progress page): planned with its values on every run, while other
    queries are prepared on the server after prepare_threshold runs."""
    from workhub.db import queries as q

    params = {"work_date": settings.work_date(), "search": None, "sort": "completion", "direction": "asc",
              "limit": 100, "offset": 0}
    async with database.connection() as conn:
        for _ in range(settings.prepare_threshold + 3):
            await q.fetch_all(conn, "dashboard_slot_progress", params)
            await q.fetch_val(conn, "dashboard_slot_progress_count", params)
        cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in await cur.fetchall()]
    assert any("count(*)" in s and "v1_hub_work_dashboard" in s for s in prepared)
    assert not any("LIMIT" in s and "v1_hub_work_dashboard" in s for s in prepared)
