"""Customer API: work slots (site key, or the admin key acting for any site).

Every request is recorded in v1_hub_external_triggers by the route class below, after its reply
status is known, errors included.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Annotated, Any, Literal

import orjson
import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from workhub.api.common import INT32_MAX, Cursor32, Id32, error_responses
from workhub.auth import Principal, require_customer
from workhub.core import slots, triggers
from workhub.db.pool import is_unavailable
from workhub.errors import HubError, invalid
from workhub.web import client_ip, db_of, settings_of

log = logging.getLogger(__name__)

SlotId = Annotated[Id32, Path(description="The slot id", examples=[42])]


# ---------------------------------------------------------------- external-trigger logging
def _status_of(exc: BaseException) -> int:
    """The status the app's exception handlers will give this error."""
    if isinstance(exc, HubError):
        return exc.status
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return 409
    if isinstance(exc, (psycopg.DataError, psycopg.errors.IntegrityError)):
        return 422
    if is_unavailable(exc):
        return 503
    return 500


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"unparsed": raw[:2000].decode("utf-8", "replace")}


class TriggerLoggedRoute(APIRoute):
    """Authenticates before the body is parsed (so 401/403 come first and the caller is known even for
    a 422), runs the endpoint, then records the request in its own short transaction."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        trigger_type = self.name

        async def logged(request: Request) -> Response:
            principal: Principal | None = None
            status, response, body = 500, None, None
            try:
                principal = await require_customer(request)
                if request.method in ("POST", "PUT", "PATCH"):
                    body = await request.body()  # cached: the endpoint reads the same bytes
                response = await handler(request)
                status = response.status_code
                return response
            except BaseException as exc:
                status = _status_of(exc)
                raise
            finally:
                if principal is not None:
                    await _record(request, principal, trigger_type, status, body, response)

        return logged


async def _record(request: Request, principal: Principal, trigger_type: str, status: int, body: bytes | None,
                  response: Response | None) -> None:
    try:
        reply = _json(getattr(response, "body", None)) if response is not None and status < 300 else None
        reply_slot = (reply.get("slot") or reply) if isinstance(reply, dict) else {}
        slot_id = request.path_params.get("slot_id") or (reply_slot.get("id") if isinstance(reply_slot, dict) else None)
        try:
            slot_id = int(slot_id) if slot_id is not None and 0 < int(slot_id) <= INT32_MAX else None
        except (TypeError, ValueError):
            slot_id = None
        site_id = principal.site_id
        if site_id is None and isinstance(reply_slot, dict):
            site_id = reply_slot.get("external_site_id")
        payload = {"method": request.method, "path": request.url.path, "query": dict(request.query_params),
                   "body": _json(body), "actor": principal.actor}
        settings = settings_of(request)
        async with db_of(request).transaction() as conn:
            await triggers.record_trigger(conn, site_id=site_id, trigger_type=trigger_type, payload=payload,
                                          response_status=status, slot_id=slot_id, source_ip=client_ip(request),
                                          created_at=settings.now())
    except Exception:  # the reply stands even if its log line cannot be written
        log.warning("could not record the external trigger %s", trigger_type, exc_info=True)


router = APIRouter(prefix="/api/v1/slots", tags=["customer"], route_class=TriggerLoggedRoute)
ERRORS = error_responses(401, 403, 413, 422, 429, 503)


# ---------------------------------------------------------------- models
Keyword = Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S", description="Search keyword",
                               examples=["노트북"])]
Code = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S", description="Product code",
                            examples=["12345"])]
DailyCount = Annotated[int, Field(gt=0, le=1_000_000, description="Successful checks wanted per day")]
ExternalRef = Annotated[str, Field(min_length=1, max_length=200,
                                   description="Your own id for the slot; creating it again returns the same slot")]
MaxAttempts = Annotated[int, Field(gt=0, le=10_000_000,
                                   description="Cap on leases per day (default 3 x daily_work_count)")]


class SlotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "keyword": "노트북", "code": "12345", "start_date": "2024-01-01", "end_date": "2024-01-31",
        "daily_work_count": 100, "cart_click_enabled": False, "block_mercury": False,
        "block_image_cdn": False, "block_img1a_cdn": False, "block_thumbnail_cdn": True,
        "external_ref": "order-1001"}]})

    keyword: Keyword
    code: Code
    start_date: date = Field(description="First work date (hub time zone)")
    end_date: date = Field(description="Last work date, inclusive; not before start_date")
    daily_work_count: DailyCount
    cart_click_enabled: bool = False
    block_mercury: bool = False
    block_image_cdn: bool = False
    block_img1a_cdn: bool = False
    block_thumbnail_cdn: bool = False
    is_active: bool = True
    external_ref: ExternalRef | None = None
    max_daily_attempts: MaxAttempts | None = None
    pace: Literal["asap", "even"] = Field("asap", description="`even` spreads the day's target over the day")
    site_id: int | None = Field(None, ge=1, le=INT32_MAX,
                                description="Admin only: the site to create the slot for")

    @model_validator(mode="after")
    def _dates(self):
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class SlotPatch(BaseModel):
    """Only the fields sent are changed; a new daily_work_count is today's target at once."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"daily_work_count": 150}, {"end_date": "2024-02-29", "block_image_cdn": True}, {"is_active": False}]})

    keyword: Keyword = None
    code: Code = None
    start_date: date = None
    end_date: date = None
    daily_work_count: DailyCount = None
    cart_click_enabled: bool = None
    block_mercury: bool = None
    block_image_cdn: bool = None
    block_img1a_cdn: bool = None
    block_thumbnail_cdn: bool = None
    is_active: bool = None
    external_ref: ExternalRef | None = None
    max_daily_attempts: MaxAttempts | None = None
    pace: Literal["asap", "even"] = None

    @model_validator(mode="after")
    def _dates(self):
        if self.start_date is not None and self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class DayProgress(BaseModel):
    work_date: date
    target_count: int
    allocated_count: int = 0
    in_flight_count: int
    success_count: int
    failed_count: int
    blocked_count: int
    expired_count: int = 0
    released_count: int = 0
    remaining_count: int
    completion_rate: float = Field(description="Percent of the day's target done")
    completed_at: datetime | None = None


