"""Helpers shared by the customer/admin API tests."""

from __future__ import annotations

from datetime import date, timedelta

import httpx


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def new_site(api: httpx.Client, name: str, **extra) -> dict:
    response = api.post("/api/admin/sites", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def site_client(hub, key: str) -> httpx.Client:
    return httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def slot_body(today: date, **extra) -> dict:
    return {"keyword": "노트북", "code": "12345", "start_date": str(today - timedelta(days=1)),
            "end_date": str(today + timedelta(days=10)), "daily_work_count": 5, **extra}
