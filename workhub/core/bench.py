"""`workhub bench`: the hub's throughput and latency against the SQL floor, measured in one run.

Phases, all on one dedicated database (``workhub_bench`` on the selected server, dropped afterwards
unless ``keep``):

1. floor: pgbench drives the very SQL of one worker cycle (``sql/bench/cycle.sql``: allocate, then
   submit, each its own transaction) with as many clients as the HTTP run has workers;
2. cycles: N concurrent HTTP workers do allocate -> submit against real ``workhub serve`` processes;
   cycles/s, p50/p95/p99 of each call, the hub's CPU per request. Phases 1 and 2 alternate for
   ``rounds`` pairs and the pair with the median ratio is reported (all pairs are in ``rounds``);
3. allocate p99 at 32 concurrent workers: closed loop (saturated; phase 2 when N = 32) and paced at
   half the closed-loop rate (the figure the target is checked on);
4. batch: allocate-work?count=50, packages/s (and its pgbench floor, ``sql/bench/batch.sql``);
5. scale: phase 2 again with 1, 2, 4 ... hub processes;
6. large: generate the large dataset (``core/datagen.py``), phase 2 again, and time, uncached, every
   monitoring and analysis endpoint found in /openapi.json and every dashboard page and fragment.

Every figure is reported with the reference it is compared to and the ratio, because absolute figures
move with the machine; ratios measured in the same run are what the targets are about.

The load generator runs in ``client_processes`` separate processes (asyncio streams, one keep-alive
connection per simulated worker) so that the client is not the bottleneck of a one-process Python loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import psycopg
import psycopg.sql

from workhub.config import Settings
from workhub.db import migrate
from workhub.db import queries as q
from workhub.db.pool import connect_kwargs
from workhub.db.urls import redact, with_database

Progress = Callable[[str, float, float], None]

TARGETS = {
    "cycles_vs_floor": 0.5,        # HTTP cycles/s >= 0.5 x pgbench floor
    "allocate_p99_ms_at_32": 25.0,  # allocate p99 <= 25 ms at 32 concurrent workers
    "batch_packages_per_s": 10_000.0,
    "large_vs_empty": 0.8,          # cycles/s at 10M results >= 0.8 x empty database
    "endpoint_ms": 300.0,           # every dashboard / analysis endpoint <= 300 ms
}

SUBMIT_BODY = {
    "status": "success", "execution_time_ms": 5000, "rank": 7, "page": 1,
    "products": [{"code": "BENCH", "name": "bench product", "price": 1000, "rank": 7, "page": 1}],
    "result_data": {"bench": True},
}


@dataclass
class BenchOptions:
    workers: int = 32
    duration: float = 10.0
    warmup: float = 2.0
    hub_processes: int = 1
    server: str = "uvicorn"
    scale: list[int] = field(default_factory=list)      # e.g. [1, 2, 4]; empty = skip
    p99_workers: int = 32
    p99_load: float = 0.5                               # paced p99 phase: this fraction of the cycles/s
    batch_count: int = 50
    batch_workers: int = 4
    slots: int = 1_000
    proxies: int = 2_000
    client_processes: int = 0                           # 0 = one per 16 workers, at most 2
    pool_max: int | None = None                         # HUB_POOL_MAX per hub process (None = default)
    rounds: int = 3                                     # interleaved floor/HTTP pairs; the median is reported
    floor: bool = True
    large: bool = False
    large_slots: int = 100_000
    large_results: int = 10_000_000
    database: str = "workhub_bench"
    keep: bool = False
    pgbench: str | None = None


# ---------------------------------------------------------------- small helpers
def percentile(sorted_values, p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def latency_summary(values) -> dict:
    v = sorted(values)
    return {"n": len(v), "mean_ms": round(sum(v) / len(v), 3) if v else 0.0,
            "p50_ms": round(percentile(v, 50), 3), "p95_ms": round(percentile(v, 95), 3),
            "p99_ms": round(percentile(v, 99), 3), "max_ms": round(v[-1], 3) if v else 0.0}


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_pgbench(explicit: str | None = None) -> str:
    """The pgbench bundled with the embedded server, else the one on PATH."""
    if explicit:
        return explicit
    try:
        from workhub.db import embedded

        bundled = embedded.bin_dir() / "pgbench"
        if bundled.exists():
            return str(bundled)
    except Exception:  # noqa: BLE001 - pgserver missing: fall back to PATH
        pass
    found = shutil.which("pgbench")
    if not found:
        raise RuntimeError("pgbench not found: install the PostgreSQL client tools or pass --pgbench")
    return found


def bench_script(name: str) -> str:
    return (resources.files("workhub") / "sql" / "bench" / name).read_text(encoding="utf-8")


def database_ddl(name: str, db: str) -> psycopg.sql.Composed:
    # DDL on a database name cannot take bind parameters: the text lives in bench.sql, only the
    # identifier is filled in here, quoted by psycopg.
    return psycopg.sql.SQL(q.sql(name)).format(db=psycopg.sql.Identifier(db))


# ---------------------------------------------------------------- the benchmark database
def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(database_ddl("bench_drop_database", name))
        conn.execute(database_ddl("bench_create_database", name))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(database_ddl("bench_drop_database", name))


async def _conn(url: str, settings: Settings) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, **connect_kwargs(settings))


async def load_bench_data(url: str, settings: Settings, slots: int, proxies: int) -> dict:
    """Slots whose quota never runs out, proxies whose budget never runs out, today's ledger."""
    conn = await _conn(url, settings)
    try:
        s = await q.fetch_one(conn, "bench_load_slots", {
            "n": slots, "target": 1_000_000, "work_date": settings.work_date(), "days_back": 1,
            "prefix": "bench-"})
        p = await q.fetch_one(conn, "bench_load_proxies", {"n": proxies, "max_uses": 2_000_000_000,
                                                           "prefix": "10.250."})
        await q.fetch_val(conn, "init_daily_work_tracking", {"work_date": settings.work_date()})
        await q.execute(conn, "bench_analyze")
        info = await q.fetch_one(conn, "bench_server_info")
    finally:
        await conn.close()
    return {"slots": s["n"], "proxies": p["n"], "server": info}


