"""The proxy pool: admin routes (/api/admin/proxies...) and the agent heartbeat (/api/proxies/{id}/heartbeat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress

from workhub.api.common import ADMIN_ERRORS, error_responses
from workhub.auth import Principal, bearer, require_admin, require_proxy_agent
from workhub.core import proxies
from workhub.web import db_of, settings_of

admin_router = APIRouter(prefix="/api/admin/proxies", tags=["admin"])
agent_router = APIRouter(prefix="/api/proxies", tags=["worker"])
routers = [admin_router, agent_router]

Status = Literal["active", "exhausted", "cooldown", "offline", "disabled"]


# ---------------------------------------------------------------- models
class ProxyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_\[\]-]+$")
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "https", "socks4", "socks5"] = "http"
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=200)
    max_uses: int | None = Field(None, gt=0, le=1_000_000)
    heartbeat_managed: bool = Field(False, description="An agent sends heartbeats; silence means offline")


class ProxyImport(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"proxies": [
        {"host": "127.0.0.1", "port": 3128, "protocol": "http", "username": "u1", "password": "p1",
         "max_uses": 20}]}})
    proxies: list[ProxyIn] = Field(min_length=1, max_length=10_000)


class ProxyImported(BaseModel):
    created: int
    ids: list[int]


class ProxyOut(BaseModel):
    """A proxy as listed: never the password or the agent token."""
    id: int
    host: str
    port: int
    protocol: str
    username: str | None
    has_password: bool
    has_agent_token: bool
    current_ip: str | None
    current_ip_since: datetime | None
    use_count: int
    max_uses: int
    uses_left: int
    total_uses: int
    status: Status
    status_reason: str | None
    status_changed_at: datetime
    cooldown_until: datetime | None
    consecutive_blocks: int
    heartbeat_managed: bool
    last_heartbeat: datetime | None
    last_used_at: datetime | None
    success_count: int
    fail_count: int
    block_count: int
    results_7d: int
    success_7d: int
    blocked_7d: int
    health: float | None = Field(description="successes / results over the last 7 days")
    block_rate: float | None = Field(description="blocked / results over the last 7 days")
    created_at: datetime
    updated_at: datetime


class ProxyEvent(BaseModel):
    id: int
    proxy_id: int
    from_status: str
    to_status: str
    reason: str | None
    changed_by: str
    changed_at: datetime


class ProxyDetail(ProxyOut):
    ip_history: list[dict[str, Any]]
    usage_days: dict[str, dict[str, int]]
    events: list[ProxyEvent]


class ProxyPage(BaseModel):
    items: list[ProxyOut]
    total: int
    limit: int
    offset: int


class DisableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=200)


class MaxUsesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_uses: int = Field(gt=0, le=1_000_000)


class AgentToken(BaseModel):
    proxy_id: int
    agent_token: str = Field(description="Shown once; the hub keeps only its hash")


class PoolFigures(BaseModel):
    total: int
    available: int
    active: int
    exhausted: int
    cooldown: int
    offline: int
    disabled: int
    uses_left: int
    utilisation: float = Field(description="uses spent / use budget over proxies not disabled (0..1)")


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"ip": "203.0.113.7"}})
    ip: IPvAnyAddress = Field(description="The proxy's current exit IP")


class HeartbeatOut(BaseModel):
    proxy_id: int
    status: Status
    rotate: bool = Field(description="true while the proxy is exhausted: change the exit IP")
    rotated: bool = Field(description="this heartbeat brought a new IP and reset the budget")
    ip: str
    use_count: int
    max_uses: int
    uses_left: int
    cooldown_until: datetime | None
    last_heartbeat: datetime


# ---------------------------------------------------------------- admin
def _id_path():
    return Path(ge=1, le=2_147_483_647)


@admin_router.post("", status_code=201, response_model=ProxyImported,
                   responses={**ADMIN_ERRORS, **error_responses(409)},
                   summary="Bulk-import proxies (all or nothing)")
async def import_proxies(request: Request, body: ProxyImport,
                         principal: Principal = Depends(require_admin)) -> dict:
    ids = await db_of(request).run(proxies.import_proxies, [p.model_dump() for p in body.proxies],
                                   default_max_uses=settings_of(request).proxy_default_max_uses,
                                   actor=principal.actor)
    return {"created": len(ids), "ids": ids}


@admin_router.get("", response_model=ProxyPage, responses=ADMIN_ERRORS,
                  summary="List proxies (no passwords), optionally by status")
async def list_proxies(request: Request, status: Status | None = None,
                       limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000),
                       _: Principal = Depends(require_admin)) -> dict:
    settings = settings_of(request)
    now = settings.now()

    async def page(conn):
        return (await proxies.list_proxies(conn, settings, status=status, limit=limit, offset=offset, now=now),
                await proxies.count_proxies(conn, status=status))

    items, total = await db_of(request).run(page)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@admin_router.get("/pool", response_model=PoolFigures, responses=ADMIN_ERRORS, summary="Pool figures")
async def pool(request: Request, _: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.pool_figures, settings_of(request))


@admin_router.get("/{proxy_id}", response_model=ProxyDetail,
                  responses={**ADMIN_ERRORS, **error_responses(404)},
                  summary="One proxy with IP history, daily usage and recent transitions")
async def get_proxy(request: Request, proxy_id: int = _id_path(), _: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.get_proxy, settings_of(request), proxy_id)


@admin_router.post("/{proxy_id}/reset", response_model=ProxyDetail,
                   responses={**ADMIN_ERRORS, **error_responses(404)},
                   summary="Manual rotation: fresh use budget, cooldown lifted")
async def reset_proxy(request: Request, proxy_id: int = _id_path(),
                      principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.reset_proxy, settings_of(request), proxy_id, actor=principal.actor)


@admin_router.post("/{proxy_id}/disable", response_model=ProxyDetail,
                   responses={**ADMIN_ERRORS, **error_responses(404)}, summary="Take a proxy out of the pool")
async def disable_proxy(request: Request, body: DisableIn | None = None, proxy_id: int = _id_path(),
                        principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.disable_proxy, settings_of(request), proxy_id,
                                    reason=body.reason if body else None, actor=principal.actor)


@admin_router.post("/{proxy_id}/enable", response_model=ProxyDetail,
                   responses={**ADMIN_ERRORS, **error_responses(404)}, summary="Put a disabled proxy back")
async def enable_proxy(request: Request, proxy_id: int = _id_path(),
                       principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.enable_proxy, settings_of(request), proxy_id, actor=principal.actor)


@admin_router.patch("/{proxy_id}", response_model=ProxyDetail,
                    responses={**ADMIN_ERRORS, **error_responses(404)}, summary="Change max_uses")
async def patch_proxy(request: Request, body: MaxUsesIn, proxy_id: int = _id_path(),
                      principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.set_max_uses, settings_of(request), proxy_id, body.max_uses,
                                    actor=principal.actor)


@admin_router.post("/{proxy_id}/agent-token", response_model=AgentToken,
                   responses={**ADMIN_ERRORS, **error_responses(404)},
                   summary="Issue a per-proxy heartbeat token (shown once)")
async def agent_token(request: Request, proxy_id: int = _id_path(),
                      principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(proxies.issue_agent_token, settings_of(request), proxy_id,
                                    actor=principal.actor)


# ---------------------------------------------------------------- agent
@agent_router.post("/{proxy_id}/heartbeat", response_model=HeartbeatOut,
                   responses=error_responses(401, 403, 404, 422, 429, 503),
                   summary="Proxy agent heartbeat: report the current exit IP")
async def heartbeat(request: Request, body: HeartbeatIn, proxy_id: int = _id_path(),
                    principal: Principal = Depends(require_proxy_agent)) -> dict:
    """Authorised by the proxy's own agent token, the fleet token (when set) or the admin key; never
    without a key."""
    trusted = principal.role != "agent"  # the agent token is checked again under the proxy's row lock
    return await db_of(request).run(proxies.heartbeat, settings_of(request), proxy_id, str(body.ip),
                                    trusted=trusted, agent_token=None if trusted else bearer(request))
