"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from workhub.api.errors import error_response
from workhub.db import migrate
from workhub.db import queries as q
from workhub.web import db_of

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers and the schema is current",
            responses={503: {"description": "Database down or schema not current"}})
async def readyz(request: Request):
    db = db_of(request)
    try:
        async with asyncio.timeout(3):
            async with db.connection() as conn:
                try:
                    applied = {row["migration_id"] for row in await q.fetch_all(conn, "schema_version")}
                except psycopg.errors.UndefinedTable:  # never migrated
                    applied = set()
    except Exception as exc:  # noqa: BLE001 - any failure here means "not ready"
        return error_response(503, "database_unavailable", "The database is not reachable.",
                              {"reason": type(exc).__name__})
    missing = [m for m in request.app.state.expected_migrations if m not in applied]
    if missing:
        return error_response(503, "schema_not_current", "The database schema is not current; run `workhub db migrate`.",
                              {"pending": missing})
    return JSONResponse({"status": "ready", "database": "ok", "migrations": len(applied)})


def expected_migrations() -> list[str]:
    from yoyo import read_migrations

    return [m.id for m in read_migrations(str(migrate.migrations_dir()))]
