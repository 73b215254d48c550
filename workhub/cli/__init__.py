"""The `workhub` command line: the same core functions as the API, with rich output."""

from __future__ import annotations

import importlib

import typer

from workhub.cli import db as db_cli
from workhub.cli import serve as serve_cli

app = typer.Typer(help="workhub: work-allocation hub with an exact daily ledger.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.add_typer(db_cli.app, name="db", help="Schema migrations.")
serve_cli.register(app)

# Capability command groups; each module exposes `register(app)`.
for _name in ("sites", "slots", "proxies", "maintenance", "alerts", "simulate", "bench", "demo"):
    try:
        importlib.import_module(f"workhub.cli.{_name}").register(app)
    except ModuleNotFoundError as exc:
        if exc.name != f"workhub.cli.{_name}":
            raise


def main() -> None:
    app()
