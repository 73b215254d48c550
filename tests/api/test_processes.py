"""Hub processes started by `workhub serve` share one database."""

import httpx


def test_two_hub_processes_serve_the_same_ledger(hub_processes, sql):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('k', 'c', CURRENT_DATE, CURRENT_DATE, 3)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('127.0.0.1', 1)")
    a, b = hub_processes(2)
    got = [httpx.get(h.url + "/api/allocate-work", params={"count": 2}).json() for h in (a, b)]
    assert [len(g["allocations"]) for g in got] == [2, 1]
    assert sql.execute("SELECT in_flight_count FROM v1_hub_daily_work_tracking").fetchone()[0] == 3
