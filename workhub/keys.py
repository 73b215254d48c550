"""The hub's secrets and how they look: prefixes, generators and the stored hash.

A low module (it imports nothing from workhub), so that auth, core and the log redaction share it.
Every generated secret is 256 random bits behind a recognisable prefix; keys and tokens are stored as
SHA-256 (a fast hash is right for random keys: there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets

ADMIN_KEY_PREFIX = "whadm_"
SITE_KEY_PREFIX = "whs_"
AGENT_TOKEN_PREFIX = "whpx_"
WEBHOOK_SECRET_PREFIX = "whsec_"
PREFIXES = (ADMIN_KEY_PREFIX, SITE_KEY_PREFIX, AGENT_TOKEN_PREFIX, WEBHOOK_SECRET_PREFIX)


def _new(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_admin_key() -> str:
    return _new(ADMIN_KEY_PREFIX)


def new_site_key() -> str:
    return _new(SITE_KEY_PREFIX)


def new_agent_token() -> str:
    return _new(AGENT_TOKEN_PREFIX)


def new_webhook_secret() -> str:
    return _new(WEBHOOK_SECRET_PREFIX)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The first characters of a site key, kept to recognise it; never enough to use it."""
    return key[:10]