async def run_minute_job(url: str, settings: Settings) -> dict:
    from workhub.core import maintenance
    from workhub.db.pool import Database

    db = Database(settings, url)
    await db.open()
    # the generated clients are long silent: their hundreds of client_offline alerts are expected here,
    # and the bench's report, not the log, is this run's output
    alarm_log = logging.getLogger("workhub.alarms")
    level = alarm_log.level
    alarm_log.setLevel(logging.ERROR)
    try:
        return await maintenance.run_job(db, settings, "minute")
    finally:
        alarm_log.setLevel(level)
        await db.close()


async def ledger_totals(url: str, settings: Settings) -> dict:
    conn = await _conn(url, settings)
    try:
        return await q.fetch_one(conn, "bench_ledger_totals", {"work_date": settings.work_date()})
    finally:
        await conn.close()


# ---------------------------------------------------------------- phase 1: pgbench floor
_TPS = re.compile(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)")
_LAT = re.compile(r"latency average = ([0-9.]+) ms")
_TX = re.compile(r"number of transactions actually processed: (\d+)")


def run_pgbench(url: str, script: str, *, clients: int, duration: float, pgbench: str,
                defines: dict | None = None) -> dict:
    """Run a pgbench custom script; returns transactions/s (each script run is one 'transaction')."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    args = [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
            "-T", str(max(1, int(round(duration)))), "-f", path]
    for k, v in (defines or {}).items():
        args += ["-D", f"{k}={v}"]
    args.append(url)
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120)
    finally:
        os.unlink(path)
    out = proc.stdout + proc.stderr
    tps = _TPS.search(out)
    if proc.returncode != 0 or not tps:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {out.strip()[-1500:]}")
    lat = _LAT.search(out)
    tx = _TX.search(out)
    return {"tps": round(float(tps.group(1)), 1), "latency_avg_ms": float(lat.group(1)) if lat else None,
            "transactions": int(tx.group(1)) if tx else None, "clients": clients,
            "duration_s": int(round(duration)), "pgbench": pgbench}


# ---------------------------------------------------------------- hub processes
class Hub:
    """`workhub serve` (uvicorn or granian, K worker processes) on a loopback port."""

    def __init__(self, url: str, processes: int, server: str, admin_key: str, data_dir: Path,
                 pool_max: int | None = None, pool_min: int | None = None, extra_env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"hub-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k != "HUB_FLEET_TOKEN"}
        env.update({"HUB_DATABASE_URL": url, "HUB_ADMIN_KEY": admin_key, "HUB_DATA_DIR": str(data_dir),
                    "HUB_LOG_LEVEL": "WARNING", "HUB_SCHEDULER_ENABLED": "false"})
        if pool_max:
            env["HUB_POOL_MAX"] = str(pool_max)
        if pool_min:  # open the connections the load needs up front, as pgbench does
            env["HUB_POOL_MIN"] = str(min(pool_min, pool_max or pool_min))
        env.update(extra_env or {})
        self.env = env
        self.args = [sys.executable, "-m", "workhub", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(processes), "--server", server, "--no-scheduler"]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Hub:
        import httpx

        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hub did not become ready: {self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the hub's processes have used so far."""
        import psutil

        root = psutil.Process(self.proc.pid)
        total = 0.0
        for proc in (root, *root.children(recursive=True)):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:  # the whole process group: the server's worker processes too
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()


