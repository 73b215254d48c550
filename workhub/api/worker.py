"""The worker protocol (SPEC section 3): allocate, submit, extend, release."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from workhub.api.common import error_responses
from workhub.api.metrics import note_allocate, note_submit
from workhub.auth import require_fleet
from workhub.config import Settings
from workhub.core import allocation, results
from workhub.db.pool import Database
from workhub.web import client_ip, db_of, settings_of

router = APIRouter(prefix="/api", tags=["worker"], dependencies=[Depends(require_fleet)])

ERRORS = error_responses(401, 404, 409, 422, 503, descriptions={
    401: "Fleet token required", 404: "Unknown allocation key", 409: "Lease state conflict"})

Int32 = Annotated[int, Field(ge=0, le=2_147_483_647)]


# ---------------------------------------------------------------- models
class AllocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "example": {"instance_number": 1, "user_folder_number": 3, "count": 1}})

    instance_number: Int32 | None = Field(None, description="Worker instance on the client machine")
    user_folder_number: Int32 | None = Field(None, description="Browser profile folder used by the instance")
    count: int = Field(1, ge=1, le=100, description="How many packages to lease (1..100)")


class PackageSettings(BaseModel):
    cart_click_enabled: bool
    block_mercury: bool
    block_image_cdn: bool
    block_img1a_cdn: bool
    block_thumbnail_cdn: bool


class AppliedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cart_click_enabled: bool | None = None
    block_mercury: bool | None = None
    block_image_cdn: bool | None = None
    block_img1a_cdn: bool | None = None
    block_thumbnail_cdn: bool | None = None


class SlotRef(BaseModel):
    id: int
    keyword: str
    code: str


class ProxyRef(BaseModel):
    id: int
    protocol: str
    host: str
    port: int
    username: str | None
    password: str | None
    url: str


class Package(BaseModel):
    allocation_key: UUID
    expires_at: str
    work_date: str
    slot: SlotRef
    settings: PackageSettings
    proxy: ProxyRef


class AllocateReply(BaseModel):
    status: Literal["allocated", "no_work"]
    reason: Literal["no_active_slots", "daily_quota_reached", "no_proxy_available",
                    "attempt_limit_reached"] | None = None
    retry_after_seconds: int | None = None
    allocations: list[Package]


class Product(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=1000)
    price: float | None = Field(None, ge=0, le=1e12)
    rank: int | None = Field(None, ge=0, le=1_000_000)
    page: int | None = Field(None, ge=0, le=100_000)


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "allocation_key": "3f1c9a4e-8a43-4f51-9d65-2f7f4cf3b2a1", "status": "success",
        "execution_time_ms": 5400, "rank": 7, "page": 1,
        "products": [{"code": "12345", "name": "Laptop 15", "price": 899000, "rank": 7, "page": 1}]}})

    allocation_key: UUID
    status: Literal["success", "failed", "blocked"]
    execution_time_ms: int = Field(ge=0, le=86_400_000)
    rank: int | None = Field(None, ge=0, le=1_000_000)
    page: int | None = Field(None, ge=0, le=100_000)
    block_type: str | None = Field(None, max_length=100)
    error_message: str | None = Field(None, max_length=4000)
    applied_settings: AppliedSettings | None = None
    products: list[Product] | None = Field(None, max_length=500)
    result_data: dict[str, Any] | None = None

    def ledger_args(self) -> dict:
        data = self.model_dump(mode="json", exclude_none=True)
        data["allocation_key"] = self.allocation_key
        if self.applied_settings is not None:
            data["applied_settings"] = self.applied_settings.model_dump(exclude_none=True)
        return data


class SubmitReply(BaseModel):
    status: Literal["accepted", "duplicate", "late"]
    result_id: int
    counted: bool


class SubmitBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: list[SubmitRequest] = Field(min_length=1, max_length=100)


class ItemError(BaseModel):
    code: str
    message: str
    details: Any = None


class SubmitItemOutcome(BaseModel):
    allocation_key: UUID
    status: Literal["accepted", "duplicate", "late", "error"]
    result_id: int | None = None
    counted: bool | None = None
    error: ItemError | None = None


class SubmitBatchReply(BaseModel):
    results: list[SubmitItemOutcome]


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: int = Field(300, ge=1, le=86_400, description="New lease length from now (capped)")


class ExtendReply(BaseModel):
    allocation_key: UUID
    expires_at: str
    capped: bool


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500)


class ReleaseReply(BaseModel):
    allocation_key: UUID
    status: Literal["released"]
    released_at: str


# ---------------------------------------------------------------- the two hot calls
# Shared by the routes below and by the fast path (api/fastpath.py), which serves well-formed requests
# of these two routes without FastAPI's routing and dependency layers.
async def allocate(db: Database, settings: Settings, scope: dict, ip: str, body: AllocateRequest) -> str:
    reply = await db.run(allocation.allocate_work, settings, single_statement=True, client_ip=ip,
                         instance_number=body.instance_number, user_folder_number=body.user_folder_number,
                         count=body.count)
    note_allocate(scope, reply)
    return reply  # the ledger function already built the JSON: sent as is


async def submit(db: Database, settings: Settings, scope: dict, ip: str, body: SubmitRequest) -> bytes:
    reply = await db.run(results.submit_result, settings, single_statement=True, client_ip=ip,
                         **body.ledger_args())
    note_submit(scope, reply["status"])
    # the ledger's reply has exactly SubmitReply's fields (a duplicate adds "late", which is not part of
    # the reply): serialised here in SubmitReply's field order, the bytes FastAPI's response_model
    # validation and serialisation would produce, at a fraction of the cost
    return orjson.dumps({"status": reply["status"], "result_id": reply["result_id"], "counted": reply["counted"]})


# ---------------------------------------------------------------- routes
async def _allocate(request: Request, body: AllocateRequest) -> Response:
    reply = await allocate(db_of(request), settings_of(request), request.scope, client_ip(request), body)
    return Response(reply, media_type="application/json")


@router.get("/allocate-work", response_model=AllocateReply, responses=ERRORS,
            summary="Lease work packages (keyword + code + proxy + settings)")
async def allocate_get(request: Request, params: Annotated[AllocateRequest, Query()]) -> Response:
    return await _allocate(request, params)


@router.post("/allocate-work", response_model=AllocateReply, responses=ERRORS,
             summary="Lease work packages (JSON body)")
async def allocate_post(request: Request, body: AllocateRequest | None = None) -> Response:
    return await _allocate(request, body or AllocateRequest())


@router.post("/submit-result", response_model=SubmitReply, responses=ERRORS,
             summary="Submit the result of a leased package (idempotent)")
async def submit_result(request: Request, body: SubmitRequest) -> Response:
    reply = await submit(db_of(request), settings_of(request), request.scope, client_ip(request), body)
    return Response(reply, media_type="application/json")


@router.post("/submit-results", response_model=SubmitBatchReply, responses=ERRORS,
             summary="Submit up to 100 results; each gets its own outcome")
async def submit_results(request: Request, body: SubmitBatchRequest) -> dict:
    items = [item.model_dump(mode="json", exclude_none=True) for item in body.results]
    outcomes = await db_of(request).run(results.submit_results, settings_of(request), items,
                                        client_ip=client_ip(request))
    note_submit(request.scope, *(outcome["status"] for outcome in outcomes))
    return {"results": outcomes}


@router.post("/allocations/{allocation_key}/extend", response_model=ExtendReply, responses=ERRORS,
             summary="Extend a lease (capped at HUB_LEASE_MAX_SECONDS from allocation)")
async def extend(request: Request, allocation_key: UUID, body: ExtendRequest | None = None) -> dict:
    body = body or ExtendRequest()
    return await db_of(request).run(allocation.extend_lease, settings_of(request), allocation_key,
                                    body.seconds, client_ip(request))


@router.post("/allocations/{allocation_key}/release", response_model=ReleaseReply, responses=ERRORS,
             summary="Give a lease back; its quota returns to the slot at once")
async def release(request: Request, allocation_key: UUID, body: ReleaseRequest | None = None) -> dict:
    body = body or ReleaseRequest()
    return await db_of(request).run(allocation.release_lease, settings_of(request), allocation_key,
                                    body.reason, client_ip(request))
