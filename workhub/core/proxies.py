"""The proxy pool: import, listing (never with passwords), heartbeat/rotation and the life cycle.

States and transitions (docs/proxies.md draws them):
- active -> exhausted: the allocator spends the last use (v1_hub_allocate_work).
- active/exhausted -> cooldown: N consecutive blocked results (v1_hub_submit_result).
- cooldown -> active/exhausted: cooldown_until passed (refresh_states).
- active/exhausted -> offline: heartbeat-managed and silent too long (refresh_states).
- offline -> active/exhausted: a heartbeat.
- exhausted/cooldown/offline -> active: a heartbeat with a new IP (rotation), or an operator reset.
- any -> disabled -> active/exhausted: operator disable / enable.
Every status change lands in v1_hub_proxy_events (a trigger), whoever makes it.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from workhub.config import Settings
from workhub.db import queries as q
from workhub.errors import HubError, conflict, invalid, not_found
from workhub.keys import hash_key, new_agent_token

STATUSES = ("active", "exhausted", "cooldown", "offline", "disabled")
PROTOCOLS = ("http", "https", "socks4", "socks5")


# ---------------------------------------------------------------- import
async def import_proxies(conn: AsyncConnection, proxies: list[dict], *, default_max_uses: int,
                         actor: str = "admin") -> list[int]:
    """Insert proxies in one statement, all or nothing; returns their ids in input order.

    An endpoint (host, port, protocol, username) that exists already, or appears twice in the input,
    fails the whole import with 409 ``proxy_exists`` naming the positions (1-based)."""
    rows = [{"host": p["host"], "port": int(p["port"]), "protocol": p.get("protocol") or "http",
             "username": p.get("username"), "password": p.get("password"),
             "max_uses": p.get("max_uses") or default_max_uses,
             "heartbeat_managed": bool(p.get("heartbeat_managed", False))} for p in proxies]
    seen: dict[tuple, int] = {}
    repeated = []
    for n, row in enumerate(rows, start=1):
        endpoint = (row["host"], row["port"], row["protocol"], row["username"])
        if endpoint in seen:
            repeated.append({"item": n, "same_as": seen[endpoint], "endpoint": _endpoint(row)})
        seen.setdefault(endpoint, n)
    if repeated:
        raise conflict("duplicate_proxy", "The same proxy appears more than once in the import.",
                       {"duplicates": repeated[:50]})
    await q.set_actor(conn, actor)
    result = await q.fetch_all(conn, "import_proxies", {"proxies": json.dumps(rows)})
    existing = [{"item": r["n"], "endpoint": _endpoint(rows[r["n"] - 1])} for r in result if r["id"] is None]
    if existing:
        # raising rolls the transaction back: nothing of this import stays
        raise conflict("proxy_exists", f"{len(existing)} of these proxies exist already; nothing was imported.",
                       {"existing": existing[:50]})
    return [r["id"] for r in result]


def _endpoint(row: dict) -> str:
    user = f"{row['username']}@" if row.get("username") else ""
    return f"{row['protocol']}://{user}{row['host']}:{row['port']}"


def parse_proxy_file(text: str, *, protocol: str = "http") -> list[dict]:
    """Parse an import file: lines ``host:port[:user:pass]`` or CSV with a header row naming
    host, port and optionally protocol, username, password, max_uses, heartbeat_managed.

    Blank lines and lines starting with ``#`` are ignored. Every bad line is reported at once with
    its line number (HubError 422 ``invalid_proxy_file``)."""
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise invalid("The file lists no proxies.", code="invalid_proxy_file")
    header = [h.strip().lower() for h in first.split(",")]
    if "host" in header and "port" in header:
        proxies, errors = _parse_csv(lines, protocol)
    else:
        proxies, errors = _parse_colon_lines(lines, protocol)
    if errors:
        raise invalid(f"{len(errors)} line(s) of the file are not valid; nothing was imported.",
                      {"errors": errors[:100]}, code="invalid_proxy_file")
    return proxies


def _parse_colon_lines(lines: list[str], protocol: str) -> tuple[list[dict], list[dict]]:
    proxies, errors = [], []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        scheme = protocol
        if "://" in line:
            scheme, _, line = line.partition("://")
        parts = line.split(":")
        if len(parts) not in (2, 4):
            errors.append({"line": number, "message": "expected host:port or host:port:user:pass"})
            continue
        item = {"host": parts[0], "port": parts[1], "protocol": scheme,
                "username": parts[2] if len(parts) == 4 else None,
                "password": parts[3] if len(parts) == 4 else None}
        _check(item, number, proxies, errors)
    return proxies, errors


def _parse_csv(lines: list[str], protocol: str) -> tuple[list[dict], list[dict]]:
    proxies, errors = [], []
    body = [(n, ln) for n, ln in enumerate(lines, start=1) if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(ln for _, ln in body)))
    header = [h.strip().lower() for h in next(reader)]
    known = {"host", "port", "protocol", "username", "password", "max_uses", "heartbeat_managed"}
    unknown = [h for h in header if h not in known]
    if unknown:
        return [], [{"line": body[0][0], "message": f"unknown column(s): {', '.join(unknown)}"}]
    for (number, _), values in zip(body[1:], reader):
        if len(values) != len(header):
            errors.append({"line": number, "message": f"expected {len(header)} values, got {len(values)}"})
            continue
        item = {k: (v.strip() or None) for k, v in zip(header, values)}
        item.setdefault("protocol", None)
        item["protocol"] = item["protocol"] or protocol
        _check(item, number, proxies, errors)
    return proxies, errors


def _check(item: dict, number: int, proxies: list[dict], errors: list[dict]) -> None:
    problems = []
    host = (item.get("host") or "").strip("[]")
    if not host or len(host) > 255 or any(c.isspace() for c in host):
        problems.append("host is missing or not valid")
    port = _int(item.get("port"))
    if port is None or not 1 <= port <= 65535:
        problems.append("port must be a number from 1 to 65535")
    if item.get("protocol") not in PROTOCOLS:
        problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}")
    max_uses = item.get("max_uses")
    if max_uses is not None and (_int(max_uses) is None or _int(max_uses) <= 0):
        problems.append("max_uses must be a positive number")
    managed = str(item.get("heartbeat_managed") or "false").lower()
    if managed not in ("true", "false", "1", "0", "yes", "no"):
        problems.append("heartbeat_managed must be true or false")
    if problems:
        # the message never repeats the line: it may hold a password
        errors.append({"line": number, "message": "; ".join(problems)})
        return
    proxies.append({"host": host, "port": port, "protocol": item["protocol"],
                    "username": item.get("username") or None, "password": item.get("password") or None,
                    "max_uses": _int(max_uses) if max_uses is not None else None,
                    "heartbeat_managed": managed in ("true", "1", "yes"), "line": number})


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- reading
async def list_proxies(conn: AsyncConnection, settings: Settings, *, status: str | None = None, limit: int = 100,
                       offset: int = 0, now: datetime | None = None) -> list[dict]:
    """Proxies by id, without passwords or token hashes; with has_password, health and block_rate.

    health = successes / results and block_rate = blocked / results over the last 7 days of
    usage_stats (None before the first result). ``now`` defaults to the hub clock."""
    _check_status(status)
    return await q.fetch_all(conn, "list_proxies", {"status": status, "proxy_id": None, "limit": limit,
                                                    "offset": offset, "now": now or settings.now()})


async def count_proxies(conn: AsyncConnection, *, status: str | None = None) -> int:
    _check_status(status)
    return await q.fetch_val(conn, "count_proxies", {"status": status})


async def get_proxy(conn: AsyncConnection, settings: Settings, proxy_id: int, *, now: datetime | None = None,
                    events: int = 20) -> dict:
    """One proxy as listed, plus its IP history, 14 days of usage and its latest transitions.

    ``now`` defaults to the hub clock; the writes below pass the instant they used."""
    now = now or settings.now()
    rows = await q.fetch_all(conn, "list_proxies", {"status": None, "proxy_id": proxy_id, "limit": 1,
                                                    "offset": 0, "now": now})
    if not rows:
        raise not_found("proxy", proxy_id)
    details = await q.fetch_one(conn, "proxy_details", {"proxy_id": proxy_id, "now": now})
    recent = await q.fetch_all(conn, "proxy_events", {"proxy_id": proxy_id, "limit": events})
    return {**rows[0], "ip_history": details["ip_history"], "usage_days": details["usage_days"],
            "events": recent}


async def pool_figures(conn: AsyncConnection, settings: Settings) -> dict:
    """total, available (allocatable now), active, exhausted, cooldown, offline, disabled,
    uses_left (allocations the available proxies can still take),
    utilisation = uses spent / use budget (sum of max_uses) over proxies that are not disabled, 0..1,
    and available_ratio = available / total, 0..1 (0 for an empty pool)."""
    row = await q.fetch_one(conn, "pool_figures", {"now": settings.now()})
    budget = row.pop("budget")
    uses = row.pop("uses")
    row["utilisation"] = round(uses / budget, 4) if budget else 0.0
    total = int(row.get("total") or 0)
    row["available_ratio"] = round(int(row.get("available") or 0) / total, 4) if total else 0.0
    return row


async def block_rates(conn: AsyncConnection, settings: Settings, *, window_seconds: int | None = None) -> list[dict]:
    """Per proxy with results in the alarm window (settings.alarm_window_seconds): proxy_id, host, port,
    status, results, blocked, block_rate (0..1); highest rate first. The caller applies a minimum sample."""
    now = settings.now()
    since = now - timedelta(seconds=window_seconds or settings.alarm_window_seconds)
    return await q.fetch_all(conn, "proxy_block_rates", {"since": since, "now": now})


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise invalid(f"status must be one of {', '.join(STATUSES)}.", {"status": status})


# ---------------------------------------------------------------- heartbeat and life cycle
async def heartbeat(conn: AsyncConnection, settings: Settings, proxy_id: int, ip: str, *,
                    trusted: bool, agent_token: str | None = None) -> dict:
    """A proxy agent's report of its exit IP (one SQL function under the proxy's row lock).

    trusted: the caller showed the fleet token or admin key; otherwise agent_token must match the
    proxy's own token (a proxy without one takes only trusted heartbeats)."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise invalid("ip must be an IPv4 or IPv6 address.", {"field": "ip"}) from None
    reply = await q.fetch_val(conn, "proxy_heartbeat", {
        "proxy_id": proxy_id, "ip": ip, "now": settings.now(), "history_max": settings.proxy_ip_history_max,
        "trusted": trusted, "token_hash": hash_key(agent_token) if agent_token else None})
    if reply.get("error") == "proxy_not_found":
        raise not_found("proxy", proxy_id)
    if reply.get("error") == "unauthorized":
        raise HubError(401, "unauthorized", "This proxy's agent token (or the fleet token) is required.")
    return reply


