"""Customer API: work slots."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from workhub.api.common import error_responses
from workhub.api.deps import db_of
from workhub.auth import Principal, require_customer
from workhub.core import slots
from workhub.errors import invalid

router = APIRouter(prefix="/api/v1/slots", tags=["customer"])


class SlotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "keyword": "노트북", "code": "12345", "start_date": "2024-01-01", "end_date": "2024-01-31",
        "daily_work_count": 100, "cart_click_enabled": False, "block_mercury": False,
        "block_image_cdn": False, "block_img1a_cdn": False, "block_thumbnail_cdn": True,
        "external_ref": "order-1001"}})

    keyword: str = Field(min_length=1, max_length=500, pattern=r"\S")
    code: str = Field(min_length=1, max_length=200, pattern=r"\S")
    start_date: date
    end_date: date
    daily_work_count: int = Field(gt=0, le=1_000_000)
    cart_click_enabled: bool = False
    block_mercury: bool = False
    block_image_cdn: bool = False
    block_img1a_cdn: bool = False
    block_thumbnail_cdn: bool = False
    is_active: bool = True
    external_ref: str | None = Field(None, min_length=1, max_length=200)
    max_daily_attempts: int | None = Field(None, gt=0, le=10_000_000)
    pace: Literal["asap", "even"] = "asap"
    site_id: int | None = Field(None, description="Admin only: the site to create the slot for")

    @model_validator(mode="after")
    def _dates(self):
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class Slot(BaseModel):
    id: int
    keyword: str
    code: str
    start_date: date
    end_date: date
    daily_work_count: int
    cart_click_enabled: bool
    block_mercury: bool
    block_image_cdn: bool
    block_img1a_cdn: bool
    block_thumbnail_cdn: bool
    is_active: bool
    external_site_id: int | None
    external_ref: str | None
    max_daily_attempts: int | None
    pace: str
    created_at: datetime
    updated_at: datetime


@router.post("", status_code=201, response_model=Slot,
             responses={200: {"description": "Already created with this external_ref", "model": Slot},
                        **error_responses(401, 403, 422, 503)},
             summary="Register a work slot (idempotent on external_ref)")
async def create_slot(request: Request, response: Response, body: SlotCreate,
                      principal: Principal = Depends(require_customer)) -> dict:
    site_id = principal.site_id
    if principal.is_admin:
        site_id = body.site_id
    elif body.site_id not in (None, principal.site_id):
        raise invalid("A site key creates slots for its own site only.", {"field": "site_id"})
    fields = body.model_dump(exclude={"site_id"})
    slot, created = await db_of(request).run(slots.create_slot, fields, site_id=site_id, actor=principal.actor)
    if not created:
        response.status_code = 200
    return slot
