"""Errors the SDK raises: the hub's error contract, as exceptions."""

from __future__ import annotations

from typing import Any

import httpx


class HubError(Exception):
    """The hub answered with an error body ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> HubError:
        try:
            body = response.json()
            error = body["error"]
            code, message, details = error.get("code", "error"), error.get("message", ""), error.get("details")
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message, details = f"http_{response.status_code}", response.reason_phrase or "", None
        kind = HubUnavailable if response.status_code in RETRY_STATUSES else cls
        return kind(response.status_code, code, message, details, retry_after_seconds(response))


class HubUnavailable(HubError):
    """503 / 429 / 502 / 504: the hub or its database is momentarily unable to answer; retried."""


class LeaseLost(Exception):
    """The lease keeper could not keep the lease (it expired, was released or already submitted)."""


RETRY_STATUSES = {429, 502, 503, 504}


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from the hub; fall back to backoff