async def refresh_states(conn: AsyncConnection, settings: Settings) -> dict:
    """The every-minute transitions: cooldown over, heartbeat-managed proxies silent for
    settings.proxy_offline_after_seconds go offline (and back when heard from), status put right
    after max_uses changes; plus pruning of usage days and events older than proxy_history_days.
    Returns counts per transition."""
    now = settings.now()
    counts = await q.fetch_val(conn, "refresh_proxy_states",
                               {"now": now, "offline_after": settings.proxy_offline_after_seconds})
    keep_from = (now.astimezone(settings.tz).date() - timedelta(days=settings.proxy_history_days - 1))
    pruned = await q.fetch_one(conn, "prune_proxy_history", {"keep_from": keep_from.isoformat()})
    return {**counts, "pruned_usage_rows": pruned["usage_rows"], "pruned_events": pruned["events"]}


# ---------------------------------------------------------------- operator actions (audited)
async def _locked(conn: AsyncConnection, proxy_id: int) -> dict:
    row = await q.fetch_one(conn, "lock_proxy", {"proxy_id": proxy_id})
    if row is None:
        raise not_found("proxy", proxy_id)
    return row


async def reset_proxy(conn: AsyncConnection, settings: Settings, proxy_id: int, *, actor: str = "admin") -> dict:
    """A manual rotation: use_count and consecutive blocks to 0, cooldown lifted (disabled stays disabled)."""
    await q.set_actor(conn, actor)
    before = await _locked(conn, proxy_id)
    now = settings.now()
    await q.execute(conn, "reset_proxy", {"proxy_id": proxy_id, "now": now, "reason": "reset by operator"})
    if before["status"] in ("active", "disabled"):  # no status change, so the trigger logs nothing
        await q.execute(conn, "record_proxy_event", {"proxy_id": proxy_id, "status": before["status"],
                                                     "reason": "reset by operator", "now": now})
    return await get_proxy(conn, settings, proxy_id, now=now)


