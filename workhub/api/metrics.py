"""Prometheus metrics: GET /metrics and a pure-ASGI middleware that times every request.

Two sources, so the figures are right whichever hub process answers the scrape:
- per-process instruments (request counts and latencies per route template, allocate and submit
  outcomes, connection-pool use). With several processes set PROMETHEUS_MULTIPROC_DIR (an empty
  directory shared by the processes; `workhub serve --workers N` sets one up) and prometheus_client's
  multiprocess mode sums them across processes.
- database figures (ledger, slots, clients, proxy pool, alerts, scheduler job runs, connections of
  every hub process), computed at scrape time by a custom collector.
Every metric is listed in docs/monitoring.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from workhub.core import monitor
from workhub.web import db_of, settings_of

log = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Latency buckets sized for a hub whose hot paths answer in a few milliseconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter("workhub_http_requests", "HTTP requests by method, route template and status.",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("workhub_http_request_duration_seconds", "HTTP request latency by method and route.",
                         ["method", "route"], buckets=BUCKETS)
HTTP_IN_PROGRESS = Gauge("workhub_http_requests_in_progress", "HTTP requests being served now.",
                         multiprocess_mode="livesum")
ALLOCATE_REPLIES = Counter("workhub_allocate_replies", "Allocate calls answered, by status and no_work reason.",
                           ["status", "reason"])
PACKAGES_ALLOCATED = Counter("workhub_packages_allocated", "Work packages handed out.")
SUBMIT_OUTCOMES = Counter("workhub_submit_outcomes", "Submitted results by outcome (accepted, duplicate, late, error).",
                          ["outcome"])
DB_POOL = Gauge("workhub_db_pool_connections", "Connection pool of the hub processes: size, idle, waiting requests.",
                ["state"], multiprocess_mode="livesum")

_ALLOCATE_PATH = "/api/allocate-work"
_SUBMIT_PATHS = ("/api/submit-result", "/api/submit-results")
_OUTCOME_PATHS = frozenset((_ALLOCATE_PATH, *_SUBMIT_PATHS))
_POOL_REFRESH_SECONDS = 1.0
_MAX_CACHED_SERIES = 4096  # label children kept per process (method and route labels are bounded anyway)

# Where the worker routes leave what they answered, for the middleware to count (see note_allocate and
# note_submit): the routes know their outcome, so no reply body is buffered or parsed to count it.
OUTCOME_KEY = "workhub.outcome"
_ALLOCATED_PREFIX = '{"status" : "allocated"'
_PACKAGE_KEY = '"allocation_key" : '


def allocate_outcome(reply: str) -> tuple[str, str, int]:
    """(status, no_work reason or "", packages) of the JSON text v1_hub_allocate_work returned.

    The reply is built with json_build_object, which keeps the keys in the order written and prints
    ``"key" : value``: an allocated reply starts with ``{"status" : "allocated"`` and each package has
    exactly one ``"allocation_key" : `` key (a string value cannot hold an unescaped quote, so a keyword or
    password never matches): counting them is much cheaper than parsing 50 packages. Anything else (the
    short no_work reply) is parsed."""
    if reply.startswith(_ALLOCATED_PREFIX):
        return "allocated", "", reply.count(_PACKAGE_KEY)
    try:
        data = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return "unknown", "", 0
    allocations = data.get("allocations")
    return str(data.get("status", "unknown")), data.get("reason") or "", len(allocations) if allocations else 0


def note_allocate(scope: dict, reply: str) -> None:
    """The allocate route hands its reply's outcome to MetricsMiddleware."""
    scope[OUTCOME_KEY] = allocate_outcome(reply)


def note_submit(scope: dict, *statuses: str) -> None:
    """The submit routes hand the outcome of each submitted result (accepted, duplicate, late, error)."""
    scope[OUTCOME_KEY] = statuses


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): one perf_counter pair and a few dict lookups per request.

    Reply bodies are never read: the allocate and submit routes leave their outcome in the scope
    (OUTCOME_KEY). A submit answered with an error status (401, 404, 409, 422, 503, ...) counts as one
    ``error`` outcome (a whole rejected batch included: its items are not known)."""

    def __init__(self, app, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app
        self._pool_checked = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_IN_PROGRESS.dec()
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            _series(HTTP_REQUESTS, method, route, str(status)).inc()
            _series(HTTP_LATENCY, method, route).observe(elapsed)
            if route in _OUTCOME_PATHS:
                _count_outcome(route, status, scope.get(OUTCOME_KEY))
            now = time.monotonic()
            if now - self._pool_checked > _POOL_REFRESH_SECONDS:
                self._pool_checked = now
                self._refresh_pool()

    def _refresh_pool(self) -> None:
        db = getattr(self.fastapi_app.state, "db", None)
        if db is None:
            return
        stats = db.stats()
        DB_POOL.labels("size").set(stats.get("pool_size", 0))
        DB_POOL.labels("idle").set(stats.get("pool_available", 0))
        DB_POOL.labels("waiting").set(stats.get("requests_waiting", 0))


_SERIES: dict[tuple, object] = {}


def _series(metric, *labels: str):
    """``metric.labels(*labels)``, cached: labels() checks its arguments and takes a lock on every call.
    Children are never removed from these metrics, so a cached child stays the one exported."""
    key = (metric, labels)
    child = _SERIES.get(key)
    if child is None:
        if len(_SERIES) >= _MAX_CACHED_SERIES:  # label values a client chose (the method): stay bounded
            _SERIES.clear()
        child = _SERIES[key] = metric.labels(*labels)
    return child


def _count_outcome(route: str, status: int, outcome) -> None:
    if route == _ALLOCATE_PATH:
        if status == 200 and outcome is not None:
            reply_status, reason, packages = outcome
            _series(ALLOCATE_REPLIES, reply_status, reason).inc()
            if packages:
                PACKAGES_ALLOCATED.inc(packages)
    elif status >= 400:
        _series(SUBMIT_OUTCOMES, "error").inc()
    elif outcome is not None:
        for item in outcome:
            _series(SUBMIT_OUTCOMES, item).inc()


class DatabaseCollector:
    """Prometheus collector over figures fetched from the database for this scrape."""

    def __init__(self, figures: dict | None):
        self.figures = figures

    def collect(self):
        up = GaugeMetricFamily("workhub_database_up", "1 when the database answered this scrape.")
        up.add_metric([], 1 if self.figures else 0)
        yield up
        if not self.figures:
            return
        snap = self.figures["snapshot"]
        yield _gauge("workhub_active_slots", "Active slots in range today.", snap["active_slots"])
        yield _gauge("workhub_in_flight_allocations", "Leases handed out and not yet submitted, expired or released.",
                     snap["in_flight"])
        yield _gauge("workhub_clients_online", "Clients seen within HUB_CLIENT_ONLINE_SECONDS.", snap["clients"]["online"])
        yield _gauge("workhub_clients", "Known clients.", snap["clients"]["total"])

        proxies = GaugeMetricFamily("workhub_proxies", "Proxy pool by state.", labels=["state"])
        for state in ("total", "available", "active", "exhausted", "cooldown", "offline", "disabled"):
            if state in snap["proxies"]:
                proxies.add_metric([state], float(snap["proxies"][state] or 0))
        yield proxies
        yield _gauge("workhub_proxy_utilisation_ratio", "Proxy uses over capacity (0..1).",
                     float(snap["proxies"].get("utilisation") or 0))

        today = snap["today"]
        ledger = GaugeMetricFamily("workhub_ledger_today", "Today's ledger totals by figure.", labels=["figure"])
        for figure in ("target", "allocated", "in_flight", "success", "failed", "blocked", "expired", "released"):
            ledger.add_metric([figure], float(today[figure]))
        yield ledger
        yield _gauge("workhub_ledger_today_completion_ratio", "Today's successes over target (0..1).",
                     float(today["completion_rate"] or 0) / 100.0)

        alerts = GaugeMetricFamily("workhub_alerts_firing", "Open alerts by rule and severity.",
                                   labels=["rule", "severity"])
        for row in self.figures["alerts_by_rule"]:
            alerts.add_metric([row["rule"], row["severity"]], float(row["firing"]))
        yield alerts

        runs = CounterMetricFamily("workhub_maintenance_runs", "Recorded maintenance and scheduler job runs.",
                                   labels=["job", "status"])
        last = GaugeMetricFamily("workhub_maintenance_last_finished_timestamp_seconds",
                                 "When a job last finished, by status.", labels=["job", "status"])
        for row in self.figures["maintenance_runs"]:
            runs.add_metric([row["job"], row["status"]], float(row["runs"]))
            if row["last_finished"] is not None:
                last.add_metric([row["job"], row["status"]], float(row["last_finished"]))
        yield runs
        yield last

        conns = GaugeMetricFamily("workhub_db_connections", "Connections of all hub processes to the database, by state.",
                                  labels=["state"])
        for row in self.figures["db_connections"]:
            conns.add_metric([row["state"]], float(row["connections"]))
        yield conns


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value or 0))


def process_metrics() -> bytes:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def metrics_endpoint(request: Request) -> Response:
    try:
        figures = await db_of(request).run(monitor.metrics_figures, settings_of(request))
    except Exception as exc:  # noqa: BLE001 - a scrape must still answer (workhub_database_up 0)
        log.warning("metrics: database figures unavailable (%s)", type(exc).__name__)
        figures = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(figures))
    body = process_metrics() + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, fastapi_app=app)


def prepare_multiprocess_dir(data_dir: Path) -> None:
    """Before starting several worker processes: a fresh shared directory for multiprocess metrics,
    unless the operator chose one (PROMETHEUS_MULTIPROC_DIR)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = Path(data_dir) / "prometheus"
    shutil.rmtree(path, ignore_errors=True)  # stale files of a previous run would be summed in
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path.resolve())
