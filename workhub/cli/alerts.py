"""`workhub alerts`: list alerts; `workhub alerts evaluate`: run the alarm rules now."""

from __future__ import annotations

import typer
from rich.table import Table

from workhub.cli.common import console, fail, settings


def register(app: typer.Typer) -> None:
    alerts_app = typer.Typer(help="Alarm rules and their alerts.", invoke_without_command=True,
                             no_args_is_help=False)
    app.add_typer(alerts_app, name="alerts")

    @alerts_app.callback()
    def alerts(ctx: typer.Context,
               all_: bool = typer.Option(False, "--all", help="Resolved alerts too (default: firing only)"),
               limit: int = typer.Option(100, min=1, max=1000, help="At most this many alerts")) -> None:
        """List firing alerts (or all with --all)."""
        if ctx.invoked_subcommand is not None:
            return
        from workhub.cli.common import run_core
        from workhub.core import alarms

        rows = run_core(alarms.list_alerts, None if all_ else "firing", limit)
        if not rows:
            console.print("[green]No firing alerts.[/]" if not all_ else "No alerts recorded.")
            return
        table = Table(title="Alerts" if all_ else "Firing alerts")
        for column in ("id", "status", "severity", "rule", "subject", "message", "fired", "resolved"):
            table.add_column(column, overflow="fold")
        colours = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
        for row in rows:
            style = colours.get(row["severity"], "") if row["status"] == "firing" else "dim"
            table.add_row(str(row["id"]), row["status"], row["severity"], row["rule"], row["subject"] or "-",
                          row["message"], _short(row["fired_at"]), _short(row["resolved_at"]), style=style)
        console.print(table)

    @alerts_app.command("evaluate")
    def evaluate() -> None:
        """Evaluate every alarm rule now, then log and send the new and resolved alerts."""
        import asyncio

        import psycopg

        from workhub.cli.common import database_url
        from workhub.core import alarms
        from workhub.db.pool import Database
        from workhub.errors import HubError

        s = settings()

        async def go():
            db = Database(s.model_copy(update={"pool_min": 1, "pool_max": 2}), database_url(s))
            await db.pool.open(wait=True, timeout=15)
            try:
                return await alarms.evaluate_and_notify(db, s)
            finally:
                await db.close()

        try:
            outcome = asyncio.run(go())
        except HubError as exc:
            fail(f"{exc.message} ({exc.code})")
        except psycopg.Error as exc:
            fail(f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - e.g. the pool timing out on an unreachable database
            fail(f"cannot evaluate alarms: {type(exc).__name__}")
        sent = outcome["notifications"]
        console.print(f"firing: [bold]{outcome['firing']}[/]  new: {outcome['fired']}  "
                      f"resolved: {outcome['resolved']}  notified: {sent['claimed']}"
                      + (f" (webhook failures: {sent['failed']})" if sent["failed"] else ""))
        for item in outcome["fired_items"]:
            console.print(f"  [red]fired[/] {item['rule']} {item['subject']}".rstrip())
        for item in outcome["resolved_items"]:
            console.print(f"  [green]resolved[/] {item['rule']} {item['subject']}".rstrip())


def _short(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"