class Slot(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 42, "keyword": "노트북", "code": "12345", "start_date": "2024-01-01", "end_date": "2024-01-31",
        "daily_work_count": 100, "cart_click_enabled": False, "block_mercury": False, "block_image_cdn": False,
        "block_img1a_cdn": False, "block_thumbnail_cdn": True, "is_active": True, "external_site_id": 1,
        "external_ref": "order-1001", "max_daily_attempts": None, "pace": "asap",
        "created_at": "2024-01-01T09:00:00+09:00", "updated_at": "2024-01-01T09:00:00+09:00", "today": None}]})

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
    today: DayProgress | None = Field(None, description="Today's ledger row, when the slot works today")


class SlotList(BaseModel):
    items: list[Slot]
    next_after_id: int | None = Field(description="Pass as after_id for the next page; null on the last page")


class DayLedger(DayProgress):
    first_allocated_at: datetime | None = None
    last_result_at: datetime | None = None
    archived: bool = Field(False, description="Read from the archive (older than the live retention)")


class RankDay(BaseModel):
    work_date: date
    checks: int = Field(description="Results reported that day")
    ranked: int | None = Field(None, description="Results that found the product")
    best_rank: int | None
    avg_rank: float | None
    last_rank: int | None = None
    source: Literal["results", "rollup"]


