"""The error contract: every error is {"error": {"code", "message", "details"}} with the right status."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from workhub.db.pool import is_unavailable
from workhub.errors import HubError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited", 503: "unavailable",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def error_response(status: int, code: str, message: str, details=None, headers=None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}},
                        status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc),
                    "location": loc[0] if loc else None,
                    "message": err.get("msg"), "type": err.get("type")})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def hub_error(_: Request, exc: HubError):
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        if exc.status == 429 and isinstance(exc.details, dict) and "retry_after_seconds" in exc.details:
            headers = {"Retry-After": str(exc.details["retry_after_seconds"])}
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return error_response(422, "validation_error", "The request is not valid; see details for each field.",
                              _field_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"No route {request.method} {request.url.path}."
        return error_response(exc.status_code, code, message, None, getattr(exc, "headers", None))

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, exc: Exception):
        # only a lost or unobtainable connection is "database down"; a statement's own operational error
        # (a lock timeout, a cancelled statement, a deadlock that outlived the retries) is unexpected
        if not is_unavailable(exc):
            log.error("database error %s", getattr(exc, "sqlstate", None), exc_info=exc)
            return error_response(500, "internal_error", "Something went wrong on the hub; it has been logged.")
        return error_response(503, "database_unavailable", "The database is not reachable right now; retry shortly.",
                              {"reason": type(exc).__name__}, {"Retry-After": "5"})

    @app.exception_handler(psycopg.errors.CheckViolation)
    @app.exception_handler(psycopg.errors.NotNullViolation)
    @app.exception_handler(psycopg.errors.InvalidTextRepresentation)
    @app.exception_handler(psycopg.errors.NumericValueOutOfRange)
    @app.exception_handler(psycopg.errors.InvalidDatetimeFormat)
    @app.exception_handler(psycopg.errors.StringDataRightTruncation)
    @app.exception_handler(psycopg.DataError)  # the rest of SQLSTATE class 22, and NUL characters in text
    async def data_error(_: Request, exc: psycopg.Error):
        constraint = getattr(exc.diag, "constraint_name", None)
        return error_response(422, "validation_error", "A value is out of the allowed range.",
                              {"constraint": constraint} if constraint else None)

    @app.exception_handler(psycopg.errors.UniqueViolation)
    async def unique_error(_: Request, exc: psycopg.Error):
        return error_response(409, "conflict", "That already exists.",
                              {"constraint": getattr(exc.diag, "constraint_name", None)})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on the hub; it has been logged.")


class BodySizeLimit:
    """Rejects bodies over the limit (413) before the app reads them, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_bytes:
                    return await self._reject(scope, receive, send)
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and (declared is not None or scope.get("http_version") in ("1.1", "1.0")):
            # the body is at most its declared Content-Length (the server reads no more as this request's
            # body), and an HTTP/1 request with neither Content-Length nor Transfer-Encoding has none
            # (RFC 9112 6.3): nothing to watch, so no wrapper on every message of the hot routes
            return await self.app(scope, receive, send)
        received = 0
        too_large = started = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            # the framework may catch _TooLarge while parsing and answer 400 itself: that reply is
            # replaced by the 413 below
            nonlocal started
            if too_large and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        if too_large and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope, receive, send):
        response = error_response(413, "payload_too_large", f"The body is larger than {self.max_bytes} bytes.",
                                  {"max_bytes": self.max_bytes})
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
