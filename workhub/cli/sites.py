"""`workhub sites`: customer sites and their keys."""

from __future__ import annotations

import typer
from rich.table import Table

from workhub.cli.common import console, fail, run_core
from workhub.core import sites

app = typer.Typer(help="Customer sites: add, list, disable, enable, rotate-key.", no_args_is_help=True)


def _webhook_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        fail(f"--webhook-url must start with http:// or https:// (got {value!r})")
    return value


def _show_key(title: str, key: str) -> None:
    console.print(f"[bold]{title}[/]: [green]{key}[/]")
    console.print("[yellow]This key is shown once and stored only as a hash; keep it now.[/]")


@app.command("add")
def add(name: str = typer.Argument(..., help="Site name (unique)"),
        webhook_url: str = typer.Option(None, help="POSTed to when a slot completes its day"),
        webhook_secret: str = typer.Option(None, help="HMAC key for the webhook signature (generated if omitted)")):
    """Create a site and print its key once."""
    name = name.strip()
    if not name or len(name) > 200:
        fail("NAME must be 1 to 200 characters.")
    if webhook_secret is not None and len(webhook_secret) < 8:
        fail("--webhook-secret must be at least 8 characters.")
    site = run_core(sites.create_site, name=name, webhook_url=_webhook_url(webhook_url),
                    webhook_secret=webhook_secret, actor="cli")
    console.print(f"Created site [bold]{site['name']}[/] (id {site['id']}).")
    _show_key("API key", site["api_key"])
    if site.get("webhook_secret"):
        console.print(f"Webhook secret (shown once): [green]{site['webhook_secret']}[/]")


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="Include disabled sites")):
    """List sites (never their keys)."""
    rows = run_core(sites.list_sites, is_active=None if all_ else True, limit=10_000)
    table = Table("id", "name", "key prefix", "active", "active slots", "webhook", "created")
    for s in rows:
        table.add_row(str(s["id"]), s["name"], s["api_key_prefix"] + "…", "yes" if s["is_active"] else "no",
                      str(s["active_slots"]), s["webhook_url"] or "-", s["created_at"].strftime("%Y-%m-%d %H:%M"))
    console.print(table if rows else "No sites yet: [bold]workhub sites add NAME[/].")


@app.command("disable")
def disable(site_id: int = typer.Argument(..., help="Site id")):
    """Disable a site: its key stops working."""
    site = run_core(sites.update_site, site_id, actor="cli", is_active=False)
    console.print(f"Site [bold]{site['name']}[/] (id {site['id']}) is disabled.")


@app.command("enable")
def enable(site_id: int = typer.Argument(..., help="Site id")):
    """Enable a disabled site again."""
    site = run_core(sites.update_site, site_id, actor="cli", is_active=True)
    console.print(f"Site [bold]{site['name']}[/] (id {site['id']}) is enabled.")


@app.command("rotate-key")
def rotate_key(site_id: int = typer.Argument(..., help="Site id")):
    """Issue a new key; the old one stops working at once."""
    site = run_core(sites.rotate_key, site_id, actor="cli")
    console.print(f"New key for site [bold]{site['name']}[/] (id {site['id']}).")
    _show_key("API key", site["api_key"])


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sites", help="Customer sites and their keys.")
