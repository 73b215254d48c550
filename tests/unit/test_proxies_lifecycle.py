"""The proxy life cycle over a real database: core functions, the ledger's proxy rules, transitions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.conftest import make_settings
from workhub.core import allocation, proxies, results
from workhub.errors import HubError


def add_slot(sql, target: int = 100) -> int:
    return sql.execute(
        "INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
        "VALUES ('kw', 'c1', CURRENT_DATE - 1, CURRENT_DATE + 1, %s) RETURNING id", (target,)).fetchone()[0]


async def add_proxies(database, n: int, max_uses: int = 20, **extra) -> list[int]:
    items = [{"host": f"127.0.0.{i + 1}", "port": 3128, "username": "u", "password": f"secret-pw-{i}", **extra}
             for i in range(n)]
    return await database.run(proxies.import_proxies, items, default_max_uses=max_uses)


async def allocate(database, settings, count: int = 1) -> dict:
    reply = await database.run(allocation.allocate_work, settings, client_ip="127.0.0.1", instance_number=1,
                               user_folder_number=1, count=count)
    return json.loads(reply)


def later(settings, seconds: float):
    return settings.model_copy(update={"clock_offset_seconds": settings.clock_offset_seconds + seconds})


def status_of(sql, proxy_id: int) -> str:
    return sql.execute("SELECT status FROM v1_hub_proxies WHERE id = %s", (proxy_id,)).fetchone()[0]


# ---------------------------------------------------------------- file parsing (no database)
def test_parse_colon_lines_and_csv():
    parsed = proxies.parse_proxy_file("# pool\n127.0.0.1:3128\n\n127.0.0.2:8080:alice:pa:ss\n127.0.0.3:1080:bob:pw\n"
                                      "socks5://127.0.0.4:1081\n".replace("pa:ss", "pass"))
    assert [(p["host"], p["port"], p["protocol"], p["username"], p["password"], p["line"]) for p in parsed] == [
        ("127.0.0.1", 3128, "http", None, None, 2), ("127.0.0.2", 8080, "http", "alice", "pass", 4),
        ("127.0.0.3", 1080, "http", "bob", "pw", 5), ("127.0.0.4", 1081, "socks5", None, None, 6)]
    csv_text = "host,port,protocol,username,password,max_uses\n127.0.0.1,3128,https,u,\"p,w\",5\n127.0.0.2,3129,,,,\n"
    rows = proxies.parse_proxy_file(csv_text)
    assert rows[0] == {"host": "127.0.0.1", "port": 3128, "protocol": "https", "username": "u", "password": "p,w",
                       "max_uses": 5, "heartbeat_managed": False, "line": 2}
    assert rows[1]["protocol"] == "http" and rows[1]["password"] is None and rows[1]["max_uses"] is None


def test_parse_reports_every_bad_line_without_secrets():
    with pytest.raises(HubError) as caught:
        proxies.parse_proxy_file("127.0.0.1:3128\n127.0.0.2:99999:u:topsecret\nnot-a-line\n127.0.0.3:80:u\n"
                                 "ftp://127.0.0.4:21\n")
    err = caught.value
    assert err.status == 422 and err.code == "invalid_proxy_file"
    assert [e["line"] for e in err.details["errors"]] == [2, 3, 4, 5]
    assert "topsecret" not in json.dumps(err.details) + err.message
    with pytest.raises(HubError) as csv_err:
        proxies.parse_proxy_file("host,port,colour\n127.0.0.1,1,red\n")
    assert csv_err.value.details["errors"][0]["line"] == 1 and "colour" in csv_err.value.details["errors"][0]["message"]


# ---------------------------------------------------------------- import
async def test_import_is_all_or_nothing(database, sql):
    ids = await add_proxies(database, 2)
    assert len(ids) == 2
    batch = [{"host": "127.0.0.9", "port": 1}, {"host": "127.0.0.1", "port": 3128, "username": "u"}]
    with pytest.raises(HubError) as caught:
        await database.run(proxies.import_proxies, batch, default_max_uses=20)
    assert caught.value.status == 409 and caught.value.details["existing"][0]["item"] == 2
    with pytest.raises(HubError) as twice:
        await database.run(proxies.import_proxies, [batch[0], batch[0]], default_max_uses=20)
    assert twice.value.code == "duplicate_proxy"
    assert sql.execute("SELECT count(*) FROM v1_hub_proxies").fetchone()[0] == 2
    # the audit log masks the password
    audit = sql.execute("SELECT new_data->>'password' FROM v1_hub_audit_log WHERE table_name = 'v1_hub_proxies'")
    assert {r[0] for r in audit.fetchall()} == {"***"}


# ---------------------------------------------------------------- allocation, exhaustion, spread
async def test_allocations_spread_by_fewest_uses_and_exhaustion_stops_them(database, settings, sql):
    add_slot(sql)
    ids = await add_proxies(database, 3, max_uses=2)
    first = await allocate(database, settings, count=3)
    assert sorted(a["proxy"]["id"] for a in first["allocations"]) == ids  # one each
    one = await allocate(database, settings)
    assert one["allocations"][0]["proxy"]["id"] == ids[0]  # all tied at 1 use: lowest id
    two = await allocate(database, settings, count=2)
    assert sorted(a["proxy"]["id"] for a in two["allocations"]) == ids[1:]  # the fewest-used ones
    assert {status_of(sql, i) for i in ids} == {"exhausted"}
    none = await allocate(database, settings)
    assert none["status"] == "no_work" and none["reason"] == "no_proxy_available"
    figures = await database.run(proxies.pool_figures, settings)
    assert figures["total"] == 3 and figures["exhausted"] == 3 and figures["available"] == 0
    assert figures["utilisation"] == 1.0 and figures["uses_left"] == 0
    events = sql.execute("SELECT from_status, to_status, reason, changed_by FROM v1_hub_proxy_events "
                         "WHERE proxy_id = %s", (ids[0],)).fetchall()
    assert events == [("active", "exhausted", "use budget spent", "hub")]
    # raising the budget lifts exhaustion at once; the audit log records the change
    detail = await database.run(proxies.set_max_uses, settings, ids[0], 3, actor="admin")
    assert detail["status"] == "active" and detail["uses_left"] == 1
    assert (await allocate(database, settings))["allocations"][0]["proxy"]["id"] == ids[0]
    assert status_of(sql, ids[0]) == "exhausted"


async def test_listing_has_health_and_no_secrets(database, settings, sql):
    add_slot(sql)
    ids = await add_proxies(database, 2, max_uses=10)
    got = await allocate(database, settings, count=4)
    outcomes = ["success", "blocked", "failed", "success"]
    for package, outcome in zip(got["allocations"], outcomes):
        await database.run(results.submit_result, settings, allocation_key=package["allocation_key"],
                           status=outcome, execution_time_ms=10)
    listed = await database.run(proxies.list_proxies, settings, limit=10)
    assert [p["id"] for p in listed] == ids
    text = json.dumps(listed, default=str)
    assert "secret-pw" not in text and "password" not in {k for p in listed for k in p}
    assert all(p["has_password"] for p in listed)
    by_id = {p["id"]: p for p in listed}
    total = sum(p["results_7d"] for p in listed)
    assert total == 4 and sum(p["blocked_7d"] for p in listed) == 1
    for p in listed:
        assert p["health"] == pytest.approx(p["success_7d"] / p["results_7d"], abs=1e-4)
    rates = await database.run(proxies.block_rates, settings)
    assert sum(r["results"] for r in rates) == 4 and sum(r["blocked"] for r in rates) == 1
    blocked_proxy = next(r for r in rates if r["blocked"])
    assert blocked_proxy["block_rate"] == pytest.approx(1 / blocked_proxy["results"], abs=1e-4)
    assert by_id[blocked_proxy["proxy_id"]]["block_rate"] == blocked_proxy["block_rate"]
    # pagination and status filter
    page = await database.run(proxies.list_proxies, settings, limit=1, offset=1)
    assert [p["id"] for p in page] == ids[1:]
    assert await database.run(proxies.list_proxies, settings, status="cooldown") == []
    with pytest.raises(HubError):
        await database.run(proxies.list_proxies, settings, status="bogus")


# ---------------------------------------------------------------- cooldown
async def test_consecutive_blocks_cool_a_proxy_down_and_it_comes_back(database, db_url, tmp_path, sql):
    settings = make_settings(db_url, tmp_path, proxy_cooldown_after_blocks=2, proxy_cooldown_seconds=300)
    add_slot(sql)
    [pid] = await add_proxies(database, 1)
    got = await allocate(database, settings, count=3)
    keys = [a["allocation_key"] for a in got["allocations"]]
    for key in keys[:2]:
        await database.run(results.submit_result, settings, allocation_key=key, status="blocked",
                           execution_time_ms=5)
    assert status_of(sql, pid) == "cooldown"
    none = await allocate(database, settings)
    assert none["status"] == "no_work" and none["reason"] == "no_proxy_available"
    # a third blocked result while cooling down changes nothing
    await database.run(results.submit_result, settings, allocation_key=keys[2], status="blocked",
                       execution_time_ms=5)
    assert (await database.run(proxies.refresh_states, settings))["cooldown_ended"] == 0
    assert status_of(sql, pid) == "cooldown"
    counts = await database.run(proxies.refresh_states, later(settings, 301))
    assert counts["cooldown_ended"] == 1
    row = sql.execute("SELECT status, consecutive_blocks, cooldown_until FROM v1_hub_proxies").fetchone()
    assert row == ("active", 0, None)
    assert (await allocate(database, later(settings, 302)))["status"] == "allocated"
    transitions = sql.execute("SELECT from_status, to_status FROM v1_hub_proxy_events ORDER BY id").fetchall()
    assert transitions == [("active", "cooldown"), ("cooldown", "active")]


# ---------------------------------------------------------------- heartbeat, offline, rotation
async def test_heartbeat_offline_and_rotation(database, db_url, tmp_path, sql):
    settings = make_settings(db_url, tmp_path, proxy_offline_after_seconds=120, proxy_ip_history_max=2)
    add_slot(sql)
    [pid] = await add_proxies(database, 1, max_uses=2)
    first = await database.run(proxies.heartbeat, settings, pid, "198.51.100.1", trusted=True)
    assert first["rotated"] is False and first["rotate"] is False and first["uses_left"] == 2
    await allocate(database, settings, count=2)
    same = await database.run(proxies.heartbeat, settings, pid, "198.51.100.1", trusted=True)
    assert same["status"] == "exhausted" and same["rotate"] is True and same["rotated"] is False
    new = await database.run(proxies.heartbeat, settings, pid, "198.51.100.2", trusted=True)
    assert new["rotated"] is True and new["rotate"] is False and new["status"] == "active" and new["use_count"] == 0
    detail = await database.run(proxies.get_proxy, settings, pid)
    assert [(h["ip"], h["uses"]) for h in detail["ip_history"]] == [("198.51.100.1", 2)]
    assert detail["current_ip"] == "198.51.100.2"
    assert [(e["from_status"], e["to_status"]) for e in detail["events"]][:2] == [
        ("exhausted", "active"), ("active", "exhausted")]
    # history is capped, newest kept
    for ip in ("198.51.100.3", "198.51.100.4"):
        await database.run(proxies.heartbeat, settings, pid, ip, trusted=True)
    history = (await database.run(proxies.get_proxy, settings, pid))["ip_history"]
    assert [h["ip"] for h in history] == ["198.51.100.2", "198.51.100.3"]

    # silence sends it offline (and out of allocation), a heartbeat brings it back
    assert (await database.run(proxies.refresh_states, later(settings, 60)))["went_offline"] == 0
    assert (await database.run(proxies.refresh_states, later(settings, 200)))["went_offline"] == 1
    assert status_of(sql, pid) == "offline"
    assert (await allocate(database, later(settings, 200)))["reason"] == "no_proxy_available"
    figures = await database.run(proxies.pool_figures, settings)
    assert figures["offline"] == 1 and figures["available"] == 0
    back = await database.run(proxies.heartbeat, later(settings, 210), pid, "198.51.100.4", trusted=True)
    assert back["status"] == "active" and back["rotated"] is False
    with pytest.raises(HubError) as missing:
        await database.run(proxies.heartbeat, settings, pid + 100, "198.51.100.4", trusted=True)
    assert missing.value.status == 404


async def test_agent_tokens(database, settings):
    pid, other = await add_proxies(database, 2)
    issued = await database.run(proxies.issue_agent_token, settings, pid)
    token = issued["agent_token"]
    assert (await database.run(proxies.heartbeat, settings, pid, "198.51.100.9", trusted=False,
                               agent_token=token))["ip"] == "198.51.100.9"
    # no token, a wrong token, or one proxy's token on another proxy: refused
    for target, presented in ((pid, None), (pid, token + "x"), (other, token)):
        with pytest.raises(HubError) as caught:
            await database.run(proxies.heartbeat, settings, target, "198.51.100.9", trusted=False,
                               agent_token=presented)
        assert caught.value.status == 401
    # a proxy without a token takes no untrusted heartbeat at all; fleet/admin are trusted
    for presented in (None, token):
        with pytest.raises(HubError) as caught:
            await database.run(proxies.heartbeat, settings, other, "198.51.100.8", trusted=False,
                               agent_token=presented)
        assert caught.value.status == 401
    assert (await database.run(proxies.heartbeat, settings, other, "198.51.100.8", trusted=True))["ip"]
    assert (await database.run(proxies.heartbeat, settings, pid, "198.51.100.7", trusted=True))["rotated"]


# ---------------------------------------------------------------- operator actions
async def test_disable_enable_reset_are_recorded(database, settings, sql):
    add_slot(sql)
    [pid] = await add_proxies(database, 1, max_uses=1)
    disabled = await database.run(proxies.disable_proxy, settings, pid, reason="maintenance", actor="admin")
    assert disabled["status"] == "disabled" and disabled["status_reason"] == "maintenance"
    assert (await allocate(database, settings))["reason"] == "no_proxy_available"
    figures = await database.run(proxies.pool_figures, settings)
    assert figures["disabled"] == 1 and figures["utilisation"] == 0.0
    enabled = await database.run(proxies.enable_proxy, settings, pid, actor="admin")
    assert enabled["status"] == "active"
    await allocate(database, settings)
    assert status_of(sql, pid) == "exhausted"
    reset = await database.run(proxies.reset_proxy, settings, pid, actor="admin")
    assert reset["status"] == "active" and reset["use_count"] == 0
    await database.run(proxies.reset_proxy, settings, pid, actor="admin")  # already active: still logged
    events = sql.execute("SELECT from_status, to_status, changed_by FROM v1_hub_proxy_events ORDER BY id").fetchall()
    assert events == [("active", "disabled", "admin"), ("disabled", "active", "admin"),
                      ("active", "exhausted", "hub"), ("exhausted", "active", "admin"), ("active", "active", "admin")]
    audit = sql.execute("SELECT action, changed_by FROM v1_hub_audit_log WHERE table_name = 'v1_hub_proxies' "
                        "ORDER BY id").fetchall()
    assert audit == [("INSERT", "admin"), ("UPDATE", "admin"), ("UPDATE", "admin")]  # import, disable, enable
    with pytest.raises(HubError) as missing:
        await database.run(proxies.reset_proxy, settings, pid + 1)
    assert missing.value.status == 404


async def test_refresh_prunes_old_usage_days(database, settings, sql):
    [pid] = await add_proxies(database, 1)
    old_day = (settings.work_date() - timedelta(days=settings.proxy_history_days + 3)).isoformat()
    today = settings.work_date().isoformat()
    stats = {"days": {old_day: {"uses": 5}, today: {"uses": 1}}}
    sql.execute("UPDATE v1_hub_proxies SET usage_stats = %s WHERE id = %s", (json.dumps(stats), pid))
    counts = await database.run(proxies.refresh_states, settings)
    assert counts["pruned_usage_rows"] == 1
    kept = sql.execute("SELECT usage_stats->'days' FROM v1_hub_proxies").fetchone()[0]
    assert set(kept) == {today}