# ---------------------------------------------------------------- HTTP load (runs in client processes)
def _load_process(base: str, admin_key: str, mode: str, concurrency: int, duration: float, warmup: float,
                  count: int, max_cycles: int, offset: int, period: float) -> dict:
    """One load-generator process: ``concurrency`` workers for warmup + duration seconds."""
    import uvloop

    uvloop.install()
    return asyncio.run(_load(base, admin_key, mode, concurrency, duration, warmup, count, max_cycles, offset,
                             period))


class _Connection:
    """One keep-alive HTTP/1.1 connection to the hub: the load generator's whole client.

    Hand-written on asyncio streams rather than an HTTP library, for the same reason pgbench is C: the
    load generator shares this machine's cores with the hub and PostgreSQL, and the CPU it spends is
    taken from them. Measured per allocate -> submit cycle: aiohttp 0.9 ms of client CPU, about as much
    as the hub itself (docs/performance.md, finding 16). The hub only sends Content-Length replies."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items()).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(30):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
                    method.encode(), target.encode(), self.headers, len(body), body))
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lowered = head.lower()
                at = lowered.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"reply without Content-Length: {head[:200]!r}")
                length = int(lowered[at + 17:lowered.index(b"\r\n", at + 2)])
                data = await self.reader.readexactly(length)
                if b"\r\nconnection: close" in lowered:
                    self.close()
                return status, data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(base: str, admin_key: str, mode: str, concurrency: int, duration: float, warmup: float,
                count: int, max_cycles: int, offset: int, period: float = 0.0) -> dict:
    """Closed loop (period 0: each worker starts its next cycle at once), or paced: each worker starts a
    cycle every ``period`` seconds, as a fleet worker does between searches. Paced latencies count from
    the scheduled start, so a hub that falls behind is not hidden by the workers waiting for it
    (no coordinated omission)."""
    from urllib.parse import urlencode, urlsplit

    import orjson

    alloc_lat = array("d")
    submit_lat = array("d")
    # sent: every request, warm-up included (what the hub's CPU time over the whole run is divided by)
    stats = {"cycles": 0, "packages": 0, "no_work": 0, "errors": 0, "requests": 0, "sent": 0}
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    address = urlsplit(base)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    first_error: list[str] = []

    async def worker(i: int) -> None:
        conn = _Connection(address.hostname, address.port, headers)
        allocate_target = "/api/allocate-work?" + urlencode(
            {"instance_number": (offset + i) % 64 + 1, "user_folder_number": 1, "count": count})
        done = 0
        # paced workers start spread over one period, so the offered load is even
        scheduled = start + period * ((offset + i) * 0.618034 % 1.0)
        try:
            while done < max_cycles:
                if period:
                    scheduled += period
                    await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                if period:
                    t0 = min(t0, scheduled)
                done += 1
                try:
                    stats["sent"] += 1
                    status, raw = await conn.request("GET", allocate_target)
                    t1 = time.perf_counter()
                    measured = t0 >= measure_from and t1 <= stop_at
                    if status != 200:
                        raise RuntimeError(f"allocate {status}: {raw[:200]!r}")
                    reply = orjson.loads(raw)
                    if measured:
                        stats["requests"] += 1
                        alloc_lat.append((t1 - t0) * 1000.0)
                    if reply["status"] != "allocated":
                        if measured:
                            stats["no_work"] += 1
                        await asyncio.sleep(0.01)
                        continue
                    if mode == "batch":
                        if measured:
                            stats["packages"] += len(reply["allocations"])
                        continue
                    key = reply["allocations"][0]["allocation_key"]
                    body = orjson.dumps({"allocation_key": key, **SUBMIT_BODY})
                    stats["sent"] += 1
                    status, raw = await conn.request("POST", "/api/submit-result", body)
                    t2 = time.perf_counter()
                    if status != 200:
                        raise RuntimeError(f"submit {status}: {raw[:200]!r}")
                    if t0 >= measure_from and t2 <= stop_at:
                        stats["requests"] += 1
                        stats["cycles"] += 1
                        submit_lat.append((t2 - t1) * 1000.0)
                except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                    stats["errors"] += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}"[:300])
                    await asyncio.sleep(0.05)
        finally:
            conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {**stats, "alloc_lat": alloc_lat.tobytes(), "submit_lat": submit_lat.tobytes(),
            "first_error": first_error[0] if first_error else None}


def run_load(base: str, admin_key: str, *, mode: str, workers: int, duration: float, warmup: float,
             count: int = 1, client_processes: int = 0, rate: float = 0.0) -> dict:
    """N concurrent workers (split over client processes) against the hub; merged figures.
    ``rate`` > 0: the workers together start that many cycles per second (paced), else closed loop."""
    period = workers / rate if rate > 0 else 0.0
    procs = client_processes or max(1, min(2, (workers + 15) // 16))
    procs = max(1, min(procs, workers))
    shares = [workers // procs + (1 if i < workers % procs else 0) for i in range(procs)]
    # bounded in count as well as in time: no worker does more than this many cycles
    max_cycles = int((duration + warmup) * 5_000) + 10
    ctx = multiprocessing.get_context("spawn")
    offsets = [sum(shares[:i]) for i in range(procs)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=procs, mp_context=ctx) as pool:
        futures = [pool.submit(_load_process, base, admin_key, mode, share, duration, warmup, count,
                               max_cycles, off, period) for share, off in zip(shares, offsets)]
        parts = [f.result(timeout=duration + warmup + 180) for f in futures]
    alloc, submit = array("d"), array("d")
    merged = {"cycles": 0, "packages": 0, "no_work": 0, "errors": 0, "requests": 0, "sent": 0}
    first_error = None
    for p in parts:
        for k in merged:
            merged[k] += p[k]
        alloc.frombytes(p["alloc_lat"])
        submit.frombytes(p["submit_lat"])
        first_error = first_error or p["first_error"]
    out = {"mode": mode, "workers": workers, "client_processes": procs, "duration_s": duration,
           "count": count, "offered_cycles_per_s": round(rate, 1) if rate else None, **merged,
           "requests_per_s": round(merged["requests"] / duration, 1),
           "allocate": latency_summary(alloc), "first_error": first_error}
    if mode == "batch":
        out["packages_per_s"] = round(merged["packages"] / duration, 1)
    else:
        out["cycles_per_s"] = round(merged["cycles"] / duration, 1)
        out["submit"] = latency_summary(submit)
    return out


# ---------------------------------------------------------------- endpoints (dashboard / analysis)
def dashboard_paths() -> list[str]:
    """The dashboard's pages and auto-refresh fragments (GET routes of its router, login aside)."""
    from workhub.dashboard.views import router

    return sorted(r.path for r in router.routes if "GET" in getattr(r, "methods", ()) and r.path != "/login")


