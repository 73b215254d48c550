"""Admin: client machines, the audit trail, the external-trigger log and webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from workhub.api.common import ADMIN_ERRORS, Cursor32, Id32, Id64, Int32
from workhub.auth import Principal, require_admin
from workhub.core import audit, clients, webhooks
from workhub.web import db_of, settings_of

clients_router = APIRouter(prefix="/api/admin/clients", tags=["admin"])
audit_router = APIRouter(prefix="/api/admin", tags=["admin"])
routers = [clients_router, audit_router]


class Client(BaseModel):
    id: int
    client_ip: str
    client_name: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    online: bool = Field(description="Seen within the online window")
    request_count: int
    allocation_count: int
    result_count: int
    success_count: int


class ClientList(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "items": [{"id": 1, "client_ip": "10.0.0.5", "client_name": None,
                   "first_seen_at": "2024-01-01T09:00:00+09:00", "last_seen_at": "2024-01-01T10:00:00+09:00",
                   "online": True, "request_count": 120, "allocation_count": 118, "result_count": 117,
                   "success_count": 110}],
        "total": 1, "online": 1, "online_window_seconds": 600, "next_after_id": None}]}}
    items: list[Client]
    total: int
    online: int
    online_window_seconds: int
    next_after_id: int | None


class AuditEntry(BaseModel):
    id: int
    table_name: str
    record_id: int | None
    action: str
    changed_by: str | None = Field(description="The acting key's identity (admin, site:ID:NAME, db:USER)")
    changed_at: datetime
    old_data: dict[str, Any] | None
    new_data: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None = Field(description="Pass as before_id for the next (older) page")


class Trigger(BaseModel):
    id: int
    site_id: int | None
    trigger_type: str
    payload: Any
    response_status: int | None
    slot_id: int | None
    source_ip: str | None
    created_at: datetime


class TriggerPage(BaseModel):
    items: list[Trigger]
    next_before_id: int | None


class Delivery(BaseModel):
    id: int
    site_id: int
    event: str
    payload: dict[str, Any]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_before_id: int | None


@clients_router.get("", response_model=ClientList, responses=ADMIN_ERRORS,
                    summary="Client machines with their online status",
                    description="A client is online when seen within `HUB_CLIENT_ONLINE_SECONDS` (10 minutes).")
async def list_clients(request: Request, principal: Principal = Depends(require_admin),
                       online: bool | None = Query(None, description="Only online (true) or offline (false)"),
                       after_id: Annotated[Cursor32, Query(description="Return clients with a larger id")] = 0,
                       limit: int = Query(100, ge=1, le=1000)) -> dict:
    return await db_of(request).run(clients.list_clients, settings_of(request), online=online, after_id=after_id,
                                    limit=limit)


@audit_router.get("/audit-log", response_model=AuditPage, responses=ADMIN_ERRORS,
                  summary="Every change of slots, proxies and sites, newest first",
                  description="Old and new row data (secrets masked) and the acting key's identity.")
async def audit_log(request: Request, principal: Principal = Depends(require_admin),
                    table_name: Literal["v1_hub_work_slots", "v1_hub_proxies", "v1_hub_external_sites"] | None =
                    Query(None, description="Only this table"),
                    record_id: Annotated[Int32 | None, Query(description="Only this row id")] = None,
                    action: Literal["INSERT", "UPDATE", "DELETE"] | None = Query(None),
                    changed_by: str | None = Query(None, max_length=100, description="e.g. `admin`, `site:3:shop-a`"),
                    since: datetime | None = Query(None, description="Changes at or after this time"),
                    until: datetime | None = Query(None, description="Changes before this time"),
                    before_id: Annotated[Id64 | None, Query(description="Older than this entry")] = None,
                    limit: int = Query(100, ge=1, le=1000)) -> dict:
    return await db_of(request).run(audit.query_audit_log, table_name=table_name, record_id=record_id, action=action,
                                    changed_by=changed_by, since=since, until=until, before_id=before_id,
                                    limit=limit)


@audit_router.get("/external-triggers", response_model=TriggerPage, responses=ADMIN_ERRORS,
                  summary="Every customer-API request, newest first",
                  description="Site, request type, payload (keys never stored), reply status, slot and source IP.")
async def external_triggers(request: Request, principal: Principal = Depends(require_admin),
                            site_id: Id32 | None = None,
                            slot_id: Id32 | None = None,
                            trigger_type: str | None = Query(None, max_length=100, examples=["slot.create"]),
                            since: datetime | None = Query(None),
                            before_id: Id64 | None = None,
                            limit: int = Query(100, ge=1, le=1000)) -> dict:
    return await db_of(request).run(audit.query_external_triggers, site_id=site_id, slot_id=slot_id,
                                    trigger_type=trigger_type, since=since, before_id=before_id, limit=limit)


@audit_router.get("/webhook-deliveries", response_model=DeliveryPage, responses=ADMIN_ERRORS,
                  summary="Webhook deliveries and their outcome, newest first")
async def webhook_deliveries(request: Request, principal: Principal = Depends(require_admin),
                             site_id: Id32 | None = None,
                             status: Literal["pending", "delivered", "failed"] | None = Query(None),
                             before_id: Id64 | None = None,
                             limit: int = Query(100, ge=1, le=1000)) -> dict:
    return await db_of(request).run(webhooks.list_deliveries, site_id=site_id, status=status, before_id=before_id,
                                    limit=limit)
