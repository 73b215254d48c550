"""The blocking client, for workers that are plain scripts or threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import Retrying

from workhub.client._policy import RetryPolicy, check, headers, submit_body
from workhub.client.errors import HubError, LeaseLost
from workhub.client.models import AllocateReply, Package, SubmitOutcome, parse_time


class HubClient:
    """One worker's connection to the hub (thread-safe: httpx.Client is)."""

    def __init__(self, base_url: str, *, instance_number: int | None = None,
                 user_folder_number: int | None = None, fleet_token: str | None = None,
                 timeout: float = 10.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.instance_number = instance_number
        self.user_folder_number = user_folder_number
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers(fleet_token), timeout=timeout,
                                 transport=transport)

    # ------------------------------------------------------------ plumbing
    def _call(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        for attempt in Retrying(**self.retry.kwargs(idempotent)):
            with attempt:
                return check(self.http.request(method, path, **kwargs))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the protocol
    def allocate(self, count: int = 1, *, instance_number: int | None = None,
                 user_folder_number: int | None = None) -> AllocateReply:
        """Lease up to ``count`` packages. ``no_work`` comes back as a reply, not an exception."""
        body = {"count": count,
                "instance_number": instance_number if instance_number is not None else self.instance_number,
                "user_folder_number": (user_folder_number if user_folder_number is not None
                                       else self.user_folder_number)}
        body = {k: v for k, v in body.items() if v is not None}
        return AllocateReply.parse(self._call("POST", "/api/allocate-work", json=body, idempotent=False))

    def submit(self, allocation_key: str, status: str, execution_time_ms: int, **fields: Any) -> SubmitOutcome:
        """Submit a result; retried freely, since a repeat is answered ``duplicate`` and counted once."""
        body = submit_body(allocation_key, status, execution_time_ms, **fields)
        return SubmitOutcome.parse(self._call("POST", "/api/submit-result", json=body, idempotent=True),
                                   str(allocation_key))

    def submit_many(self, results: list[dict[str, Any]]) -> list[SubmitOutcome]:
        """Up to 100 results in one call; each gets its own outcome."""
        reply = self._call("POST", "/api/submit-results", json={"results": results}, idempotent=True)
        return [SubmitOutcome.parse(item) for item in reply["results"]]

    def extend(self, allocation_key: str, seconds: int = 300) -> datetime:
        reply = self._call("POST", f"/api/allocations/{allocation_key}/extend", json={"seconds": seconds},
                           idempotent=True)
        return parse_time(reply["expires_at"])

    def release(self, allocation_key: str, reason: str | None = None) -> None:
        self._call("POST", f"/api/allocations/{allocation_key}/release",
                   json={"reason": reason} if reason else {}, idempotent=True)

    def keep_lease(self, package: Package, *, seconds: int | None = None,
                   every: float | None = None) -> LeaseKeeper:
        return LeaseKeeper(self, package, seconds=seconds, every=every)


def lease_plan(package: Package, seconds: int | None, every: float | None) -> tuple[int, float]:
    """Extend by the original lease length, a third of the way before it would lapse."""
    remaining = (package.expires_at - datetime.now(UTC)).total_seconds()
    length = seconds or max(30, round(remaining))
    return length, every or max(0.5, min(remaining, length) / 3)


class LeaseKeeper:
    """Extends a lease in a background thread while the work runs.

    ``with hub.keep_lease(package) as keeper: ...``; afterwards ``keeper.lost`` says whether the
    lease could not be kept (the hub's cap was reached, or it expired or was released). The work's
    result can still be submitted then: it is stored, marked late, and counted while there is room."""

    def __init__(self, client: HubClient, package: Package, *, seconds: int | None = None,
                 every: float | None = None):
        self.client = client
        self.package = package
        self.seconds, self.every = lease_plan(package, seconds, every)
        self.expires_at = package.expires_at
        self.lost: BaseException | None = None
        self.extensions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{package.allocation_key}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                new_expiry = self.client.extend(self.package.allocation_key, self.seconds)
            except HubError as exc:
                if exc.status in (404, 409):
                    self.lost = LeaseLost(str(exc))
                    return
                continue  # transient: the next tick tries again
            except httpx.HTTPError:
                continue
            self.extensions += 1
            if new_expiry <= self.expires_at:  # capped: nothing more to gain
                self.expires_at = new_expiry
                return
            self.expires_at = new_expiry

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.client.http.timeout.read or 30)
