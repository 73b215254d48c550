"""Request-scoped helpers shared by auth, the API routers and the dashboard: the settings and database
of the app serving the request, and the caller's address.

A low module (config and db only), so that auth (below api) and the dashboard (beside api) can use it."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from fastapi import Request

from workhub.config import Settings
from workhub.db.pool import Database


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def db_of(request: Request) -> Database:
    return request.app.state.db


def read_db_of(request: Request) -> Database:
    """For pages and reports that only read: the replica when HUB_READ_DATABASE_URL is set, else db_of.
    Read-only sessions there: a route that writes must use db_of."""
    return request.app.state.read_db


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]):
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def client_ip(request: Request) -> str:
    """The caller's address: the socket peer, or X-Forwarded-For only when the peer is a trusted proxy.

    The forwarded chain is read from the right, skipping trusted proxies, so a client cannot forge
    its address by sending its own X-Forwarded-For."""
    return scope_client_ip(request.scope, request.app.state.settings)


def scope_client_ip(scope: dict, settings: Settings) -> str:
    """client_ip from the raw ASGI scope (for the worker fast path, which has no Request)."""
    client = scope.get("client")
    peer = client[0] if client else "127.0.0.1"
    if not settings.trusted_proxies:  # the common case: no proxy in front, nothing else to look at
        return peer
    trusted = _networks(tuple(settings.trusted_proxies))
    if not trusted or not _in(peer, trusted):
        return peer
    forwarded = ",".join(value.decode("latin-1") for name, value in scope.get("headers", ())
                         if name == b"x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
