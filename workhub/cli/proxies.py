"""`workhub proxies ...`: import, list, show and the operator actions on the proxy pool."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer
from rich.table import Table

from workhub.cli.common import console, err_console, fail, run_core, settings
from workhub.core import proxies
from workhub.errors import HubError

app = typer.Typer(help="The proxy pool: import, list, reset, disable, enable.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="proxies", help="The proxy pool: import, list, reset, disable, enable.")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="Lines host:port[:user:pass] (optionally scheme://), or CSV with a "
                                          "header: host,port[,protocol,username,password,max_uses,heartbeat_managed]"),
    protocol: str = typer.Option("http", help="Protocol for lines that name none"),
    max_uses: int | None = typer.Option(None, min=1, help="Use budget for rows that name none "
                                                             "(default HUB_PROXY_DEFAULT_MAX_USES)"),
) -> None:
    """Import proxies from FILE, all or nothing."""
    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text")
    if protocol not in proxies.PROTOCOLS:
        fail(f"--protocol must be one of {', '.join(proxies.PROTOCOLS)}")
    try:
        rows = proxies.parse_proxy_file(text, protocol=protocol)
    except HubError as exc:
        for error in exc.details["errors"]:
            err_console.print(f"[red]line {error['line']}:[/] {error['message']}", highlight=False)
        fail(f"{exc.message}")
    s = settings()
    default = max_uses or s.proxy_default_max_uses

    async def go(conn):
        try:
            return await proxies.import_proxies(conn, rows, default_max_uses=default, actor=_actor())
        except HubError as exc:
            raise _with_line_numbers(exc, rows) from None

    with console.status(f"importing {len(rows)} proxies"):
        ids = run_core(go, s=s)
    console.print(f"[green]imported {len(ids)} proxies[/] (ids {ids[0]}..{ids[-1]})")


def _with_line_numbers(exc: HubError, rows: list[dict]) -> HubError:
    """Import conflicts name input positions; a person wants the file's line numbers."""
    items = (exc.details or {}).get("existing") or (exc.details or {}).get("duplicates") or []
    if not items:
        return exc
    lines = "; ".join(f"line {rows[i['item'] - 1]['line']}: {i['endpoint']}" for i in items[:20])
    more = f" (and {len(items) - 20} more)" if len(items) > 20 else ""
    what = "exists already" if exc.code == "proxy_exists" else "appears twice in the file"
    return HubError(exc.status, exc.code, f"{exc.message} Each of these {what}: {lines}{more}")


