"""Settings parsing, log redaction and the failed-authentication limiter (no database needed)."""

from __future__ import annotations

import time

import pytest

from workhub import keys
from workhub.auth import FailedAuthLimiter
from workhub.config import Settings
from workhub.errors import HubError
from workhub.logs import redact


@pytest.mark.parametrize("raw", ["", "none", "None", "NULL", "null", " none "])
def test_prepare_threshold_can_be_disabled_from_the_environment(monkeypatch, raw):
    monkeypatch.setenv("HUB_PREPARE_THRESHOLD", raw)
    assert Settings(_env_file=None).prepare_threshold is None


def test_prepare_threshold_number(monkeypatch):
    monkeypatch.setenv("HUB_PREPARE_THRESHOLD", "0")
    assert Settings(_env_file=None).prepare_threshold == 0
    monkeypatch.setenv("HUB_PREPARE_THRESHOLD", "12")
    assert Settings(_env_file=None).prepare_threshold == 12
    monkeypatch.delenv("HUB_PREPARE_THRESHOLD")
    assert Settings(_env_file=None).prepare_threshold == 5
    monkeypatch.setenv("HUB_PREPARE_THRESHOLD", "many")
    with pytest.raises(ValueError):
        Settings(_env_file=None)


def test_every_generated_secret_is_redacted():
    secrets = [keys.new_admin_key(), keys.new_site_key(), keys.new_agent_token(), keys.new_webhook_secret()]
    for secret in secrets:
        prefix = secret.split("_", 1)[0]
        line = redact(f"issued {secret} to the agent")
        assert secret not in line and secret[len(prefix) + 1:] not in line
        assert line == f"issued {prefix}_*** to the agent"
    assert redact("key_prefix whs_AbCd") == "key_prefix whs_AbCd"  # too short to be a key: left alone


def test_limiter_throttles_and_forgets_after_the_window():
    limiter = FailedAuthLimiter(limit=3, window=0.3)
    for _ in range(3):
        limiter.check("198.51.100.1")
        limiter.record_failure("198.51.100.1")
    with pytest.raises(HubError) as caught:
        limiter.check("198.51.100.1")
    assert caught.value.status == 429
    limiter.check("198.51.100.2")  # another address is not affected
    time.sleep(0.35)
    limiter.check("198.51.100.1")


def test_limiter_survives_a_spray_of_addresses():
    """Past its size the limiter drops the least recently failing addresses, not every counter."""
    limiter = FailedAuthLimiter(limit=3, window=60, max_addresses=100)
    for _ in range(3):
        limiter.record_failure("203.0.113.66")
    for n in range(99):  # fills the cache without pushing the attacker out
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}")
    with pytest.raises(HubError):
        limiter.check("203.0.113.66")
    limiter.record_failure("203.0.113.66")  # recently failing: kept while older addresses make room
    for n in range(99, 160):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._fails) <= 100
    with pytest.raises(HubError):
        limiter.check("203.0.113.66")
