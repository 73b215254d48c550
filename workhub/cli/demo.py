"""`workhub demo`: the whole hub in one command, for a first look.

An embedded PostgreSQL of its own (under HUB_DATA_DIR/demo, so a real install is never touched), sample
sites, slots and proxies, the hub with its dashboard on a loopback port, and a simulated fleet that works
for a bounded time. The dashboard stays up afterwards until Ctrl-C (unless --no-keep-serving).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import timedelta

import typer
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from workhub.cli.common import console, fail, open_database, settings
from workhub.config import Settings

SAMPLE_SITES = ("demo-shop-north", "demo-shop-south")
SAMPLE_SLOTS = [
    ("standing desk", "SD-1001", 400, "asap"), ("wireless mouse", "WM-2040", 250, "asap"),
    ("laptop stand", "LS-3300", 600, "even"), ("usb-c hub", "UH-4410", 150, "asap"),
    ("mechanical keyboard", "MK-5120", 300, "asap"), ("noise cancelling headphones", "NH-6080", 500, "even"),
    ("monitor arm", "MA-7010", 120, "asap"), ("webcam 4k", "WC-8200", 200, "asap"),
]
SAMPLE_PROXIES = 12
ROTATE_EVERY_SECONDS = 5.0


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        duration: float = typer.Option(300.0, min=1, max=3600, help="Seconds the simulated fleet works"),
        port: int = typer.Option(8080, min=1, max=65535, help="Loopback port for the hub and dashboard"),
        workers: int = typer.Option(8, min=1, max=64, help="Simulated workers"),
        keep_serving: bool = typer.Option(True, "--keep-serving/--no-keep-serving",
                                          help="Keep the dashboard up after the fleet stops (until Ctrl-C)"),
    ) -> None:
        """Embedded database + sample data + a simulated fleet + the dashboard, in one command."""
        base = settings()
        s = base.model_copy(update={"data_dir": base.data_dir / "demo", "host": "127.0.0.1", "port": port,
                                    "scheduler_enabled": True, "log_level": "WARNING"})
        url = _prepare_database(s)
        admin_key = s.resolved_admin_key()
        created = asyncio.run(_seed(s, url))
        console.print(f"sample data: {created}")

        hub = _start_hub(s, url)
        hub_url = f"http://127.0.0.1:{port}"
        where = "HUB_ADMIN_KEY" if s.admin_key else str(s.admin_key_file.resolve())
        console.print(Panel.fit(
            f"[bold]dashboard:[/] {hub_url}/\n[bold]admin key:[/] in {where}\n"
            f"[bold]API docs:[/]  {hub_url}/docs",
            title="workhub demo", border_style="green"))
        del admin_key  # the key itself is never printed
        try:
            stats = asyncio.run(_run_fleet(s, url, hub_url, duration, workers))
            console.print(f"fleet finished: {sum(stats.submitted.values())} results submitted, "
                          f"{stats.counted.get('success', 0)} counted successes")
            if keep_serving:
                console.print(f"the dashboard stays up at {hub_url}/ ; press Ctrl-C to stop")
                while hub.thread.is_alive():
                    time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            hub.stop()


def _prepare_database(s: Settings) -> str:
    from workhub.app import resolve_database_url
    from workhub.db import migrate
    from workhub.db.urls import redact

    try:
        url = resolve_database_url(s)
        migrate.migrate(url, s.timezone, months_ahead=s.partitions_months_ahead, weeks_ahead=s.partitions_weeks_ahead)
    except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
        fail(f"cannot prepare the demo database: {exc}")
    console.print(f"database: {redact(url)}")
    return url


async def _with_db(s: Settings, url: str, fn, *args, **kwargs):
    """``fn(conn, ...)`` in one transaction on a small Database (inside the demo's own event loop)."""
    async with open_database(s, url, timeout=30) as db:
        return await db.run(fn, *args, **kwargs)


async def _seed(s: Settings, url: str) -> str:
    """Sample sites, slots and proxies through the core functions; a second run adds nothing."""
    from workhub.core import proxies, sites, slots

    async def seed(conn) -> str:
        existing = {site["name"] for site in await sites.list_sites(conn, limit=100)}
        if set(SAMPLE_SITES) <= existing:
            return "already loaded"
        site_ids = [(await sites.create_site(conn, name=name, actor="demo"))["id"] for name in SAMPLE_SITES]
        today = s.work_date()
        for i, (keyword, code, per_day, pace) in enumerate(SAMPLE_SLOTS):
            await slots.create_slot(conn, {
                "keyword": keyword, "code": code, "start_date": today - timedelta(days=7),
                "end_date": today + timedelta(days=30), "daily_work_count": per_day, "pace": pace,
                "cart_click_enabled": i % 2 == 0, "block_mercury": i % 3 == 0, "block_image_cdn": i % 2 == 1,
                "block_img1a_cdn": False, "block_thumbnail_cdn": i % 4 == 0, "is_active": True,
                "external_ref": f"demo-{i + 1}", "max_daily_attempts": None,
            }, site_id=site_ids[i % len(site_ids)], actor="demo")
        await proxies.import_proxies(conn, [
            {"host": "127.0.0.1", "port": 20000 + i, "protocol": "http", "username": f"demo{i}",
             "password": f"demo-password-{i}", "max_uses": 40} for i in range(SAMPLE_PROXIES)],
            default_max_uses=s.proxy_default_max_uses, actor="demo")
        return f"{len(SAMPLE_SITES)} sites, {len(SAMPLE_SLOTS)} slots, {SAMPLE_PROXIES} proxies"

    return await _with_db(s, url, seed)


class _HubThread:
    """uvicorn in a thread of this process, on the loopback port."""

    def __init__(self, s: Settings, url: str):
        import uvicorn

        from workhub.app import create_app

        config = uvicorn.Config(create_app(s, url), host="127.0.0.1", port=s.port, log_level="warning",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _start_hub(s: Settings, url: str) -> _HubThread:
    hub = _HubThread(s, url)
    hub.thread.start()
    deadline = time.monotonic() + 60
    while not hub.server.started:
        if not hub.thread.is_alive():
            fail(f"the hub could not start on 127.0.0.1:{s.port} (is the port in use? try --port)")
        if time.monotonic() > deadline:
            hub.stop()
            fail("the hub did not start within 60 s")
        time.sleep(0.05)
    return hub


async def _rotate_proxies(s: Settings, url: str, stop: asyncio.Event) -> None:
    """Plays the proxy agents: an exhausted proxy reports a new exit IP, which resets its use budget."""
    from workhub.core import proxies

    rng = random.Random(7)

    async def rotate(conn) -> None:
        for proxy in await proxies.list_proxies(conn, s, status="exhausted", limit=100):
            ip = f"198.51.100.{rng.randint(1, 254)}"  # documentation range: never a real host
            await proxies.heartbeat(conn, s, proxy["id"], ip, trusted=True)

    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=ROTATE_EVERY_SECONDS)
        except TimeoutError:
            await _with_db(s, url, rotate)


async def _run_fleet(s: Settings, url: str, hub_url: str, duration: float, workers: int):
    from workhub.sim import FleetConfig, FleetSimulator

    config = FleetConfig(urls=[hub_url], workers=workers, duration=duration, latency_ms=(300, 1500),
                         outcomes={"success": 0.82, "failed": 0.1, "blocked": 0.08}, seed=42)
    progress = Progress(TextColumn("[bold]simulated fleet[/]"), BarColumn(), TextColumn("{task.description}"),
                        TimeRemainingColumn(), console=console)
    task = progress.add_task("", total=duration)

    def show(stats) -> None:
        progress.update(task, completed=min(stats.elapsed, duration),
                        description=f"allocated {stats.allocated}  submitted {sum(stats.submitted.values())}")

    stop = asyncio.Event()
    rotator = asyncio.create_task(_rotate_proxies(s, url, stop))
    try:
        with progress:
            return await FleetSimulator(config, on_progress=show).run()
    finally:
        stop.set()
        await rotator