@app.command("list")
def list_command(
    status: str | None = typer.Option(None, help="active, exhausted, cooldown, offline or disabled"),
    limit: int = typer.Option(100, min=1, max=10_000),
    offset: int = typer.Option(0, min=0),
) -> None:
    """List proxies (never with passwords)."""
    s = settings()

    async def go(conn):
        return (await proxies.list_proxies(conn, s, status=status, limit=limit, offset=offset),
                await proxies.count_proxies(conn, status=status), await proxies.pool_figures(conn, s))

    rows, total, figures = run_core(go, s=s)
    table = Table(title=f"proxies {offset + 1 if rows else 0}-{offset + len(rows)} of {total}")
    for column in ("id", "endpoint", "status", "uses", "ip", "health 7d", "blocks 7d", "last heartbeat", "reason"):
        table.add_column(column, justify="right" if column in ("id", "uses", "health 7d", "blocks 7d") else "left")
    colours = {"active": "green", "exhausted": "yellow", "cooldown": "magenta", "offline": "red", "disabled": "dim"}
    for p in rows:
        user = f"{p['username']}{':***' if p['has_password'] else ''}@" if p["username"] else ""
        table.add_row(
            str(p["id"]), f"{p['protocol']}://{user}{p['host']}:{p['port']}",
            f"[{colours[p['status']]}]{p['status']}[/]", f"{p['use_count']}/{p['max_uses']}",
            p["current_ip"] or "-", _pct(p["health"]), _pct(p["block_rate"]),
            p["last_heartbeat"].strftime("%Y-%m-%d %H:%M:%S") if p["last_heartbeat"] else "-",
            p["status_reason"] or "")
    console.print(table)
    console.print(f"pool: {figures['available']} available of {figures['total']} · exhausted {figures['exhausted']}"
                  f" · cooldown {figures['cooldown']} · offline {figures['offline']} · disabled {figures['disabled']}"
                  f" · utilisation {figures['utilisation']:.0%}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@app.command("show")
def show(proxy_id: int = typer.Argument(..., min=1)) -> None:
    """One proxy: state, IP history, recent transitions."""
    s = settings()
    p = run_core(proxies.get_proxy, s, proxy_id, s=s)
    console.print(f"[bold]proxy {p['id']}[/] {p['protocol']}://{p['host']}:{p['port']} "
                  f"status [bold]{p['status']}[/] ({p['status_reason'] or '-'}), uses {p['use_count']}/{p['max_uses']}, "
                  f"ip {p['current_ip'] or '-'}, password {'set' if p['has_password'] else 'none'}")
    history = Table(title="IP history")
    for column in ("ip", "first seen", "last seen", "uses"):
        history.add_column(column)
    for h in p["ip_history"]:
        history.add_row(h["ip"], str(h.get("first_seen") or "-"), str(h.get("last_seen") or "-"), str(h["uses"]))
    console.print(history)
    events = Table(title="recent transitions")
    for column in ("at", "from", "to", "reason", "by"):
        events.add_column(column)
    for e in p["events"]:
        events.add_row(e["changed_at"].strftime("%Y-%m-%d %H:%M:%S"), e["from_status"], e["to_status"],
                       e["reason"] or "", e["changed_by"])
    console.print(events)


def _act(fn, proxy_ids: list[int], verb: str, **kwargs) -> None:
    s = settings()

    async def go(conn):
        return [await fn(conn, s, pid, actor=_actor(), **kwargs) for pid in proxy_ids]

    for p in run_core(go, s=s):
        console.print(f"proxy {p['id']} {verb}: status [bold]{p['status']}[/], uses {p['use_count']}/{p['max_uses']}")


@app.command("reset")
def reset(proxy_ids: list[int] = typer.Argument(..., help="One or more proxy ids")) -> None:
    """Manual rotation: use_count to 0, cooldown lifted (all listed proxies, or none)."""
    _act(proxies.reset_proxy, proxy_ids, "reset")


@app.command("disable")
def disable(proxy_ids: list[int] = typer.Argument(...), reason: str | None = typer.Option(None)) -> None:
    """Take proxies out of the pool."""
    _act(proxies.disable_proxy, proxy_ids, "disabled", reason=reason)


@app.command("enable")
def enable(proxy_ids: list[int] = typer.Argument(...)) -> None:
    """Put disabled proxies back."""
    _act(proxies.enable_proxy, proxy_ids, "enabled")


@app.command("set-max-uses")
def set_max_uses(proxy_id: int = typer.Argument(..., min=1), max_uses: int = typer.Argument(..., min=1)) -> None:
    """Change a proxy's use budget."""
    _act(proxies.set_max_uses, [proxy_id], "updated", max_uses=max_uses)


@app.command("agent-token")
def agent_token(proxy_id: int = typer.Argument(..., min=1)) -> None:
    """Issue a per-proxy heartbeat token (printed once, stored hashed)."""
    s = settings()
    reply = run_core(proxies.issue_agent_token, s, proxy_id, actor=_actor(), s=s)
    console.print(f"agent token for proxy {proxy_id} (shown once): {reply['agent_token']}", highlight=False)


@app.command("refresh")
def refresh() -> None:
    """Run the every-minute state refresh now (cooldowns, offline detection)."""
    s = settings()
    counts = run_core(proxies.refresh_states, s, s=s)
    console.print(" · ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
