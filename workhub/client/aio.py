"""The asyncio client, for workers that run many checks in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying

from workhub.client._policy import RetryPolicy, check, headers, submit_body
from workhub.client.errors import HubError, LeaseLost
from workhub.client.models import AllocateReply, Package, SubmitOutcome, parse_time
from workhub.client.sync import lease_plan


class AsyncHubClient:
    """Async twin of :class:`workhub.client.HubClient`; one instance can serve many tasks."""

    def __init__(self, base_url: str, *, instance_number: int | None = None,
                 user_folder_number: int | None = None, fleet_token: str | None = None,
                 timeout: float = 10.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, limits: httpx.Limits | None = None):
        self.instance_number = instance_number
        self.user_folder_number = user_folder_number
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers(fleet_token),
                                      timeout=timeout, transport=transport,
                                      limits=limits or httpx.Limits(max_connections=200))

    async def _call(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        async for attempt in AsyncRetrying(**self.retry.kwargs(idempotent)):
            with attempt:
                return check(await self.http.request(method, path, **kwargs))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncHubClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def allocate(self, count: int = 1, *, instance_number: int | None = None,
                       user_folder_number: int | None = None) -> AllocateReply:
        body = {"count": count,
                "instance_number": instance_number if instance_number is not None else self.instance_number,
                "user_folder_number": (user_folder_number if user_folder_number is not None
                                       else self.user_folder_number)}
        body = {k: v for k, v in body.items() if v is not None}
        return AllocateReply.parse(await self._call("POST", "/api/allocate-work", json=body, idempotent=False))

    async def submit(self, allocation_key: str, status: str, execution_time_ms: int,
                     **fields: Any) -> SubmitOutcome:
        body = submit_body(allocation_key, status, execution_time_ms, **fields)
        reply = await self._call("POST", "/api/submit-result", json=body, idempotent=True)
        return SubmitOutcome.parse(reply, str(allocation_key))

    async def submit_many(self, results: list[dict[str, Any]]) -> list[SubmitOutcome]:
        reply = await self._call("POST", "/api/submit-results", json={"results": results}, idempotent=True)
        return [SubmitOutcome.parse(item) for item in reply["results"]]

    async def extend(self, allocation_key: str, seconds: int = 300) -> datetime:
        reply = await self._call("POST", f"/api/allocations/{allocation_key}/extend", json={"seconds": seconds},
                                 idempotent=True)
        return parse_time(reply["expires_at"])

    async def release(self, allocation_key: str, reason: str | None = None) -> None:
        await self._call("POST", f"/api/allocations/{allocation_key}/release",
                         json={"reason": reason} if reason else {}, idempotent=True)

    def keep_lease(self, package: Package, *, seconds: int | None = None,
                   every: float | None = None) -> AsyncLeaseKeeper:
        return AsyncLeaseKeeper(self, package, seconds=seconds, every=every)


class AsyncLeaseKeeper:
    """``async with hub.keep_lease(package) as keeper:`` extends the lease in a background task."""

    def __init__(self, client: AsyncHubClient, package: Package, *, seconds: int | None = None,
                 every: float | None = None):
        self.client = client
        self.package = package
        self.seconds, self.every = lease_plan(package, seconds, every)
        self.expires_at = package.expires_at
        self.lost: BaseException | None = None
        self.extensions = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                new_expiry = await self.client.extend(self.package.allocation_key, self.seconds)
            except HubError as exc:
                if exc.status in (404, 409):
                    self.lost = LeaseLost(str(exc))
                    return
                continue
            except httpx.HTTPError:
                continue
            self.extensions += 1
            if new_expiry <= self.expires_at:
                self.expires_at = new_expiry
                return
            self.expires_at = new_expiry

    async def __aenter__(self) -> AsyncLeaseKeeper:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
