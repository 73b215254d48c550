"""What the sync and async clients share: request shapes, reply handling, the retry policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter
from tenacity.wait import wait_base

from workhub.client.errors import HubError, HubUnavailable

# Errors after which the request certainly never reached the hub: safe to send again even when the
# call is not idempotent (allocate would otherwise lease twice; the extra lease would only expire).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter; a hub's Retry-After wins over the backoff."""

    attempts: int = 6
    max_elapsed: float = 60.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    retry_after_max: float = 60.0

    def kwargs(self, idempotent: bool) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.attempts) | stop_after_delay(self.max_elapsed),
            "wait": _HonourRetryAfter(self),
            "retry": retry_if_exception(lambda exc: should_retry(exc, idempotent)),
            "reraise": True,
        }


def should_retry(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, HubUnavailable):
        return True
    if isinstance(exc, NOT_SENT):
        return True
    # a timeout or broken connection after sending: only calls that are safe to repeat
    return idempotent and isinstance(exc, httpx.TransportError)


class _HonourRetryAfter(wait_base):
    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.backoff = wait_exponential_jitter(initial=policy.backoff_initial, max=policy.backoff_max)

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        if hinted is not None:
            return min(hinted, self.policy.retry_after_max)
        return self.backoff(retry_state)


def check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise HubError.from_response(response)
    return response.json()


def headers(fleet_token: str | None) -> dict[str, str]:
    h = {"User-Agent": "workhub-client/1"}
    if fleet_token:
        h["Authorization"] = f"Bearer {fleet_token}"
    return h


def submit_body(allocation_key: str, status: str, execution_time_ms: int, **fields: Any) -> dict[str, Any]:
    body = {"allocation_key": str(allocation_key), "status": status, "execution_time_ms": int(execution_time_ms)}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body
