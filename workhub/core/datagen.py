"""The large-data generator: slots, proxies, clients, past ledgers, results with product rows, activity
logs and recent allocations, in bulk SQL (INSERT ... SELECT generate_series, chunked).

Everything is written by set-based statements in ``sql/queries/bench.sql``; Python only cuts the work
into chunks, runs ``jobs`` chunks at once on separate connections and reports progress. Rows are dated
evenly over the last ``days`` days (default 56, inside both the results' 90-day and the activity log's
8-week retention), and the partitions for that window are created first so nothing lands in a
DEFAULT partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.db import queries as q
from workhub.db.pool import connect_kwargs

Progress = Callable[[str, float, float], None]


@dataclass
class GenerateOptions:
    slots: int = 100_000
    results: int = 10_000_000
    proxies: int = 2_000
    clients: int = 200
    days: int = 56
    tracking_days: int = 7       # past days of ledger rows per slot (archived after 30 days)
    slot_target: int = 100       # daily_work_count of generated slots
    chunk: int = 100_000
    jobs: int = 2                # chunks written at once (one connection each)
    timings: dict = field(default_factory=dict)


def _noop(phase: str, done: float, total: float) -> None:  # pragma: no cover - trivial
    pass


async def _connect(url: str, settings: Settings) -> AsyncConnection:
    kwargs = connect_kwargs(settings)
    kwargs["prepare_threshold"] = None
    conn = await AsyncConnection.connect(url, **kwargs)
    return conn


async def generate(url: str, settings: Settings, opts: GenerateOptions,
                   progress: Progress = _noop) -> dict:
    """Fill the (migrated) database at ``url``; returns row counts and seconds per step."""
    timings: dict[str, float] = {}
    now = settings.now()
    work_date = settings.work_date()
    since = now - timedelta(days=opts.days)
    alloc_since = now - timedelta(days=settings.retain_allocations_days)

    conn = await _connect(url, settings)
    try:
        t0 = time.perf_counter()
        progress("partitions", 0, 1)
        await q.fetch_val(conn, "datagen_partitions", {
            "since": since, "months": opts.days // 28 + 2, "weeks": opts.days // 7 + 2})
        progress("partitions", 1, 1)

        progress("slots, proxies, clients", 0, 3)
        slots = await q.fetch_one(conn, "bench_load_slots", {
            "n": opts.slots, "target": opts.slot_target, "work_date": work_date,
            "days_back": opts.days + 1, "prefix": f"gen-{int(time.time())}-"})
        progress("slots, proxies, clients", 1, 3)
        proxies = await q.fetch_one(conn, "bench_load_proxies", {
            "n": opts.proxies, "max_uses": 1_000_000_000, "prefix": "10.201."})
        if not proxies["n"]:  # already generated once: reuse the existing range
            proxies = await q.fetch_one(conn, "datagen_proxy_range")
        progress("slots, proxies, clients", 2, 3)
        await q.execute(conn, "datagen_clients", {"n": opts.clients, "since": since, "until": now})
        await q.fetch_val(conn, "init_daily_work_tracking", {"work_date": work_date})
        progress("slots, proxies, clients", 3, 3)
        timings["setup"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tracking_rows = 0
        if opts.tracking_days > 0:
            progress("past ledgers", 0, 1)
            tracking_rows = await q.fetch_val(conn, "datagen_tracking_days", {
                "work_date": work_date, "days": opts.tracking_days,
                "slot_lo": slots["first_id"], "slot_hi": slots["last_id"]})
            progress("past ledgers", 1, 1)
        timings["tracking"] = time.perf_counter() - t0
    finally:
        await conn.close()

    t0 = time.perf_counter()
    totals = {"results": 0, "products": 0, "logs": 0, "allocations": 0}
    chunks = [(lo, min(lo + opts.chunk - 1, opts.results - 1)) for lo in range(0, opts.results, opts.chunk)]
    queue: asyncio.Queue = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)
    params = {
        "since": since, "until": now, "total": max(opts.results, 1), "alloc_since": alloc_since,
        "slot_lo": slots["first_id"], "n_slots": slots["n"],
        "proxy_lo": proxies["first_id"], "n_proxies": proxies["n"], "n_clients": opts.clients,
    }
    progress("results", 0, opts.results)

    async def writer() -> None:
        c = await _connect(url, settings)
        try:
            await q.execute(c, "datagen_fast_session")
            while True:
                try:
                    lo, hi = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                row = await q.fetch_one(c, "datagen_results_chunk", {**params, "lo": lo, "hi": hi})
                for k in totals:
                    totals[k] += row[k]
                progress("results", totals["results"], opts.results)
        finally:
            await c.close()

    if chunks:
        await asyncio.gather(*(writer() for _ in range(max(1, min(opts.jobs, len(chunks))))))
    timings["results"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("analyze", 0, 1)
    conn = await _connect(url, settings)
    try:
        await q.execute(conn, "bench_analyze")
        counts = await q.fetch_one(conn, "bench_counts")
    finally:
        await conn.close()
    progress("analyze", 1, 1)
    timings["analyze"] = time.perf_counter() - t0
    return {"generated": {"slots": slots["n"], "proxies": proxies["n"], "clients": opts.clients,
                          "tracking_rows": tracking_rows, **totals},
            "counts": counts, "seconds": {k: round(v, 2) for k, v in timings.items()},
            "total_seconds": round(sum(timings.values()), 2)}
