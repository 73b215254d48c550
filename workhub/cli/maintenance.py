"""`workhub maintenance run|status`, `workhub backup`, `workhub restore`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workhub.cli.common import console, database_url, fail, settings, with_database


def _jobs() -> tuple[str, ...]:
    """The job kinds, from core (imported when a command runs: the CLI starts without the core modules)."""
    from workhub.core.maintenance import JOB_KINDS

    return JOB_KINDS


def _short(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _summary(rows: dict) -> str:
    parts = []
    for step, value in (rows or {}).items():
        if isinstance(value, dict):
            if "error" in value:
                parts.append(f"{step}: [red]error[/]")
                continue
            value = {k: v for k, v in value.items() if isinstance(v, (int, float, str)) and k != "horizon"}
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        parts.append(f"{step}: {value}")
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    maint = typer.Typer(help="Maintenance jobs (the scheduler runs them; run them by hand here).",
                        no_args_is_help=True)
    app.add_typer(maint, name="maintenance")

    @maint.command("run")
    def run(job: str = typer.Argument(..., help="minute | midnight | daily | weekly | monthly"),
            as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON")) -> None:
        """Run one job now; the run is recorded like a scheduled one (without a slot)."""
        jobs = _jobs()
        if job not in jobs:
            fail(f"unknown job {job!r}; choose one of: {', '.join(jobs)}")
        from workhub.core import maintenance

        s = settings()

        async def go(db):
            return await maintenance.run_job(db, s, job, run_by="cli")

        with console.status(f"running the {job} job..."):
            result = with_database(go, s=s, pool_max=4)
        if as_json:
            console.print_json(json.dumps(result, default=str))
        else:
            table = Table(title=f"{job} run #{result['id']}: {result['status']}")
            table.add_column("step")
            table.add_column("result", overflow="fold")
            for step, value in result["rows_affected"].items():
                table.add_row(step, json.dumps(value, default=str) if not isinstance(value, str) else value)
            console.print(table)
        if result["status"] != "ok":
            fail(f"the {job} job failed: {result['error']}")

    @maint.command("status")
    def status(limit: int = typer.Option(20, min=1, max=500, help="Recent runs to show")) -> None:
        """The latest run of each job, the next slots, and the recent runs."""
        from workhub.core import maintenance

        s = settings()

        async def go(db):
            last = await db.run(maintenance.last_runs, s)
            recent = await db.run(maintenance.list_runs, limit=limit)
            return last, recent, maintenance.due_slots(s.now(), s)

        last, recent, slots = with_database(go, s=s, pool_max=4)
        table = Table(title="Maintenance jobs")
        for column in ("job", "last run", "status", "last ok", "failures 24h", "current slot"):
            table.add_column(column)
        by_job = {r["job"]: r for r in last}
        jobs = _jobs()
        for job in jobs + tuple(j for j in by_job if j not in jobs):
            r = by_job.get(job)
            slot = slots.get(job)
            if r is None:
                table.add_row(job, "never", "-", "-", "0", _short(slot))
                continue
            colour = {"ok": "green", "failed": "red", "running": "yellow"}[r["status"]]
            table.add_row(job, _short(r["started_at"]), f"[{colour}]{r['status']}[/]", _short(r["last_ok_at"]),
                          str(r["recent_failures"]), _short(slot))
        console.print(table)
        runs = Table(title=f"Recent runs (last {limit})")
        for column in ("id", "job", "slot", "started", "finished", "status", "by", "rows / error"):
            runs.add_column(column, overflow="fold")
        for r in recent:
            colour = {"ok": "green", "failed": "red", "running": "yellow"}[r["status"]]
            runs.add_row(str(r["id"]), r["job"], _short(r["scheduled_for"]), _short(r["started_at"]),
                         _short(r["finished_at"]), f"[{colour}]{r['status']}[/]", r["run_by"] or "-",
                         r["error"] or _summary(r["rows_affected"]))
        console.print(runs)

    @app.command("backup")
    def backup_cmd(out: Path = typer.Option(None, "--out", "-o",
                                            help="File to write (default backup_YYYYMMDD.sql in the backup "
                                                 "directory: HUB_BACKUP_DIR, else <HUB_DATA_DIR>/backups)")) -> None:
        """pg_dump the hub's tables (v1_hub_*) into a plain SQL file, with a pg_dump matching the server.

        The backup is recorded as a maintenance run (job 'backup'), as one made through the API is."""
        from workhub.core import backup

        s = settings()
        with Progress(TextColumn("[bold]backup[/] {task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} tables"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("starting pg_dump", total=None)

            def step(done: int, total: int, table: str) -> None:
                progress.update(task, completed=done, total=total, description=table)

            run = with_database(backup.recorded_backup, s, out, run_by="cli", progress=step, s=s)
        if run is None:
            fail("another backup run is already in progress")
        if run["status"] != "ok":
            fail(f"backup run #{run['id']} failed: {run['error']}")
        info = run["rows_affected"]["pg_dump"]
        console.print(f"[green]backup written:[/] {info['file']} ({info['bytes']:,} bytes, {info['tables']} "
                      f"tables, {info['pg_dump_version']} for server {info['server_major']}; run #{run['id']})")

    @app.command("restore")
    def restore_cmd(file: Path = typer.Argument(..., help="A file made by `workhub backup`"),
                    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation")) -> None:
        """Replace the hub's tables with a backup's contents (one transaction: all or nothing)."""
        from workhub.core import backup
        from workhub.db.urls import redact

        s = settings()
        try:
            info = backup.check_backup_file(file)
        except backup.BackupError as exc:
            fail(exc.message)
        url = database_url(s)
        if not yes:
            typer.confirm(f"Replace every v1_hub_* table in {redact(url)} with the contents of {file}?",
                          abort=True)
        with Progress(TextColumn("[bold]restore[/]"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("restore", total=info["bytes"])
            try:
                result = backup.restore(s, url, file,
                                        progress=lambda done, total: progress.update(task, completed=done))
            except backup.BackupError as exc:
                progress.stop()
                fail(exc.message)
        console.print(f"[green]restored[/] {result['file']} ({result['bytes']:,} bytes) with {result['psql']}")
