"""Keys and roles, shared by the API and the dashboard.

- admin: HUB_ADMIN_KEY (or the key generated under HUB_DATA_DIR on first run), compared in constant time.
- site: per-site keys, 256 random bits, stored as SHA-256 (a fast hash is right for random keys:
  there is nothing to brute-force), shown once at creation or rotation.
- fleet: HUB_FLEET_TOKEN, when set, guards the worker routes (the admin key is accepted too).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from fastapi import Request

from workhub.db import queries as q
from workhub.errors import HubError

SITE_KEY_PREFIX = "whs_"


@dataclass(frozen=True)
class Principal:
    role: str  # "admin" | "site" | "fleet"
    site_id: int | None = None
    name: str = ""

    @property
    def actor(self) -> str:
        """What the audit log records as changed_by (never the key itself)."""
        if self.role == "site":
            return f"site:{self.site_id}:{self.name}"[:100]
        return self.role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_site_key() -> str:
    return SITE_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:10]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class FailedAuthLimiter:
    """Counts failed authentications per source IP over a sliding minute (per hub process)."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._fails: dict[str, deque] = defaultdict(deque)

    def _trim(self, ip: str, now: float) -> deque:
        fails = self._fails[ip]
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
        self._trim(ip, time.monotonic()).append(time.monotonic())
        if len(self._fails) > 10_000:  # bound memory under a spray of addresses
            self._fails.clear()


async def authenticate(request: Request, *, required: bool = True) -> Principal | None:
    """Resolve the bearer key to a principal; 401 for a missing or wrong key when required.

    The result is kept on the request, so a router that authenticates early (to log the caller even
    when the body is invalid) does not look the key up twice."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await _resolve(request, required=required)
    if principal is not None:
        request.state.principal = principal
    return principal


async def _resolve(request: Request, *, required: bool) -> Principal | None:
    from workhub.api.deps import client_ip

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
