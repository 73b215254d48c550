"""`workhub alerts`: list alerts; `workhub alerts evaluate`: run the alarm rules now."""

from __future__ import annotations

import typer
from rich.table import Table

from workhub.cli.common import console, run_core, settings, with_database


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
        from workhub.core import alarms

        s = settings()
        outcome = with_database(alarms.evaluate_and_notify, s, s=s)
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