def _dashboard_login(c, admin_key: str) -> None:
    page = c.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    r = c.post("/login", data={"admin_key": admin_key, "next": "/", "csrf_token": token.group(1) if token else ""})
    if r.status_code != 303:
        raise RuntimeError(f"dashboard login failed: {r.status_code}")


def time_endpoints(base: str, admin_key: str, *, slot_id: int, repeats: int = 5) -> list[dict]:
    """GET every monitoring and analysis endpoint in /openapi.json and every dashboard page and fragment
    (logged in): first (cold) call and the rest."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_key}"}
    rows = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        spec = c.get("/openapi.json").json()
        api = [path for path, ops in spec.get("paths", {}).items()
               if "get" in ops and (path.startswith("/api/monitor") or path.startswith("/api/admin/analysis"))]
        _dashboard_login(c, admin_key)
        for path in sorted(api) + dashboard_paths():
            params = re.findall(r"{([^}]+)}", path)
            if any("slot" not in p for p in params):
                continue  # only slot ids can be filled in meaningfully
            real = re.sub(r"{[^}]+}", str(slot_id), path)
            times, status = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                r = c.get(real)
                times.append((time.perf_counter() - t0) * 1000.0)
                status = r.status_code
            warm = sorted(times[1:]) or times
            rows.append({"path": real, "status": status, "cold_ms": round(times[0], 1),
                         "warm_p50_ms": round(percentile(warm, 50), 1), "max_ms": round(max(times), 1)})
    return rows


# ---------------------------------------------------------------- the whole run
def _check(name: str, value, reference, target, *, kind: str = "ratio", note: str = "") -> dict:
    """kind "ratio": value / reference >= target (no verdict without a reference, e.g. --no-floor);
    "min": value >= target; "max": value <= target (ratio = value / target)."""
    r = ok = None
    if value is not None and kind == "ratio" and reference is not None:
        r, ok = ratio(value, reference), ratio(value, reference) >= target
    elif value is not None and kind != "ratio":
        r, ok = ratio(value, target), (value <= target if kind == "max" else value >= target)
    return {"name": name, "value": value, "reference": reference, "ratio": r, "target": target, "ok": ok,
            "note": note}


def conditions(settings: Settings, opts: BenchOptions, admin_url: str) -> dict:
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in load] if load else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "server": opts.server, "hub_processes": opts.hub_processes, "workers": opts.workers,
            "duration_s": opts.duration, "warmup_s": opts.warmup, "database": redact(admin_url),
            "pool_max": opts.pool_max or settings.pool_max}


def run_bench(settings: Settings, admin_url: str, opts: BenchOptions, progress: Progress | None = None) -> dict:
    """The whole benchmark; returns the report (see docs/performance.md)."""
    progress = progress or (lambda phase, done, total: None)
    report: dict = {"version": 1, "options": asdict(opts), "conditions": conditions(settings, opts, admin_url)}
    pgbench = find_pgbench(opts.pgbench) if opts.floor else None
    admin_key = "whadm_bench_" + secrets.token_urlsafe(24)
    workdir = Path(tempfile.mkdtemp(prefix="workhub-bench-"))
    url = create_database(admin_url, opts.database)
    report["conditions"]["bench_database"] = opts.database
    phase_s = opts.duration + opts.warmup

    def hub(processes: int, **extra_env: str) -> Hub:
        pool_min = math.ceil(max(opts.workers, opts.p99_workers, opts.batch_workers) / processes) + 1
        return Hub(url, processes, opts.server, admin_key, workdir, opts.pool_max, pool_min, extra_env).start()

    try:
        progress("prepare database", 0, 1)
        migrate.migrate(url, settings.timezone, months_ahead=settings.partitions_months_ahead,
                        weeks_ahead=settings.partitions_weeks_ahead)
        loaded = asyncio.run(load_bench_data(url, settings, opts.slots, opts.proxies))
        report["data"] = {"slots": loaded["slots"], "proxies": loaded["proxies"]}
        report["conditions"]["postgres"] = loaded["server"]
        progress("prepare database", 1, 1)

        # 1-2. the floor and the hub, interleaved: `rounds` pairs of pgbench then HTTP, each pair's ratio
        # taken from two runs a few seconds apart, and the median pair reported, so a burst of other load
        # on this shared machine moves one pair, not the figure (ratios are what the targets are about)
        h = hub(opts.hub_processes)
        try:
            rounds = []
            before = asyncio.run(ledger_totals(url, settings))
            for r in range(opts.rounds if opts.floor else 1):
                floor = None
                if opts.floor:
                    progress(f"pgbench floor (cycle), round {r + 1}", 0, phase_s)
                    if r == 0:  # warm-up: caches, prepared plans
                        run_pgbench(url, bench_script("cycle.sql"), clients=opts.workers,
                                    duration=min(opts.warmup, 2) or 1, pgbench=pgbench)
                    floor = run_pgbench(url, bench_script("cycle.sql"), clients=opts.workers,
                                        duration=opts.duration, pgbench=pgbench)
                    progress(f"pgbench floor (cycle), round {r + 1}", phase_s, phase_s)
                progress(f"HTTP cycles, {opts.workers} workers, round {r + 1}", 0, phase_s)
                cpu_before = h.cpu_seconds()
                cycles = run_load(h.base, admin_key, mode="cycle", workers=opts.workers, duration=opts.duration,
                                  warmup=opts.warmup, client_processes=opts.client_processes)
                # the hub's own CPU per request: a figure the machine's other load barely moves
                cycles["hub_cpu_ms_per_request"] = (
                    round((h.cpu_seconds() - cpu_before) * 1000.0 / cycles["sent"], 3) if cycles["sent"] else None)
                rounds.append((ratio(cycles["cycles_per_s"], floor["tps"]) if floor else 0.0, floor, cycles))
                progress(f"HTTP cycles, {opts.workers} workers, round {r + 1}", phase_s, phase_s)
            after = asyncio.run(ledger_totals(url, settings))
            _, floor, report["cycles"] = sorted(rounds, key=lambda x: x[0])[len(rounds) // 2]
            if floor:
                report["floor"] = floor
                report["rounds"] = [{"floor_tps": f["tps"], "cycles_per_s": c["cycles_per_s"], "ratio": q}
                                    for q, f, c in rounds]
            report["cycles"]["ledger"] = {"success_added": after["success"] - before["success"],
                                          "exact": after["success"] == after["counted_success"]}
            # Closed-loop workers keep every core busy, so their latency is queueing: by Little's law
            # p50 ~ workers / (cycles/s). The p99 target is read at a load the hub sustains: the same
            # number of workers, paced to p99_load x the closed-loop rate (both figures are reported).
            saturated = report["cycles"]
            if opts.workers != opts.p99_workers:
                progress(f"closed loop, {opts.p99_workers} workers", 0, phase_s)
                saturated = run_load(h.base, admin_key, mode="cycle", workers=opts.p99_workers,
                                     duration=opts.duration, warmup=opts.warmup,
                                     client_processes=opts.client_processes)
                progress(f"closed loop, {opts.p99_workers} workers", phase_s, phase_s)
            report["allocate_p99_saturated"] = {"workers": opts.p99_workers, **saturated["allocate"],
                                                "cycles_per_s": saturated["cycles_per_s"]}
            rate = round(opts.p99_load * saturated["cycles_per_s"], 1)
            progress(f"allocate p99, {opts.p99_workers} paced workers", 0, phase_s)
            run = run_load(h.base, admin_key, mode="cycle", workers=opts.p99_workers, duration=opts.duration,
                           warmup=opts.warmup, client_processes=opts.client_processes, rate=rate)
            report["allocate_p99"] = {"workers": opts.p99_workers, "load_fraction": opts.p99_load,
                                      "offered_cycles_per_s": rate, "cycles_per_s": run["cycles_per_s"],
                                      **run["allocate"], "submit": run["submit"], "errors": run["errors"]}
            progress(f"allocate p99, {opts.p99_workers} paced workers", phase_s, phase_s)
            if opts.floor:
                progress("pgbench floor (batch)", 0, opts.duration)
                report["batch_floor"] = run_pgbench(url, bench_script("batch.sql"), clients=opts.batch_workers,
                                                    duration=opts.duration, pgbench=pgbench,
                                                    defines={"count": opts.batch_count})
                report["batch_floor"]["packages_per_s"] = round(report["batch_floor"]["tps"] * opts.batch_count, 1)
                progress("pgbench floor (batch)", opts.duration, opts.duration)
            progress(f"batch allocation, count={opts.batch_count}", 0, phase_s)
            report["batch"] = run_load(h.base, admin_key, mode="batch", workers=opts.batch_workers,
                                       duration=opts.duration, warmup=opts.warmup, count=opts.batch_count,
                                       client_processes=1)
            progress(f"batch allocation, count={opts.batch_count}", phase_s, phase_s)
        finally:
            h.stop()

        # 5. scale-out
        if opts.scale:
            report["scale"] = []
            for k in opts.scale:
                progress(f"scale-out: {k} hub process(es)", 0, phase_s)
                h = hub(k)
                try:
                    run = run_load(h.base, admin_key, mode="cycle", workers=opts.workers, duration=opts.duration,
                                   warmup=opts.warmup, client_processes=opts.client_processes)
                finally:
                    h.stop()
                report["scale"].append({"processes": k, "cycles_per_s": run["cycles_per_s"],
                                        "allocate_p99_ms": run["allocate"]["p99_ms"],
                                        "submit_p99_ms": run["submit"]["p99_ms"], "errors": run["errors"]})
                progress(f"scale-out: {k} hub process(es)", phase_s, phase_s)
            base_rate = report["scale"][0]["cycles_per_s"]
            for row in report["scale"]:
                row["vs_first"] = ratio(row["cycles_per_s"], base_rate)
                if report.get("floor"):
                    row["vs_floor"] = ratio(row["cycles_per_s"], report["floor"]["tps"])

        # 6. large data
        if opts.large:
            from workhub.core import datagen

            gen_opts = datagen.GenerateOptions(slots=opts.large_slots, results=opts.large_results)
            t0 = time.perf_counter()
            gen = asyncio.run(datagen.generate(url, settings, gen_opts, progress))
            report["large"] = {"generate": gen, "generate_seconds": round(time.perf_counter() - t0, 1)}
            # what a running hub's scheduler does within a minute of the rows arriving (it rolls up the
            # closed part of the data for the settings analysis): the bench's hubs run without one
            progress("minute maintenance job", 0, 1)
            t0 = time.perf_counter()
            minute = asyncio.run(run_minute_job(url, settings))
            report["large"]["minute_job"] = {"seconds": round(time.perf_counter() - t0, 2),
                                             "status": (minute or {}).get("status")}
            progress("minute maintenance job", 1, 1)
            progress("HTTP cycles on the large database", 0, phase_s)
            h = hub(opts.hub_processes)
            try:
                run = run_load(h.base, admin_key, mode="cycle", workers=opts.workers, duration=opts.duration,
                               warmup=opts.warmup, client_processes=opts.client_processes)
                report["large"]["cycles"] = run
                progress("HTTP cycles on the large database", phase_s, phase_s)
            finally:
                h.stop()
            # every call uncached (the hub caches statistics for minutes): each figure is the real work
            progress("dashboard and analysis endpoints", 0, 1)
            h = hub(1, HUB_CACHE_DASHBOARD_SECONDS="0", HUB_CACHE_STATS_SECONDS="0")
            try:
                report["large"]["endpoints"] = time_endpoints(h.base, admin_key, slot_id=1)
            finally:
                h.stop()
            progress("dashboard and analysis endpoints", 1, 1)
    finally:
        if not opts.keep:
            try:
                drop_database(admin_url, opts.database)
            except psycopg.Error:
                pass
        shutil.rmtree(workdir, ignore_errors=True)

    report["checks"] = checks(report)
    return report


def checks(report: dict) -> list[dict]:
    out = []
    cycles = report.get("cycles", {}).get("cycles_per_s")
    floor = report.get("floor", {}).get("tps")
    out.append(_check("cycles/s vs pgbench floor", cycles, floor, TARGETS["cycles_vs_floor"]))
    p99 = report.get("allocate_p99", {})
    saturated = report.get("allocate_p99_saturated", {})
    out.append(_check(f"allocate p99 (ms), {p99.get('workers', 32)} workers paced at "
                      f"{p99.get('load_fraction', 0.5):.0%} of the closed-loop rate", p99.get("p99_ms"), None,
                      TARGETS["allocate_p99_ms_at_32"], kind="max",
                      note=f"closed loop (saturated): p99 {saturated.get('p99_ms')} ms"))
    batch = report.get("batch", {}).get("packages_per_s")
    out.append(_check("batch allocation packages/s", batch, None, TARGETS["batch_packages_per_s"], kind="min",
                      note="floor: %s packages/s" % report.get("batch_floor", {}).get("packages_per_s")))
    if "large" in report:
        large = report["large"].get("cycles", {}).get("cycles_per_s")
        out.append(_check("cycles/s at large data vs empty", large, cycles, TARGETS["large_vs_empty"]))
        endpoints = report["large"].get("endpoints") or []
        worst = max((e["cold_ms"] for e in endpoints), default=None)
        out.append(_check("slowest dashboard/analysis endpoint (ms, cold)", worst, None, TARGETS["endpoint_ms"],
                          kind="max", note=f"{len(endpoints)} endpoints"))
    return out
