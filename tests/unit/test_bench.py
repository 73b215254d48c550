"""`workhub bench` and the data generator, structurally: tiny runs, real PostgreSQL, real hub processes
on loopback. No timing assertions: speed is measured by `workhub bench` itself, never by tests."""

from __future__ import annotations

import asyncio
import os
import secrets

import psycopg
import pytest

from tests.conftest import TIMEZONE, make_settings
from workhub.core import bench, datagen
from workhub.db import migrate
from workhub.db.urls import with_database


def test_percentiles_and_ratios():
    values = list(range(1, 101))  # 1..100
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([], 99) == 0.0
    s = bench.latency_summary([3.0, 1.0, 2.0])
    assert s["n"] == 3 and s["p50_ms"] == 2.0 and s["max_ms"] == 3.0 and s["mean_ms"] == 2.0
    assert bench.ratio(50, 100) == 0.5
    assert bench.ratio(1, 0) is None


def test_checks_compare_against_reference_and_targets():
    report = {"cycles": {"cycles_per_s": 60.0}, "floor": {"tps": 100.0},
              "allocate_p99": {"workers": 32, "p99_ms": 30.0},
              "batch": {"packages_per_s": 12_000.0}, "batch_floor": {"packages_per_s": 15_000.0}}
    by_name = {c["name"].split(" (")[0]: c for c in bench.checks(report)}
    floor = by_name["cycles/s vs pgbench floor"]
    assert floor["ratio"] == 0.6 and floor["ok"] is True
    p99 = by_name["allocate p99"]
    assert p99["ok"] is False and p99["ratio"] == 1.2
    assert by_name["batch allocation packages/s"]["ok"] is True


def test_a_ratio_check_gives_no_verdict_without_its_reference():
    # bench --no-floor: there is no floor to divide by, so no ratio and no "met"
    report = {"cycles": {"cycles_per_s": 212.7}, "allocate_p99": {"p99_ms": 20.0},
              "batch": {"packages_per_s": 5_000.0}}
    by_name = {c["name"].split(" (")[0]: c for c in bench.checks(report)}
    floor = by_name["cycles/s vs pgbench floor"]
    assert floor["value"] == 212.7 and floor["ratio"] is None and floor["ok"] is None
    assert by_name["batch allocation packages/s"]["ok"] is False
    assert by_name["allocate p99"]["ok"] is True


def test_pgbench_scripts_are_packaged():
    cycle = bench.bench_script("cycle.sql")
    assert "v1_hub_allocate_work" in cycle and "v1_hub_submit_result" in cycle and "\\gset" in cycle
    assert ":count" in bench.bench_script("batch.sql")


def _fresh_database(pg_admin_url: str) -> tuple[str, str]:
    name = f"whbench_{os.getpid()}_{secrets.token_hex(3)}"
    url = bench.create_database(pg_admin_url, name)
    return name, url


def test_generator_writes_the_requested_rows(pg_admin_url, tmp_path):
    name, url = _fresh_database(pg_admin_url)
    try:
        migrate.migrate(url, TIMEZONE)
        settings = make_settings(url, tmp_path)
        seen = []
        opts = datagen.GenerateOptions(slots=50, results=2_500, proxies=20, clients=5, days=20,
                                       tracking_days=2, chunk=1_000, jobs=2)
        out = asyncio.run(datagen.generate(url, settings, opts, lambda *a: seen.append(a)))
        counts = out["counts"]
        assert counts["slots"] == 50 and counts["proxies"] == 20 and counts["clients"] == 5
        assert counts["results"] == 2_500 and out["generated"]["results"] == 2_500
        assert counts["activity_logs"] == 2_500              # one submit log per result
        assert 0 < counts["product_results"] < 2_500         # one product row per success
        assert counts["product_results"] == out["generated"]["products"]
        assert 0 < counts["allocations"] < 2_500             # only the last 7 days keep allocations
        assert counts["tracking"] == 50 * 3                  # today + 2 past days
        assert ("results", 2_500, 2_500) in seen
        with psycopg.connect(url, autocommit=True) as conn:
            # rows are in their monthly / weekly partitions, not in the DEFAULT ones
            assert conn.execute("SELECT count(*) FROM v1_hub_work_results_default").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM v1_hub_client_activity_logs_default").fetchone()[0] == 0
            span = conn.execute("SELECT max(created_at) - min(created_at) FROM v1_hub_work_results").fetchone()[0]
            assert span.days >= 19
            # past ledgers balance (the table's CHECK constraints held)
            bad = conn.execute("SELECT count(*) FROM v1_hub_daily_work_tracking WHERE success_count > target_count"
                               ).fetchone()[0]
            assert bad == 0
    finally:
        bench.drop_database(pg_admin_url, name)


