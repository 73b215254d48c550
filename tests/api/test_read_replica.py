"""HUB_READ_DATABASE_URL: the dashboard, monitor and analysis reads go to the replica, in read-only
sessions; the worker protocol, the ledger and every write stay on the primary.

The "replica" here is a clone of the primary's database that holds one slot the primary lacks, so a
page that shows that slot read the replica, and a ledger that moved on the primary only was written
there."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.conftest import ADMIN_KEY, TIMEZONE, HubThread, clone_database, drop_database, make_settings
from workhub.core import bench

REPLICA_KEYWORD = "only-on-the-replica"


@pytest.fixture
def replica_url(pg_admin_url, template_db):
    name, url = clone_database(pg_admin_url, template_db)   # the same migrated schema as the primary
    with psycopg.connect(url, autocommit=True, options=f"-c TimeZone={TIMEZONE}") as conn:
        conn.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                     "VALUES (%s, 'R-1', current_date - 1, current_date + 1, 5)", [REPLICA_KEYWORD])
        conn.execute("SELECT init_daily_work_tracking(current_date)")
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def split_hub(db_url, replica_url, tmp_path):
    hub = HubThread(make_settings(db_url, tmp_path, read_database_url=replica_url)).start()
    yield hub
    hub.stop()


def test_reports_read_the_replica_and_the_ledger_stays_on_the_primary(split_hub, sql, replica_url):
    sql.execute("INSERT INTO v1_hub_work_slots (keyword, code, start_date, end_date, daily_work_count) "
                "VALUES ('on-the-primary', 'P-1', current_date - 1, current_date + 1, 5)")
    sql.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('10.9.0.1', 3128)")
    with httpx.Client(base_url=split_hub.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c:
        # the worker protocol writes the primary
        lease = c.get("/api/allocate-work").json()
        assert lease["status"] == "allocated"
        assert lease["allocations"][0]["slot"]["keyword"] == "on-the-primary"
        assert sql.execute("SELECT sum(in_flight_count) FROM v1_hub_daily_work_tracking").fetchone()[0] == 1

        # the dashboard reads the replica: its slot is listed, the primary's is not
        bench._dashboard_login(c, ADMIN_KEY)
        overview = c.get("/")
        assert overview.status_code == 200
        assert REPLICA_KEYWORD in overview.text and "on-the-primary" not in overview.text

        # every page, fragment and report works in read-only sessions (a route that wrote would fail)
        slot_id = int(re.search(r'href="/slots/(\d+)"', overview.text).group(1))
        for path in bench.dashboard_paths():
            r = c.get(path.replace("{slot_id}", str(slot_id)))
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        for path in ("/api/monitor", "/api/admin/analysis/clients", "/api/admin/analysis/settings",
                     "/api/admin/analysis/blocks", f"/api/admin/analysis/slots/{slot_id}/ranks",
                     "/api/admin/analysis/trends", "/api/admin/alerts"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])

        # the monitor's live figures are the replica's: nothing is in flight there
        live = c.get("/api/monitor").json()
        assert live["in_flight"] == 0 and live["today"]["in_flight"] == 0 and live["active_slots"] == 1

    with psycopg.connect(replica_url, autocommit=True) as replica:
        assert replica.execute("SELECT count(*) FROM v1_hub_work_allocations").fetchone()[0] == 0
        assert replica.execute("SELECT count(*) FROM v1_hub_work_slots WHERE keyword = 'on-the-primary'"
                               ).fetchone()[0] == 0


def test_the_read_pool_refuses_writes(db_url, tmp_path):
    from workhub.db.pool import Database

    settings = make_settings(db_url, tmp_path)

    async def attempt():
        db = Database(settings, db_url, read_only=True)
        await db.open()
        try:
            async def write(conn):
                await conn.execute("INSERT INTO v1_hub_proxies (host, port) VALUES ('10.9.0.2', 3128)")
            await db.run(write)
        finally:
            await db.close()

    import asyncio

    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        asyncio.run(attempt())
