"""`workhub simulate`: a simulated worker fleet against a running hub (loopback only, bounded)."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from workhub.cli.common import console, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        url: list[str] = typer.Option(["http://127.0.0.1:8080"], "--url",
                                      help="Hub URL (loopback); repeat to spread the fleet over several hubs."),
        workers: int = typer.Option(8, "--workers", "-w", min=1, max=1024, help="Simulated workers."),
        duration: float = typer.Option(10.0, "--duration", "-d", min=0.1, max=86400, help="Seconds to run."),
        batch: int = typer.Option(1, "--batch", min=1, max=100, help="Packages per allocate call."),
        latency_min: int = typer.Option(20, help="Shortest simulated check, ms."),
        latency_max: int = typer.Option(300, help="Longest simulated check, ms."),
        success: float = typer.Option(0.8, help="Weight of success outcomes."),
        failed: float = typer.Option(0.12, help="Weight of failed outcomes."),
        blocked: float = typer.Option(0.08, help="Weight of blocked outcomes."),
        abandon_rate: float = typer.Option(0.03, min=0, max=1, help="Share of leases abandoned (never submitted)."),
        release_rate: float = typer.Option(0.02, min=0, max=1, help="Share of leases released at once."),
        keep_leases: bool = typer.Option(False, help="Extend leases in the background while working."),
        fleet_token: str = typer.Option(None, envvar="HUB_FLEET_TOKEN", show_envvar=False,
                                        help="Fleet token, when the hub requires one."),
        seed: int = typer.Option(None, help="Random seed, for a repeatable run."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Run a simulated fleet of workers against a hub and report what the hub answered."""
        from workhub.sim import FleetConfig, FleetSimulator

        config = FleetConfig(urls=url, workers=workers, duration=duration, batch=batch,
                             latency_ms=(latency_min, latency_max),
                             outcomes={"success": success, "failed": failed, "blocked": blocked},
                             abandon_rate=abandon_rate, release_rate=release_rate, keep_leases=keep_leases,
                             fleet_token=fleet_token, seed=seed)
        try:
            config.validate()
        except ValueError as exc:
            fail(str(exc))

        progress = Progress(TextColumn("[bold]simulating[/]"), BarColumn(), TextColumn("{task.description}"),
                            TimeRemainingColumn(), console=console, disable=as_json, transient=False)
        task = progress.add_task("", total=duration)

        def show(stats) -> None:
            sent = sum(stats.submitted.values())
            progress.update(task, completed=min(stats.elapsed, duration),
                            description=(f"allocated {stats.allocated}  submitted {sent}  "
                                         f"counted ok {stats.counted.get('success', 0)}  "
                                         f"no_work {sum(stats.no_work.values())}  "
                                         f"errors {sum(stats.errors.values())}"))

        simulator = FleetSimulator(config, on_progress=show)
        try:
            with progress:
                stats = asyncio.run(simulator.run())
        except KeyboardInterrupt:
            fail("interrupted", 130)
        summary = stats.summary()
        if as_json:
            console.print_json(json.dumps(summary))
        else:
            table = Table(title=f"fleet of {workers} against {', '.join(url)}")
            table.add_column("measure")
            table.add_column("value", justify="right")
            for name, value in summary.items():
                table.add_row(name.replace("_", " "), _fmt(value))
            console.print(table)
        if stats.allocate_calls == 0:
            first_error = next(iter(stats.errors), "no answer")
            fail(f"the hub never answered an allocation ({first_error}); is it running at {', '.join(url)}?")
        if stats.duplicates_wrong:
            fail(f"{stats.duplicates_wrong} resubmissions were not answered as duplicates of the first result")


def _fmt(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return "-" if value is None else str(value)
