"""Admin: the proxy pool."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from workhub.api.common import ADMIN_ERRORS, error_responses
from workhub.api.deps import db_of, settings_of
from workhub.auth import Principal, require_admin
from workhub.core import proxies

router = APIRouter(prefix="/api/admin/proxies", tags=["admin"])


class ProxyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_\[\]-]+$")
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "https", "socks4", "socks5"] = "http"
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=200)
    max_uses: int | None = Field(None, gt=0, le=1_000_000)


class ProxyImport(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"proxies": [
        {"host": "127.0.0.1", "port": 3128, "protocol": "http", "username": "u1", "password": "p1",
         "max_uses": 20}]}})
    proxies: list[ProxyIn] = Field(min_length=1, max_length=10_000)


class ProxyImported(BaseModel):
    created: int
    ids: list[int]


@router.post("", status_code=201, response_model=ProxyImported,
             responses={**ADMIN_ERRORS, **error_responses(409)},
             summary="Bulk-import proxies (all or nothing)")
async def import_proxies(request: Request, body: ProxyImport,
                         principal: Principal = Depends(require_admin)) -> dict:
    ids = await db_of(request).run(proxies.import_proxies, [p.model_dump() for p in body.proxies],
                                   default_max_uses=settings_of(request).proxy_default_max_uses,
                                   actor=principal.actor)
    return {"created": len(ids), "ids": ids}
