"""Admin: maintenance runs (list, status, trigger) and backups (list, create)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from workhub.api.common import ADMIN_ERRORS, error_responses
from workhub.auth import Principal, require_admin
from workhub.core import backup, maintenance
from workhub.web import db_of, settings_of

router = APIRouter(prefix="/api/admin", tags=["admin"])

JobName = Literal[maintenance.JOB_KINDS]  # type: ignore[valid-type] - the kinds are defined once, in core


class MaintenanceRun(BaseModel):
    id: int
    job: str
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    status: Literal["running", "ok", "failed"]
    rows_affected: dict[str, Any]
    error: str | None
    run_by: str | None
    attempts: int


class JobStatus(MaintenanceRun):
    last_ok_at: datetime | None
    recent_failures: int = Field(description="Failed runs in the last 24 hours")


class SchedulerStatus(BaseModel):
    enabled: bool
    this_process_is_leader: bool
    name: str | None = None
    leader_since: datetime | None = None
    last_tick_at: datetime | None = None


class MaintenanceStatus(BaseModel):
    scheduler: SchedulerStatus
    jobs: list[JobStatus]
    next_slots: dict[str, datetime] = Field(description="The latest slot of each job at the hub clock")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"job": "daily"}})
    job: JobName


class BackupFile(BaseModel):
    name: str
    bytes: int
    modified_at: datetime


class BackupList(BaseModel):
    directory: str
    files: list[BackupFile]
    runs: list[MaintenanceRun]


@router.get("/maintenance/runs", response_model=list[MaintenanceRun], responses=ADMIN_ERRORS,
            summary="Maintenance runs, newest first")
async def list_runs(request: Request, job: str | None = Query(None, max_length=40),
                    status: Literal["running", "ok", "failed"] | None = None,
                    before_id: int | None = Query(None, ge=1, le=2**62, description="Page: runs older than this id"),
                    limit: int = Query(50, ge=1, le=500),
                    _: Principal = Depends(require_admin)) -> list[dict]:
    return await db_of(request).run(maintenance.list_runs, job=job, status=status, before_id=before_id,
                                    limit=limit)


@router.get("/maintenance/runs/{run_id}", response_model=MaintenanceRun,
            responses={**ADMIN_ERRORS, **error_responses(404)}, summary="One maintenance run")
async def get_run(request: Request, run_id: int = Path(ge=1, le=2**62),
                  _: Principal = Depends(require_admin)) -> dict:
    return await db_of(request).run(maintenance.get_run, run_id)


@router.post("/maintenance/runs", response_model=MaintenanceRun, status_code=201, responses=ADMIN_ERRORS,
             summary="Run a maintenance job now (by hand); the reply is the finished, recorded run")
async def trigger_run(request: Request, body: RunRequest, principal: Principal = Depends(require_admin)) -> dict:
    return await maintenance.run_job(db_of(request), settings_of(request), body.job,
                                     run_by=f"api:{principal.actor}")


@router.get("/maintenance/status", response_model=MaintenanceStatus, responses=ADMIN_ERRORS,
            summary="The latest run of each job and the scheduler's state in this process")
async def status(request: Request, _: Principal = Depends(require_admin)) -> dict:
    settings = settings_of(request)
    scheduler = getattr(request.app.state, "scheduler", None)
    sched = {"enabled": scheduler is not None, "this_process_is_leader": False}
    if scheduler is not None:
        info = scheduler.status()
        sched.update(this_process_is_leader=info["is_leader"], name=info["name"],
                     leader_since=info["leader_since"], last_tick_at=info["last_tick_at"])
    jobs = await db_of(request).run(maintenance.last_runs, settings)
    return {"scheduler": sched, "jobs": jobs, "next_slots": maintenance.due_slots(settings.now(), settings)}


@router.get("/backups", response_model=BackupList, responses=ADMIN_ERRORS,
            summary="Backup files in the backup directory and the recent backup runs")
async def list_backups(request: Request, _: Principal = Depends(require_admin)) -> dict:
    settings = settings_of(request)
    runs = await db_of(request).run(maintenance.list_runs, job="backup", limit=20)
    return {"directory": str(backup.backup_dir(settings)), "files": backup.list_backups(settings), "runs": runs}


@router.post("/backups", response_model=MaintenanceRun, status_code=201,
             responses={**ADMIN_ERRORS, **error_responses(500)},
             summary="Make a backup now (pg_dump of the v1_hub_* tables into the backup directory)")
async def create_backup(request: Request, principal: Principal = Depends(require_admin)) -> dict:
    db, settings = db_of(request), settings_of(request)
    return await backup.recorded_backup(db, settings, run_by=f"api:{principal.actor}")

