"""Property-based run of schemathesis over the whole OpenAPI of the app, against a live hub on loopback:
no 5xx anywhere, and every response matches its documented status, content type and schema."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_KEY, HubThread, clone_database, drop_database, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_hub(pg_admin_url, template_db, tmp_path_factory):
    """One hub for the whole run (a hub per operation would dominate the time), with a little data in it."""
    name, url = clone_database(pg_admin_url, template_db)
    hub = HubThread(make_settings(url, tmp_path_factory.mktemp("schemathesis"), max_body_bytes=200_000)).start()
    with httpx.Client(base_url=hub.url, headers=AUTH, timeout=30) as api:
        site = api.post("/api/admin/sites", json={"name": "fuzz-site"}).json()
        today = date.today()
        api.post("/api/v1/slots", json={"keyword": "k", "code": "c", "start_date": str(today - timedelta(days=1)),
                                        "end_date": str(today + timedelta(days=1)), "daily_work_count": 3,
                                        "site_id": site["id"]})
        api.post("/api/admin/proxies", json={"proxies": [{"host": "127.0.0.1", "port": 3128}]})
    yield hub
    hub.stop()
    drop_database(pg_admin_url, name)


def test_api_conforms_to_its_schema(live_hub):
    """Every operation, a bounded number of generated cases each; all failures are collected, then reported."""
    api_schema = schemathesis.openapi.from_url(live_hub.url + "/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(base_url=live_hub.url, headers=AUTH, checks=CHECKS, timeout=30)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            failures[operation.label] = str(exc)[:3000]
    assert operations >= 10
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
