"""The `workhub` command line: the same core functions as the API, with rich output."""

from __future__ import annotations

import typer

from workhub.cli import alerts, bench, demo, maintenance, proxies, serve, simulate, sites, slots
from workhub.cli import db as db_cli

app = typer.Typer(help="workhub: work-allocation hub with an exact daily ledger.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.add_typer(db_cli.app, name="db", help="Schema migrations.")
# each command group registers its commands
for module in (serve, sites, slots, proxies, maintenance, alerts, simulate, bench, demo):
    module.register(app)


def main() -> None:
    app()
