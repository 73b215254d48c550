"""The worker SDK: talk to a workhub hub from a worker machine.

Sync (:class:`HubClient`) and async (:class:`AsyncHubClient`) clients over httpx, with
retries and backoff, a lease keeper that extends a lease while work runs, and submit
retries that are safe because the hub's submit is idempotent per allocation key.

This package imports nothing from the rest of workhub (only httpx and tenacity), so a
worker can install and vendor it alone.

    with HubClient("http://127.0.0.1:8080", instance_number=1, user_folder_number=3) as hub:
        reply = hub.allocate(count=1)
        for package in reply.allocations:
            with hub.keep_lease(package):
                outcome = run_the_check(package)          # your code
            hub.submit(package.allocation_key, "success", execution_time_ms=outcome.ms, rank=outcome.rank)
"""

from workhub.client.aio import AsyncHubClient, AsyncLeaseKeeper
from workhub.client.errors import HubError, HubUnavailable, LeaseLost
from workhub.client.models import AllocateReply, Package, SubmitOutcome
from workhub.client.sync import HubClient, LeaseKeeper

__all__ = [
    "AllocateReply",
    "AsyncHubClient",
    "AsyncLeaseKeeper",
    "HubClient",
    "HubError",
    "HubUnavailable",
    "LeaseKeeper",
    "LeaseLost",
    "Package",
    "SubmitOutcome",
]