async def disable_proxy(conn: AsyncConnection, settings: Settings, proxy_id: int, *, reason: str | None = None,
                        actor: str = "admin") -> dict:
    await q.set_actor(conn, actor)
    await _locked(conn, proxy_id)
    now = settings.now()
    await q.execute(conn, "disable_proxy", {"proxy_id": proxy_id, "now": now,
                                            "reason": reason or "disabled by operator"})
    return await get_proxy(conn, settings, proxy_id, now=now)


async def enable_proxy(conn: AsyncConnection, settings: Settings, proxy_id: int, *, actor: str = "admin") -> dict:
    """disabled -> active (or exhausted when its budget is spent); a no-op for any other state."""
    await q.set_actor(conn, actor)
    await _locked(conn, proxy_id)
    now = settings.now()
    await q.execute(conn, "enable_proxy", {"proxy_id": proxy_id, "now": now, "reason": "enabled by operator"})
    return await get_proxy(conn, settings, proxy_id, now=now)


async def set_max_uses(conn: AsyncConnection, settings: Settings, proxy_id: int, max_uses: int, *,
                       actor: str = "admin") -> dict:
    """Change the use budget; an active or exhausted proxy moves to whichever the new budget implies."""
    if max_uses <= 0:
        raise invalid("max_uses must be positive.", {"field": "max_uses"})
    await q.set_actor(conn, actor)
    await _locked(conn, proxy_id)
    now = settings.now()
    await q.execute(conn, "set_proxy_max_uses", {"proxy_id": proxy_id, "now": now, "max_uses": max_uses})
    return await get_proxy(conn, settings, proxy_id, now=now)


async def issue_agent_token(conn: AsyncConnection, settings: Settings, proxy_id: int, *,
                            actor: str = "admin") -> dict:
    """A new per-proxy heartbeat token (shown once, stored hashed); marks the proxy heartbeat-managed."""
    await q.set_actor(conn, actor)
    await _locked(conn, proxy_id)
    token = new_agent_token()
    await q.execute(conn, "set_proxy_agent_token", {"proxy_id": proxy_id, "now": settings.now(),
                                                    "token_hash": hash_key(token)})
    return {"proxy_id": proxy_id, "agent_token": token}
