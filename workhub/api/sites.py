"""Admin: customer sites."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from workhub.api.common import ADMIN_ERRORS, error_responses
from workhub.api.deps import db_of
from workhub.auth import Principal, require_admin
from workhub.core import sites

router = APIRouter(prefix="/api/admin/sites", tags=["admin"])


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "shop-a"}})
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    webhook_url: HttpUrl | None = None
    webhook_secret: str | None = Field(None, min_length=8, max_length=200)


class SiteCreated(BaseModel):
    id: int
    name: str
    api_key: str = Field(description="Shown once; store it now")
    api_key_prefix: str
    is_active: bool
    webhook_url: str | None
    created_at: datetime


@router.post("", status_code=201, response_model=SiteCreated, responses={**ADMIN_ERRORS, **error_responses(409)},
             summary="Create a customer site; the reply holds its key, shown once")
async def create_site(request: Request, body: SiteCreate, principal: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(
        sites.create_site, name=body.name.strip(),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        webhook_secret=body.webhook_secret, actor=principal.actor)