def test_tiny_bench_run_reports_consistent_figures(pg_admin_url, tmp_path):
    """A very short run of every phase: the report has its structure and its numbers agree."""
    settings = make_settings(with_database(pg_admin_url, "postgres"), tmp_path)
    name = f"whbench_{os.getpid()}_{secrets.token_hex(3)}"
    opts = bench.BenchOptions(workers=2, duration=3.0, warmup=1.0, p99_workers=3, batch_count=5,
                              batch_workers=1, slots=20, proxies=40, scale=[2], database=name,
                              large=True, large_slots=30, large_results=500, rounds=2)
    phases = []
    report = bench.run_bench(settings, pg_admin_url, opts, lambda p, d, t: phases.append(p))

    floor, cycles = report["floor"], report["cycles"]
    assert floor["tps"] > 0 and floor["clients"] == 2
    assert cycles["workers"] == 2 and cycles["errors"] == 0, cycles["first_error"]
    assert cycles["cycles"] > 0 and cycles["cycles_per_s"] == round(cycles["cycles"] / 3.0, 1)
    for call in ("allocate", "submit"):
        lat = cycles[call]
        assert lat["n"] > 0 and 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert cycles["submit"]["n"] == cycles["cycles"]
    assert cycles["ledger"]["exact"] is True and cycles["ledger"]["success_added"] >= cycles["cycles"]
    assert 0 < cycles["hub_cpu_ms_per_request"] < 1000
    # floor and HTTP interleaved: one ratio per round; the reported pair is one of them
    rounds = report["rounds"]
    assert len(rounds) == 2 and all(r["ratio"] == bench.ratio(r["cycles_per_s"], r["floor_tps"]) for r in rounds)
    assert {"floor_tps": floor["tps"], "cycles_per_s": cycles["cycles_per_s"],
            "ratio": bench.ratio(cycles["cycles_per_s"], floor["tps"])} in rounds
    paced, saturated = report["allocate_p99"], report["allocate_p99_saturated"]
    assert paced["workers"] == saturated["workers"] == 3 and paced["p99_ms"] > 0 and paced["errors"] == 0
    assert paced["offered_cycles_per_s"] == round(0.5 * saturated["cycles_per_s"], 1)
    # paced workers start cycles at the offered rate, not as fast as the hub answers (closed loop: ~2x)
    assert 0 < paced["cycles_per_s"] <= paced["offered_cycles_per_s"] * 1.25 + 1
    batch = report["batch"]
    assert batch["packages_per_s"] > 0 and batch["packages"] <= 5 * batch["requests"]
    assert report["batch_floor"]["packages_per_s"] == round(report["batch_floor"]["tps"] * 5, 1)
    assert [row["processes"] for row in report["scale"]] == [2]
    assert report["scale"][0]["vs_first"] == 1.0 and report["scale"][0]["cycles_per_s"] > 0
    large = report["large"]
    assert large["generate"]["counts"]["results"] >= 500 and large["cycles"]["cycles_per_s"] > 0
    assert all(e["status"] == 200 for e in large["endpoints"]), large["endpoints"]
    assert large["minute_job"]["status"] == "ok"   # the roll-up a running hub's scheduler would have done
    timed = {e["path"] for e in large["endpoints"]}
    # the dashboard (logged in) as well as the API: its pages and auto-refresh fragments
    assert {"/", "/slots/1", "/analysis", "/ui/kpis"} <= timed and "/api/monitor" in timed
    assert not any(p.startswith("/login") for p in timed)

    checks = {c["name"].split(" (")[0]: c for c in report["checks"]}
    vs_floor = checks["cycles/s vs pgbench floor"]
    assert vs_floor["ratio"] == bench.ratio(cycles["cycles_per_s"], floor["tps"])
    assert checks["cycles/s at large data vs empty"]["reference"] == cycles["cycles_per_s"]
    assert {"pgbench floor (cycle), round 2", "HTTP cycles, 2 workers, round 2", "results"} <= set(phases)
    # the benchmark database is dropped afterwards
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0] == 0


def test_cli_rejects_bad_options():
    from typer.testing import CliRunner

    from workhub.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["bench", "--server", "nginx"])
    assert result.exit_code == 1 and "uvicorn or granian" in result.output
    result = runner.invoke(app, ["bench", "--scale", "1,x"])
    assert result.exit_code == 1 and "comma-separated" in result.output


@pytest.mark.parametrize("name", ["bench_create_database", "bench_drop_database"])
def test_ddl_quotes_the_database_name(name):
    text = bench.database_ddl(name, 'odd"name').as_string(None)
    assert '"odd""name"' in text
