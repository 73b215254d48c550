"""`workhub bench` (throughput and latency against the pgbench floor) and `workhub bench generate`
(the large-data generator). See docs/performance.md."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workhub.cli.common import console, database_url, fail, settings

COUNTED_PHASES = {"results"}  # phases whose progress is rows, not seconds


class _PhaseProgress:
    """Rich progress bars for the phases; time-based phases advance with the clock."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def __call__(self, phase: str, done: float, total: float) -> None:
        with self.lock:
            if phase not in self.tasks:
                self.tasks[phase] = self.progress.add_task(phase, total=max(total, 1))
                self.started[phase] = time.monotonic()
            self.progress.update(self.tasks[phase], completed=done, total=max(total, 1))
            if total and done >= total:
                self.started.pop(phase, None)

    def _tick(self) -> None:
        while not self.stop.wait(0.25):
            with self.lock:
                for phase, t0 in list(self.started.items()):
                    if phase in COUNTED_PHASES:
                        continue
                    task = self.tasks[phase]
                    total = self.progress.tasks[task].total or 1
                    self.progress.update(task, completed=min(time.monotonic() - t0, total * 0.99))


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed:,.0f}/{task.total:,.0f}"), TimeElapsedColumn(),
                    console=console, transient=False)


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(report: dict) -> None:
    c = report["conditions"]
    console.print(f"[bold]workhub bench[/] {c['date']}  cpus={c['cpus']} load={c['loadavg_at_start']}  "
                  f"server={c['server']} x{c['hub_processes']}  workers={c['workers']}  "
                  f"duration={c['duration_s']}s  PostgreSQL {c.get('postgres', {}).get('version', '?')}")
    t = Table(title="throughput and latency")
    for col in ("phase", "rate", "unit", "allocate p50/p95/p99 ms", "submit p50/p95/p99 ms", "errors"):
        t.add_column(col, justify="right" if col not in ("phase", "unit") else "left")
    if "floor" in report:
        f = report["floor"]
        t.add_row(f"pgbench floor, {f['clients']} clients", _fmt(f["tps"]), "cycles/s",
                  f"avg cycle {_fmt(f['latency_avg_ms'], 2)}", "", "0")
    if len(report.get("rounds", [])) > 1:
        pairs = ", ".join(f"{r['ratio']:.2f}" for r in report["rounds"])
        console.print(f"floor/HTTP rounds, ratio of each: {pairs} (the median round is shown)")
    if "cycles" in report:
        r = report["cycles"]
        cpu = r.get("hub_cpu_ms_per_request")
        label = f"HTTP cycles, {r['workers']} workers" + (f" (hub CPU {cpu:.2f} ms/request)" if cpu else "")
        t.add_row(label, _fmt(r["cycles_per_s"]), "cycles/s",
                  "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["allocate"]),
                  "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["submit"]), _fmt(r["errors"]))
    if "allocate_p99" in report:
        r = report["allocate_p99"]
        t.add_row(f"paced, {r['workers']} workers at {r['offered_cycles_per_s']:g}/s", _fmt(r["cycles_per_s"]),
                  "cycles/s", "{p50_ms}/{p95_ms}/{p99_ms}".format(**r),
                  "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["submit"]), _fmt(r["errors"]))
    if "batch_floor" in report:
        f = report["batch_floor"]
        t.add_row(f"pgbench batch floor, {f['clients']} clients", _fmt(f["packages_per_s"]), "packages/s",
                  f"avg {_fmt(f['latency_avg_ms'], 2)}", "", "0")
    if "batch" in report:
        r = report["batch"]
        t.add_row(f"HTTP batch count={r['count']}, {r['workers']} workers", _fmt(r["packages_per_s"]),
                  "packages/s", "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["allocate"]), "", _fmt(r["errors"]))
    for row in report.get("scale", []):
        t.add_row(f"scale-out: {row['processes']} hub process(es)", _fmt(row["cycles_per_s"]), "cycles/s",
                  f"p99 {row['allocate_p99_ms']}", f"p99 {row['submit_p99_ms']}", _fmt(row["errors"]))
    if "large" in report and "cycles" in report["large"]:
        r = report["large"]["cycles"]
        t.add_row("HTTP cycles, large database", _fmt(r["cycles_per_s"]), "cycles/s",
                  "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["allocate"]),
                  "{p50_ms}/{p95_ms}/{p99_ms}".format(**r["submit"]), _fmt(r["errors"]))
    console.print(t)

    if report.get("large", {}).get("endpoints"):
        e = Table(title="dashboard and analysis endpoints (large database)")
        for col in ("path", "status", "cold ms", "warm p50 ms"):
            e.add_column(col)
        for row in report["large"]["endpoints"]:
            e.add_row(row["path"], str(row["status"]), _fmt(row["cold_ms"]), _fmt(row["warm_p50_ms"]))
        console.print(e)

    k = Table(title="targets (ratios measured in this run)")
    for col in ("check", "value", "reference", "ratio", "target", "met"):
        k.add_column(col)
    for row in report["checks"]:
        met = "-" if row["ok"] is None else ("[green]yes[/]" if row["ok"] else "[red]no[/]")
        k.add_row(row["name"] + (f" ({row['note']})" if row.get("note") else ""), _fmt(row["value"]),
                  _fmt(row["reference"]), _fmt(row["ratio"], 3), _fmt(row["target"], 2), met)
    console.print(k)
    cycles = report.get("cycles", {})
    if cycles.get("first_error"):
        console.print(f"[yellow]first error during the run:[/] {cycles['first_error']}")


def _parse_scale(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        fail(f"--scale takes a comma-separated list of process counts, e.g. 1,2,4 (got {value!r})")
    if any(n < 1 or n > 64 for n in out):
        fail("--scale process counts must be between 1 and 64")
    return out


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks: throughput and latency against the pgbench floor; large data.")
    app.add_typer(bench, name="bench")

    @bench.callback(invoke_without_command=True)
    def run(
        ctx: typer.Context,
        workers: int = typer.Option(32, min=1, max=512, help="Concurrent HTTP workers (and pgbench clients)"),
        duration: float = typer.Option(10.0, min=0.5, max=3600, help="Measured seconds per phase"),
        warmup: float = typer.Option(2.0, min=0, max=600, help="Unmeasured seconds before each phase"),
        hub_processes: int = typer.Option(1, "--hub-processes", min=1, max=64, help="Hub processes to serve"),
        server: str = typer.Option("uvicorn", help="uvicorn or granian"),
        scale: str = typer.Option(None, help="Also measure cycles with these hub process counts, e.g. 1,2,4"),
        batch_count: int = typer.Option(50, min=1, max=100, help="Packages per batch allocation"),
        batch_workers: int = typer.Option(4, min=1, max=256, help="Concurrent batch allocators"),
        p99_workers: int = typer.Option(32, min=1, max=512, help="Workers for the allocate p99 figure"),
        p99_load: float = typer.Option(0.5, min=0.05, max=1.0,
                                       help="Paced p99 phase: offered load as a fraction of the closed-loop rate"),
        slots: int = typer.Option(1000, min=1, help="Slots in the benchmark database"),
        proxies: int = typer.Option(2000, min=1, help="Proxies in the benchmark database"),
        client_processes: int = typer.Option(0, min=0, max=32, help="Load-generator processes (0 = auto)"),
        pool_max: int = typer.Option(None, min=1, help="HUB_POOL_MAX for each hub process"),
        floor: bool = typer.Option(True, "--floor/--no-floor", help="Measure the pgbench floor"),
        rounds: int = typer.Option(3, min=1, max=15,
                                   help="Interleaved floor/HTTP pairs; the median pair is reported"),
        large: bool = typer.Option(False, help="Also generate the large dataset and measure again"),
        large_slots: int = typer.Option(100_000, min=1, help="Slots generated by --large"),
        results: int = typer.Option(10_000_000, min=0, help="Results generated by --large"),
        db_url: str = typer.Option(None, "--database-url", help="Server to use (default: HUB_DATABASE_URL "
                                                                 "or the embedded server)"),
        database: str = typer.Option("workhub_bench", help="Benchmark database (dropped and re-created)"),
        keep: bool = typer.Option(False, help="Keep the benchmark database afterwards"),
        json_file: Path = typer.Option(None, "--json", help="Write the full report as JSON to this file"),
        pgbench: str = typer.Option(None, help="pgbench executable (default: bundled, else PATH)"),
    ) -> None:
        """Run the benchmark: pgbench floor, HTTP cycles, allocate p99, batch allocation, scale-out, large data."""
        if ctx.invoked_subcommand is not None:
            return
        from workhub.core import bench as core

        if server not in ("uvicorn", "granian"):
            fail("--server must be uvicorn or granian")
        scale_list = _parse_scale(scale)
        s = settings()
        admin_url = db_url or database_url(s)
        opts = core.BenchOptions(
            workers=workers, duration=duration, warmup=warmup, hub_processes=hub_processes, server=server,
            scale=scale_list, p99_workers=p99_workers, p99_load=p99_load, batch_count=batch_count,
            batch_workers=batch_workers, slots=slots, proxies=proxies, client_processes=client_processes,
            pool_max=pool_max, floor=floor, rounds=rounds, large=large, large_slots=large_slots, large_results=results,
            database=database, keep=keep, pgbench=pgbench)
        try:
            with _progress() as p:
                tracker = _PhaseProgress(p)
                try:
                    report = core.run_bench(s, admin_url, opts, tracker)
                finally:
                    tracker.stop.set()
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - a clear message, not a traceback
            fail(f"benchmark failed: {exc}")
        render(report)
        if json_file:
            json_file.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
            console.print(f"report written to {json_file}")

    @bench.command("generate")
    def generate(
        slots: int = typer.Option(100_000, min=1, help="Slots to create"),
        results: int = typer.Option(10_000_000, min=0, help="Results to create (with products and logs)"),
        proxies: int = typer.Option(2_000, min=1, help="Proxies to create"),
        clients: int = typer.Option(200, min=1, max=60_000, help="Client machines the results come from"),
        days: int = typer.Option(56, min=1, max=365, help="Spread the rows over the last N days"),
        tracking_days: int = typer.Option(7, min=0, max=60, help="Past days of ledger rows per slot"),
        jobs: int = typer.Option(2, min=1, max=16, help="Chunks written at once"),
        chunk: int = typer.Option(100_000, min=1_000, max=5_000_000, help="Results per statement"),
        db_url: str = typer.Option(None, "--database-url", help="Server to use (default: HUB_DATABASE_URL "
                                                                 "or the embedded server)"),
        database: str = typer.Option("workhub_bench", help="Database to fill (created and migrated if missing)"),
    ) -> None:
        """Fill a benchmark database with a large dataset (100k slots, 10M results by default)."""
        import psycopg

        from workhub.core import bench as core
        from workhub.core import datagen
        from workhub.db import migrate
        from workhub.db import queries as q
        from workhub.db.urls import redact, with_database

        s = settings()
        admin_url = db_url or database_url(s)
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                exists = conn.execute(q.sql("bench_database_exists"), {"name": database}).fetchone()[0]
                if not exists:
                    conn.execute(core.database_ddl("bench_create_database", database))
            url = with_database(admin_url, database)
            migrate.migrate(url, s.timezone, months_ahead=s.partitions_months_ahead,
                            weeks_ahead=s.partitions_weeks_ahead)
        except Exception as exc:  # noqa: BLE001
            fail(f"cannot prepare {database} on {redact(admin_url)}: {exc}")
        opts = datagen.GenerateOptions(slots=slots, results=results, proxies=proxies, clients=clients, days=days,
                                       tracking_days=tracking_days, jobs=jobs, chunk=chunk)
        console.print(f"generating into [bold]{database}[/] on {redact(admin_url)}")
        try:
            with _progress() as p:
                tracker = _PhaseProgress(p)
                try:
                    out = asyncio.run(datagen.generate(url, s, opts, tracker))
                finally:
                    tracker.stop.set()
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001
            fail(f"generation failed: {exc}")
        t = Table(title=f"generated in {out['total_seconds']} s")
        t.add_column("table")
        t.add_column("rows", justify="right")
        for k, v in out["counts"].items():
            t.add_row(k, f"{v:,}")
        console.print(t)
        console.print("seconds per step: " + ", ".join(f"{k} {v}" for k, v in out["seconds"].items()))
