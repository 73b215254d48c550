"""`workhub db migrate|status`."""

from __future__ import annotations

import typer
from rich.table import Table

from workhub.cli.common import console, database_url, fail, settings
from workhub.db import migrate

app = typer.Typer(no_args_is_help=True)


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending migrations (a no-op when the schema is current)."""
    s = settings()
    try:
        applied = migrate.migrate(database_url(s), s.timezone, months_ahead=s.partitions_months_ahead,
                                  weeks_ahead=s.partitions_weeks_ahead)
    except Exception as exc:  # noqa: BLE001 - shown to the operator, not a traceback
        fail(f"migration failed: {exc}")
    if applied:
        console.print(f"[green]applied[/] {', '.join(applied)}")
    else:
        console.print("schema is current; nothing to apply")


@app.command("status")
def status_cmd() -> None:
    """Show applied and pending migrations."""
    states = migrate.status(database_url())
    table = Table("migration", "state", "applied at (UTC)")
    for m in states:
        table.add_row(m.id, "[green]applied[/]" if m.applied_at else "[yellow]pending[/]",
                      str(m.applied_at or ""))
    console.print(table)
    pending = [m.id for m in states if not m.applied_at]
    console.print(f"{len(states) - len(pending)} applied, {len(pending)} pending")
