"""Simulated workers talking to one or more hubs through the SDK, for load, demos and reliability tests.

Every run is bounded (a duration, and optionally a number of cycles) and, unless told otherwise, only
talks to loopback addresses: the simulator is a test tool, never a way to load someone else's server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from workhub.client import AsyncHubClient, HubError, Package
from workhub.client._policy import RetryPolicy

MAX_WORKERS = 1024
MAX_DURATION = 24 * 3600


def check_loopback(url: str) -> None:
    """Raise ValueError unless ``url`` is an http(s) URL on a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    host = parts.hostname
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{host} is not a loopback address; the simulator only talks to a local hub")


@dataclass
class FleetConfig:
    urls: list[str]
    workers: int = 8
    duration: float = 10.0
    batch: int = 1                      # packages asked for per allocate call
    latency_ms: tuple[int, int] = (20, 300)
    outcomes: dict[str, float] = field(default_factory=lambda: {"success": 0.8, "failed": 0.12, "blocked": 0.08})
    abandon_rate: float = 0.03          # lease taken, never submitted nor released: the sweeper returns it
    release_rate: float = 0.02          # lease given back at once
    resubmit_rate: float = 0.02         # the same result sent twice: must come back "duplicate"
    keep_leases: bool = False           # run a lease keeper while "working"
    idle_cap: float = 5.0               # longest wait after no_work, whatever retry_after says
    max_cycles: int | None = None       # allocate calls per worker
    fleet_token: str | None = None
    seed: int | None = None
    allow_remote: bool = False

    def validate(self) -> None:
        if not self.urls:
            raise ValueError("at least one hub URL is needed")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION}] seconds")
        if not 1 <= self.batch <= 100:
            raise ValueError("batch must be 1..100")
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ValueError("latency range must be 0 <= low <= high")
        if self.abandon_rate + self.release_rate > 1 or min(self.abandon_rate, self.release_rate) < 0:
            raise ValueError("abandon and release rates must be >= 0 and sum to at most 1")
        if set(self.outcomes) - {"success", "failed", "blocked"} or sum(self.outcomes.values()) <= 0:
            raise ValueError("outcomes are weights for success, failed and blocked")
        if not self.allow_remote:
            for url in self.urls:
                check_loopback(url)


