"""Shared pieces of the routers: error responses for OpenAPI, the auth dependencies."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from workhub.api.errors import ERROR_SCHEMA

# PostgreSQL integer / bigint bounds: a larger value is a 422, never a database error.
INT32_MAX = 2_147_483_647
INT64_MAX = 9_223_372_036_854_775_807
Id32 = Annotated[int, Field(ge=1, le=INT32_MAX)]  # an integer id (sites, slots, clients)
Cursor32 = Annotated[int, Field(ge=0, le=INT32_MAX)]  # keyset cursor over integer ids: 0 = from the start
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]  # any integer value
Id64 = Annotated[int, Field(ge=1, le=INT64_MAX)]  # a bigint id (alerts, audit, triggers, deliveries)


def error_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict:
    """OpenAPI ``responses`` for these error statuses; ``descriptions`` overrides the generic wording."""
    words = {400: "Bad request", 401: "Missing or wrong key", 403: "Wrong role", 404: "Not found",
             409: "Conflict", 413: "Body too large", 422: "Invalid request", 429: "Too many failed authentications",
             503: "Database unavailable", **(descriptions or {})}
    return {s: {"description": words.get(s, "Error"), "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for s in statuses}


ADMIN_ERRORS = error_responses(401, 403, 422, 429, 503)
