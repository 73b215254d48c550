"""Monitoring, analysis and alerts (SPEC section 5): thin routes over workhub.core.{monitor,analysis,alarms}."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from workhub.api.common import ADMIN_ERRORS, Id32, Id64, error_responses
from workhub.auth import require_admin
from workhub.core import alarms, analysis, monitor
from workhub.errors import not_found
from workhub.web import db_of, read_db_of, settings_of

router = APIRouter(tags=["monitor"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)

Fresh = Annotated[bool, Query(description="Bypass the cache (dashboard data 1 min, statistics 5 min)")]


@router.get("/api/monitor", summary="Live figures: slots, in-flight work, clients, proxies, today's ledger, alerts")
async def get_monitor(request: Request) -> dict:
    return await read_db_of(request).run(monitor.snapshot, settings_of(request))


# ---------------------------------------------------------------- analysis
@router.get("/api/admin/analysis/clients", summary="Performance per client for one day (guide 3.3)")
async def client_performance(request: Request,
                             day: Annotated[date | None, Query(description="Work day (default today)")] = None,
                             fresh: Fresh = False) -> dict:
    settings = settings_of(request)
    day = day or settings.work_date()
    rows = await read_db_of(request).run(analysis.client_performance, settings, day, fresh=fresh)
    return {"day": day.isoformat(), "clients": rows}


@router.get("/api/admin/analysis/settings", summary="Effect of each settings combination (guide 3.4)")
async def settings_effect(request: Request,
                          days: int = Query(7, ge=1, le=3660, description="Window: since this many days before today"),
                          min_sample: int = Query(10, ge=1, le=1_000_000_000,
                                                  description="Leave out combinations with fewer results"),
                          fresh: Fresh = False) -> dict:
    rows = await db_of(request).run(analysis.settings_effect, settings_of(request), days, min_sample, fresh=fresh)
    return {"days": days, "min_sample": min_sample, "combinations": rows}


@router.get("/api/admin/analysis/blocks", summary="Blocked results per block type, affected clients (guide 6)")
async def block_types(request: Request, hours: int = Query(1, ge=1, le=2160), fresh: Fresh = False) -> dict:
    rows = await read_db_of(request).run(analysis.block_types, settings_of(request), hours, fresh=fresh)
    return {"hours": hours, "block_types": rows}


@router.get("/api/admin/analysis/slots/{slot_id}/ranks", summary="Rank history of a slot, per work day",
            responses=error_responses(404))
async def rank_history(request: Request, slot_id: Annotated[Id32, Path()],
                       days: int = Query(30, ge=1, le=3660), fresh: Fresh = False) -> dict:
    rows = await read_db_of(request).run(analysis.rank_history, settings_of(request), slot_id, days, fresh=fresh)
    return {"slot_id": slot_id, "days": days, "history": rows}


@router.get("/api/admin/analysis/trends", summary="Fleet-wide ledger per day")
async def daily_trends(request: Request, days: int = Query(14, ge=1, le=3660), fresh: Fresh = False) -> dict:
    rows = await read_db_of(request).run(analysis.daily_trends, settings_of(request), days, fresh=fresh)
    return {"days": days, "trends": rows}


# ---------------------------------------------------------------- alerts
@router.get("/api/admin/alerts", summary="Alerts, firing first")
async def list_alerts(request: Request, status: Literal["firing", "resolved"] | None = None,
                      limit: int = Query(100, ge=1, le=1000)) -> dict:
    rows = await read_db_of(request).run(alarms.list_alerts, status, limit)
    return {"alerts": rows}


@router.get("/api/admin/alerts/{alert_id}", summary="One alert", responses=error_responses(404))
async def get_alert(request: Request, alert_id: Annotated[Id64, Path()]) -> dict:
    row = await read_db_of(request).run(alarms.get_alert, alert_id)
    if row is None:
        raise not_found("alert", alert_id)
    return row


@router.post("/api/admin/alerts/evaluate", summary="Evaluate the alarm rules now and send notifications")
async def evaluate_alerts(request: Request) -> dict:
    return await alarms.evaluate_and_notify(db_of(request), settings_of(request))
