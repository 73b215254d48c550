"""Slot-completed webhooks: outbox row on completion, HMAC-signed POST, retries with backoff, outcome recorded."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.api.customer_helpers import new_site, site_client, slot_body
from tests.conftest import make_settings
from tests.webhook_receiver import WebhookReceiver as Receiver
from workhub.core import webhooks

SECRET = "receiver-secret-123"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def complete_a_slot(hub, api, sql, settings, url: str, secret: str | None = SECRET) -> dict:
    extra = {"webhook_url": url} | ({"webhook_secret": secret} if secret else {})
    site = new_site(api, "shop-hook", **extra)
    with site_client(hub, site["api_key"]) as shop:
        slot = shop.post("/api/v1/slots", json=slot_body(settings.work_date(), daily_work_count=1,
                                                         external_ref="ord-9")).json()
    sql.execute("INSERT INTO v1_hub_proxies (host, port, max_uses) VALUES ('127.0.0.1', 3128, 1000)")
    package = api.get("/api/allocate-work").json()["allocations"][0]
    assert api.post("/api/submit-result", json={"allocation_key": package["allocation_key"], "status": "success",
                                                "execution_time_ms": 500, "rank": 2}).json()["counted"]
    return {"site": site, "slot": slot}


def deliveries(sql):
    return sql.execute("SELECT status, attempts, last_status, last_error FROM v1_hub_webhook_deliveries").fetchall()


async def test_completed_slot_is_posted_with_a_valid_signature(hub, api, sql, settings, database, receiver):
    made = complete_a_slot(hub, api, sql, settings, receiver.url)
    assert deliveries(sql) == [("pending", 0, None, None)]
    counts = await webhooks.deliver_due(database, settings)
    assert counts == {"claimed": 1, "delivered": 1, "retrying": 0, "failed": 0}
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Workhub-Signature"] == expected
    assert webhooks.verify(SECRET, request["body"], expected)
    assert not webhooks.verify("wrong-secret", request["body"], expected)
    assert int(request["headers"]["X-Workhub-Timestamp"]) > 0
    assert request["headers"]["X-Workhub-Event"] == "slot.completed"
    payload = json.loads(request["body"])
    assert payload["event"] == "slot.completed" and payload["slot_id"] == made["slot"]["id"]
    assert payload["external_ref"] == "ord-9" and payload["success_count"] == 1 and payload["target_count"] == 1
    assert payload["work_date"] == str(settings.work_date()) and payload["delivery_id"] > 0
    assert deliveries(sql) == [("delivered", 1, 200, None)]
    # delivered once: nothing more to send
    assert (await webhooks.deliver_due(database, settings))["claimed"] == 0
    listed = api.get("/api/admin/webhook-deliveries", params={"site_id": made["site"]["id"]}).json()["items"]
    assert [d["status"] for d in listed] == ["delivered"]


async def test_failures_back_off_and_give_up_after_the_last_attempt(hub, api, sql, db_url, tmp_path, settings,
                                                                    database):
    receiver = Receiver(statuses=[500, 503, 500])
    try:
        complete_a_slot(hub, api, sql, settings, receiver.url)
        quick = make_settings(db_url, tmp_path, webhook_max_attempts=3, webhook_backoff_seconds=60)
        assert (await webhooks.deliver_due(database, quick))["retrying"] == 1
        status, attempts, last_status, error = deliveries(sql)[0]
        assert (status, attempts, last_status) == ("pending", 1, 500) and "500" in error
        wait = sql.execute("SELECT next_attempt_at - now() FROM v1_hub_webhook_deliveries").fetchone()[0]
        assert 50 < wait.total_seconds() <= 61  # first backoff
        # not due yet
        assert (await webhooks.deliver_due(database, quick))["claimed"] == 0
        later = make_settings(db_url, tmp_path, webhook_max_attempts=3, webhook_backoff_seconds=60,
                              clock_offset_seconds=90)
        assert (await webhooks.deliver_due(database, later))["retrying"] == 1
        wait = sql.execute("SELECT next_attempt_at - now() FROM v1_hub_webhook_deliveries").fetchone()[0]
        assert 200 < wait.total_seconds() <= 211  # 90 s ahead + doubled backoff
        much_later = make_settings(db_url, tmp_path, webhook_max_attempts=3, webhook_backoff_seconds=60,
                                   clock_offset_seconds=1000)
        assert (await webhooks.deliver_due(database, much_later))["failed"] == 1
        assert deliveries(sql)[0][:3] == ("failed", 3, 500)
        assert len(receiver.requests) == 3
        # every attempt carried a fresh, valid signature
        for request in receiver.requests:
            assert webhooks.verify(SECRET, request["body"], request["headers"]["X-Workhub-Signature"])
        assert (await webhooks.deliver_due(database, much_later))["claimed"] == 0
    finally:
        receiver.close()


async def test_unreachable_receiver_is_recorded_and_generated_secret_signs(hub, api, sql, settings, database,
                                                                          receiver):
    # a webhook URL without a secret gets a generated one, shown once at creation
    site = new_site(api, "shop-gen", webhook_url=receiver.url)
    assert site["webhook_secret"].startswith("whsec_") and site["has_webhook_secret"] is True
    assert "webhook_secret" not in api.get(f"/api/admin/sites/{site['id']}").json()
    # point a second site at a closed port: the attempt fails with a connection error and is retried later
    made = complete_a_slot(hub, api, sql, settings, "http://127.0.0.1:9/closed")
    counts = await webhooks.deliver_due(database, settings)
    assert counts["retrying"] == 1
    status, attempts, last_status, error = deliveries(sql)[0]
    assert (status, attempts, last_status) == ("pending", 1, None) and "Error" in error
    assert made["site"]["webhook_secret"] is None  # the caller chose the secret: not echoed back