@dataclass
class FleetStats:
    started_at: float = field(default_factory=time.monotonic)
    allocate_calls: int = 0
    allocated: int = 0
    no_work: Counter = field(default_factory=Counter)
    submitted: Counter = field(default_factory=Counter)       # by reply: accepted / late / duplicate
    counted: Counter = field(default_factory=Counter)         # counted results by status
    abandoned: int = 0
    released: int = 0
    duplicates_ok: int = 0
    duplicates_wrong: int = 0
    errors: Counter = field(default_factory=Counter)
    allocate_ms: list[float] = field(default_factory=list)
    # allocation key -> (status sent, reply status, counted): what the hub told the fleet, for exact checks
    results: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    released_keys: set[str] = field(default_factory=set)
    abandoned_keys: set[str] = field(default_factory=set)
    lapsed_keys: set[str] = field(default_factory=set)        # released too late: the lease had expired

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def percentile(self, p: float) -> float | None:
        if not self.allocate_ms:
            return None
        ordered = sorted(self.allocate_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict:
        return {
            "elapsed_seconds": round(self.elapsed, 2),
            "allocate_calls": self.allocate_calls,
            "allocated": self.allocated,
            "submitted": dict(self.submitted),
            "counted": dict(self.counted),
            "abandoned": self.abandoned,
            "released": self.released,
            "duplicates_ok": self.duplicates_ok,
            "duplicates_wrong": self.duplicates_wrong,
            "no_work": dict(self.no_work),
            "errors": dict(self.errors),
            "allocate_p50_ms": self.percentile(50),
            "allocate_p99_ms": self.percentile(99),
            "cycles_per_second": round(sum(self.submitted.values()) / self.elapsed, 1) if self.elapsed else 0,
        }


class FleetSimulator:
    def __init__(self, config: FleetConfig, on_progress: Callable[[FleetStats], None] | None = None):
        config.validate()
        self.config = config
        self.on_progress = on_progress
        self.stats = FleetStats()
        self.rng = random.Random(config.seed)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> FleetStats:
        cfg = self.config
        retry = RetryPolicy(attempts=4, max_elapsed=15, backoff_max=2, retry_after_max=5)
        clients = [AsyncHubClient(url, fleet_token=cfg.fleet_token, retry=retry, timeout=30,
                                  limits=httpx.Limits(max_connections=cfg.workers + 8))
                   for url in cfg.urls]
        self.stats = FleetStats()
        deadline = time.monotonic() + cfg.duration
        reporter = asyncio.create_task(self._report()) if self.on_progress else None
        try:
            await asyncio.gather(*(self._worker(i, clients[i % len(clients)], deadline)
                                   for i in range(cfg.workers)))
        finally:
            if reporter:
                reporter.cancel()
            for c in clients:
                await c.aclose()
            if self.on_progress:
                self.on_progress(self.stats)
        return self.stats

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.on_progress(self.stats)

    def _pick_outcome(self) -> str:
        names = list(self.config.outcomes)
        return self.rng.choices(names, weights=[self.config.outcomes[n] for n in names])[0]

    async def _pause(self, seconds: float, deadline: float) -> None:
        seconds = max(0.0, min(seconds, deadline - time.monotonic()))
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _worker(self, index: int, client: AsyncHubClient, deadline: float) -> None:
        cfg, stats = self.config, self.stats
        cycles = 0
        while time.monotonic() < deadline and not self._stop.is_set():
            if cfg.max_cycles is not None and cycles >= cfg.max_cycles:
                return
            cycles += 1
            started = time.perf_counter()
            try:
                reply = await client.allocate(cfg.batch, instance_number=index, user_folder_number=index % 8)
            except (HubError, httpx.HTTPError) as exc:
                stats.errors[getattr(exc, "code", type(exc).__name__)] += 1
                await self._pause(0.5, deadline)
                continue
            stats.allocate_ms.append((time.perf_counter() - started) * 1000)
            stats.allocate_calls += 1
            if reply.status != "allocated":
                stats.no_work[reply.reason] += 1
                await self._pause(min(reply.retry_after_seconds or 1, cfg.idle_cap), deadline)
                continue
            stats.allocated += len(reply.allocations)
            for package in reply.allocations:
                try:
                    await self._work(client, package)
                except (HubError, httpx.HTTPError) as exc:
                    stats.errors[getattr(exc, "code", type(exc).__name__)] += 1

    async def _work(self, client: AsyncHubClient, package: Package) -> None:
        cfg, stats, rng = self.config, self.stats, self.rng
        key = package.allocation_key
        roll = rng.random()
        if roll < cfg.abandon_rate:
            stats.abandoned += 1
            stats.abandoned_keys.add(key)
            return
        if roll < cfg.abandon_rate + cfg.release_rate:
            try:
                await client.release(key, "simulated worker gave up")
            except HubError as exc:
                if exc.code != "allocation_expired":
                    raise
                stats.lapsed_keys.add(key)  # a slow machine: the lease ran out before we gave it back
                return
            stats.released += 1
            stats.released_keys.add(key)
            return
        latency = rng.uniform(*cfg.latency_ms) / 1000
        if cfg.keep_leases:
            async with client.keep_lease(package):
                await asyncio.sleep(latency)
        else:
            await asyncio.sleep(latency)
        status = self._pick_outcome()
        rank = rng.randint(1, 200) if status == "success" else None
        fields = {
            "rank": rank,
            "page": (rank - 1) // 40 + 1 if rank else None,
            "block_type": rng.choice(["captcha", "http_403", "akamai"]) if status == "blocked" else None,
            "error_message": "simulated timeout" if status == "failed" else None,
            "products": [{"code": package.code, "name": f"product {package.code}", "price": rng.randint(1, 999) * 1000,
                          "rank": rank, "page": (rank - 1) // 40 + 1}] if rank else None,
            "result_data": {"simulated": True},
        }
        ms = int(latency * 1000)
        outcome = await client.submit(key, status, ms, **fields)
        stats.submitted[outcome.status] += 1
        if outcome.status == "duplicate":
            # only possible when an SDK retry re-sent a submit whose first attempt had landed
            first = stats.results.get(key)
            if first is None:
                stats.results[key] = (status, outcome.status, bool(outcome.counted))
        else:
            stats.results[key] = (status, outcome.status, bool(outcome.counted))
        if outcome.counted:
            stats.counted[status] += 1
        if rng.random() < cfg.resubmit_rate:
            again = await client.submit(key, "failed", 1)
            if again.status == "duplicate" and again.result_id == outcome.result_id and again.counted == outcome.counted:
                stats.duplicates_ok += 1
            else:
                stats.duplicates_wrong += 1
