"""Shared pieces of the routers: error responses for OpenAPI, the auth dependencies."""

from __future__ import annotations

from workhub.api.errors import ERROR_SCHEMA


def error_responses(*statuses: int) -> dict:
    words = {400: "Bad request", 401: "Missing or wrong key", 403: "Wrong role", 404: "Not found",
             409: "Conflict", 413: "Body too large", 422: "Invalid request", 429: "Too many failed authentications",
             503: "Database unavailable"}
    return {s: {"description": words.get(s, "Error"), "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for s in statuses}


ADMIN_ERRORS = error_responses(401, 403, 422, 429, 503)