class SlotProgress(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    slot: Slot
    from_: date = Field(alias="from")
    to: date
    days: list[DayLedger]
    rank_history: list[RankDay]
    totals: dict[str, int]


# ---------------------------------------------------------------- routes
def _site_scope(principal: Principal, site_id: int | None = None) -> int | None:
    """A site sees its own slots; the admin sees all (or one site's, when it asks)."""
    return site_id if principal.is_admin else principal.site_id


@router.post("", status_code=201, response_model=Slot, name="slot.create",
             responses={200: {"description": "Already created with this external_ref", "model": Slot},
                        **ERRORS},
             summary="Register a work slot (idempotent on external_ref)",
             description="Creates a slot for the calling site. With `external_ref`, creating it again returns the "
                         "existing slot with 200 instead of a second slot. The admin key may pass `site_id`.")
async def create_slot(request: Request, response: Response, body: SlotCreate,
                      principal: Principal = Depends(require_customer)) -> dict:
    site_id = principal.site_id
    if principal.is_admin:
        site_id = body.site_id
    elif body.site_id not in (None, principal.site_id):
        raise invalid("A site key creates slots for its own site only.",
                      [{"field": "site_id", "location": "body", "message": "must be your own site or omitted",
                        "type": "value_error"}])
    fields = body.model_dump(exclude={"site_id"})
    slot, created = await db_of(request).run(slots.create_slot, fields, site_id=site_id, actor=principal.actor)
    if not created:
        response.status_code = 200
    return slot


@router.get("", response_model=SlotList, name="slot.list", responses=ERRORS,
            summary="List your slots, with today's progress",
            description="Keyset pagination: pass the reply's `next_after_id` as `after_id`.")
async def list_slots(
        request: Request, principal: Principal = Depends(require_customer),
        is_active: bool | None = Query(None, description="Only active (true) or inactive (false) slots"),
        keyword: str | None = Query(None, max_length=500, description="Keyword contains (case-insensitive)"),
        code: str | None = Query(None, max_length=200, description="Exact product code"),
        external_ref: str | None = Query(None, max_length=200, description="Exact external_ref"),
        active_on: date | None = Query(None, description="Slots whose date range covers this date"),
        site_id: Annotated[Id32 | None, Query(description="Admin only: one site's slots")] = None,
        after_id: Annotated[Cursor32, Query(description="Return slots with a larger id")] = 0,
        limit: int = Query(100, ge=1, le=500, description="Page size")) -> dict:
    settings = settings_of(request)
    items = await db_of(request).run(
        slots.list_slots, site_id=_site_scope(principal, site_id), work_date=settings.work_date(),
        is_active=is_active, keyword=keyword, code=code, external_ref=external_ref, active_on=active_on,
        after_id=after_id, limit=limit)
    return {"items": items, "next_after_id": items[-1]["id"] if len(items) == limit else None}


@router.get("/{slot_id}", response_model=Slot, name="slot.get", responses={**ERRORS, **error_responses(404)},
            summary="One slot, with today's progress")
async def get_slot(request: Request, slot_id: SlotId, principal: Principal = Depends(require_customer)) -> dict:
    return await db_of(request).run(slots.get_slot, slot_id, site_id=_site_scope(principal),
                                    work_date=settings_of(request).work_date())


@router.patch("/{slot_id}", response_model=Slot, name="slot.update",
              responses={**ERRORS, **error_responses(404, 409)},
              summary="Change a slot's settings, dates, daily count or active flag",
              description="Only the fields sent change. A new `daily_work_count` is today's target at once "
                          "(never below what is already done or in flight).")
async def update_slot(request: Request, slot_id: SlotId, body: SlotPatch,
                      principal: Principal = Depends(require_customer)) -> dict:
    changes = body.model_dump(exclude_unset=True)
    return await db_of(request).run(slots.update_slot, slot_id, changes, site_id=_site_scope(principal),
                                    actor=principal.actor, work_date=settings_of(request).work_date())


@router.delete("/{slot_id}", response_model=Slot, name="slot.delete", responses={**ERRORS, **error_responses(404)},
               summary="Deactivate a slot (its history is kept)",
               description="The slot stops being handed out from now on; its ledger, results and audit trail stay.")
async def delete_slot(request: Request, slot_id: SlotId, principal: Principal = Depends(require_customer)) -> dict:
    return await db_of(request).run(slots.deactivate_slot, slot_id, site_id=_site_scope(principal),
                                    actor=principal.actor, work_date=settings_of(request).work_date())


@router.get("/{slot_id}/progress", response_model=SlotProgress, response_model_by_alias=True, name="slot.progress",
            responses={**ERRORS, **error_responses(404)},
            summary="Daily ledger and rank history over a date range",
            description="Defaults to the 7 days ending today (hub time zone); at most 400 days per request.")
async def slot_progress(
        request: Request, slot_id: SlotId, principal: Principal = Depends(require_customer),
        date_from: date | None = Query(None, alias="from", description="First day (default: to - 6 days)"),
        date_to: date | None = Query(None, alias="to", description="Last day (default: today)")) -> dict:
    return await db_of(request).run(slots.slot_progress, settings_of(request), slot_id,
                                    site_id=_site_scope(principal), date_from=date_from, date_to=date_to)
