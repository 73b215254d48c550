"""Admin: customer sites (create, list, change, disable, rotate key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from workhub.api.common import ADMIN_ERRORS, Cursor32, Id32, error_responses
from workhub.auth import Principal, require_admin
from workhub.core import sites
from workhub.web import db_of

router = APIRouter(prefix="/api/admin/sites", tags=["admin"])

SiteId = Annotated[Id32, Path(description="The site id", examples=[1])]
SiteName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S", examples=["shop-a"])]
WebhookSecret = Annotated[str, Field(min_length=8, max_length=200,
                                     description="HMAC-SHA256 key for the signature header; generated when omitted")]


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "shop-a"}, {"name": "shop-b", "webhook_url": "https://shop-b.example/hooks/workhub"}]})
    name: SiteName
    webhook_url: HttpUrl | None = Field(None, description="Called (POST, JSON) when a slot completes its day")
    webhook_secret: WebhookSecret | None = None


class SitePatch(BaseModel):
    """Only the fields sent change. `webhook_url: null` removes the webhook."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"is_active": False}, {"webhook_url": "https://shop-a.example/hook"}]})
    name: SiteName = None
    is_active: bool = None
    webhook_url: HttpUrl | None = None
    webhook_secret: WebhookSecret = None


class Site(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1, "name": "shop-a", "api_key_prefix": "whs_AbCdEf", "is_active": True, "webhook_url": None,
        "has_webhook_secret": False, "active_slots": 3, "created_at": "2024-01-01T09:00:00+09:00",
        "updated_at": "2024-01-01T09:00:00+09:00"}]})
    id: int
    name: str
    api_key_prefix: str = Field(description="The key's first characters, to recognise it; never the key")
    is_active: bool
    webhook_url: str | None
    has_webhook_secret: bool
    active_slots: int = 0
    created_at: datetime
    updated_at: datetime


class SiteWithSecret(Site):
    webhook_secret: str | None = Field(None, description="Set only when the hub generated it: shown once")


class SiteCreated(SiteWithSecret):
    api_key: str = Field(description="The site's key: shown once, store it now", examples=["whs_..."])


class SiteList(BaseModel):
    items: list[Site]
    next_after_id: int | None


@router.post("", status_code=201, response_model=SiteCreated, responses={**ADMIN_ERRORS, **error_responses(409)},
             summary="Create a customer site; the reply holds its key, shown once",
             description="The key is stored only as a hash: it cannot be shown again, only rotated.")
async def create_site(request: Request, body: SiteCreate, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(
        sites.create_site, name=body.name.strip(),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        webhook_secret=body.webhook_secret, actor=principal.actor)


@router.get("", response_model=SiteList, responses=ADMIN_ERRORS, summary="List customer sites (never their keys)")
async def list_sites(request: Request, principal: Principal = Depends(require_admin),
                     is_active: bool | None = Query(None, description="Only active or only disabled sites"),
                     after_id: Annotated[Cursor32, Query(description="Return sites with a larger id")] = 0,
                     limit: int = Query(100, ge=1, le=500)) -> dict:
    items = await db_of(request).run(sites.list_sites, is_active=is_active, after_id=after_id, limit=limit)
    return {"items": items, "next_after_id": items[-1]["id"] if len(items) == limit else None}


@router.get("/{site_id}", response_model=Site, responses={**ADMIN_ERRORS, **error_responses(404)},
            summary="One customer site")
async def get_site(request: Request, site_id: SiteId, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(sites.get_site, site_id)


@router.patch("/{site_id}", response_model=SiteWithSecret, responses={**ADMIN_ERRORS, **error_responses(404, 409)},
              summary="Rename, enable or disable a site, or change its webhook",
              description="A disabled site's key gets 403 `site_disabled`; its slots stay as they are.")
async def update_site(request: Request, site_id: SiteId, body: SitePatch,
                      principal: Principal = Depends(require_admin)) -> dict:
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    if "webhook_url" in changes and changes["webhook_url"] is not None:
        changes["webhook_url"] = str(changes["webhook_url"])
    return await db_of(request).run(sites.update_site, site_id, actor=principal.actor, **changes)


@router.post("/{site_id}/disable", response_model=SiteWithSecret, responses={**ADMIN_ERRORS, **error_responses(404)},
             summary="Disable a site (its key stops working)")
async def disable_site(request: Request, site_id: SiteId, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(sites.update_site, site_id, actor=principal.actor, is_active=False)


@router.post("/{site_id}/enable", response_model=SiteWithSecret, responses={**ADMIN_ERRORS, **error_responses(404)},
             summary="Enable a disabled site again")
async def enable_site(request: Request, site_id: SiteId, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(sites.update_site, site_id, actor=principal.actor, is_active=True)


@router.post("/{site_id}/rotate-key", response_model=SiteCreated, responses={**ADMIN_ERRORS, **error_responses(404)},
             summary="Issue a new key for a site; the old key stops working at once",
             description="The reply holds the new key, shown once.")
async def rotate_key(request: Request, site_id: SiteId, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(sites.rotate_key, site_id, actor=principal.actor)
