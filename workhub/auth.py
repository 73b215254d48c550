"""Keys and roles, shared by the API and the dashboard.

- admin: HUB_ADMIN_KEY (or the key generated under HUB_DATA_DIR on first run), compared in constant time.
- site: per-site keys, 256 random bits, stored as SHA-256 (a fast hash is right for random keys:
  there is nothing to brute-force), shown once at creation or rotation.
- fleet: HUB_FLEET_TOKEN, when set, guards the worker routes (the admin key is accepted too).
- agent: a proxy's own heartbeat token (``whpx_...``, stored hashed on the proxy), valid only for that
  proxy's heartbeat.
Key formats and hashing live in workhub.keys.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from dataclasses import dataclass

from cachetools import TTLCache
from fastapi import Path, Request

from workhub.db import queries as q
from workhub.errors import HubError
from workhub.keys import AGENT_TOKEN_PREFIX, SITE_KEY_PREFIX, hash_key
from workhub.web import client_ip


@dataclass(frozen=True)
class Principal:
    role: str  # "admin" | "site" | "fleet" | "agent"
    site_id: int | None = None
    name: str = ""
    proxy_id: int | None = None  # for an agent: the proxy its token belongs to

    @property
    def actor(self) -> str:
        """What the audit log records as changed_by (never the key itself)."""
        if self.role == "site":
            return f"site:{self.site_id}:{self.name}"[:100]
        if self.role == "agent":
            return f"agent:{self.proxy_id}"
        return self.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def bearer(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization", ""))


def bearer_token(header: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class FailedAuthLimiter:
    """Counts failed authentications per source IP over a sliding minute (per hub process).

    Memory is bounded by a TTL cache: an address is forgotten ``window`` seconds after its last failure,
    and past ``max_addresses`` the least recently failing addresses go first, so a spray of source
    addresses cannot wipe the counters of the others."""

    def __init__(self, limit: int, window: float = 60.0, max_addresses: int = 10_000):
        self.limit = limit
        self.window = window
        self._fails: TTLCache[str, deque] = TTLCache(maxsize=max_addresses, ttl=window, timer=time.monotonic)

    def _trim(self, ip: str, now: float) -> deque:
        fails = self._fails.get(ip)
        if fails is None:
            return deque()
        while fails and fails[0] < now - self.window:
            fails.popleft()
        return fails

    def check(self, ip: str) -> None:
        now = time.monotonic()
        fails = self._trim(ip, now)
        if len(fails) >= self.limit:
            retry = int(fails[0] + self.window - now) + 1
            raise HubError(429, "too_many_failed_authentications",
                           "Too many failed authentications from this address; wait and retry.",
                           {"retry_after_seconds": retry})

    def record_failure(self, ip: str) -> None:
        now = time.monotonic()
        fails = self._trim(ip, now)
        fails.append(now)
        self._fails[ip] = fails  # (re)sets the entry's expiry to a window after this failure


async def authenticate(request: Request, *, required: bool = True,
                       agent_for: int | None = None) -> Principal | None:
    """Resolve the bearer key to a principal; 401 for a missing or wrong key when required.

    ``agent_for``: a proxy id whose own agent token is accepted too (the heartbeat route).
    The result is kept on the request, so a router that authenticates early (to log the caller even
    when the body is invalid) does not look the key up twice."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await _resolve(request, required=required, agent_for=agent_for)
    if principal is not None:
        request.state.principal = principal
    return principal


async def _resolve(request: Request, *, required: bool, agent_for: int | None = None) -> Principal | None:
    state = request.app.state
    ip = client_ip(request)
    limiter: FailedAuthLimiter = state.auth_limiter
    token = bearer(request)
    if token is None:
        if not required:
            return None
        raise HubError(401, "unauthorized", "Send `Authorization: Bearer <key>`.")
    limiter.check(ip)
    if hmac.compare_digest(token.encode(), state.admin_key.encode()):
        return Principal("admin", name="admin")
    fleet = state.settings.fleet_token
    if fleet is not None and hmac.compare_digest(token.encode(), fleet.get_secret_value().encode()):
        return Principal("fleet", name="fleet")
    if token.startswith(SITE_KEY_PREFIX):
        async with state.db.connection() as conn:
            site = await q.fetch_one(conn, "site_by_key_hash", {"api_key_hash": hash_key(token)})
        if site is not None:
            if not site["is_active"]:
                raise HubError(403, "site_disabled", "This site is disabled.")
            return Principal("site", site_id=site["id"], name=site["name"])
    if agent_for is not None and token.startswith(AGENT_TOKEN_PREFIX):
        async with state.db.connection() as conn:
            stored = await q.fetch_val(conn, "proxy_agent_token_hash", {"proxy_id": agent_for})
        if stored is not None and hmac.compare_digest(stored.encode(), hash_key(token).encode()):
            return Principal("agent", name="agent", proxy_id=agent_for)
    limiter.record_failure(ip)
    raise HubError(401, "unauthorized", "The key is not valid.")


async def require_admin(request: Request) -> Principal:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise HubError(403, "forbidden", "This needs the admin key.")
    return principal


async def require_customer(request: Request) -> Principal:
    """A site key, or the admin acting for any site."""
    principal = await authenticate(request)
    if principal.role not in ("admin", "site"):
        raise HubError(403, "forbidden", "This needs a site key or the admin key.")
    return principal


async def require_fleet(request: Request) -> Principal | None:
    """Worker routes: open unless HUB_FLEET_TOKEN is set, then the fleet token (or admin key)."""
    if request.app.state.settings.fleet_token is None:
        return None
    principal = await authenticate(request)
    if principal.role not in ("fleet", "admin"):
        raise HubError(403, "forbidden", "Worker routes need the fleet token.")
    return principal


async def require_proxy_agent(request: Request, proxy_id: int = Path(ge=1, le=2_147_483_647)) -> Principal:
    """A proxy's heartbeat: always authenticated, by the fleet token (when set), the admin key, or the
    proxy's own agent token (another proxy's token is not valid here). With neither a fleet token nor
    an agent token configured, only the admin key works."""
    principal = await authenticate(request, agent_for=proxy_id)
    if principal.role not in ("admin", "fleet", "agent"):
        raise HubError(403, "forbidden", "Heartbeats need the proxy's agent token, the fleet token or the admin key.")
    return principal
