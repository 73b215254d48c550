"""`workhub sites` and `workhub slots` on a real database."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from tests.conftest import TIMEZONE
from workhub.cli import app
from workhub.config import get_settings


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    for name, value in {"HUB_DATABASE_URL": db_url, "HUB_DATA_DIR": str(tmp_path / "hubdata"),
                        "HUB_TIMEZONE": TIMEZONE, "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    yield invoke
    get_settings.cache_clear()


def test_sites_add_prints_the_key_once_and_list_hides_it(cli, sql):
    added = cli("sites", "add", "shop-cli")
    assert added.exit_code == 0, added.output
    key = next(w for w in added.output.split() if w.startswith("whs_"))
    stored = sql.execute("SELECT api_key_hash, name FROM v1_hub_external_sites").fetchone()
    assert stored == (hashlib.sha256(key.encode()).hexdigest(), "shop-cli")
    listed = cli("sites", "list")
    assert listed.exit_code == 0 and "shop-cli" in listed.output and key not in listed.output
    duplicate = cli("sites", "add", "shop-cli")
    assert duplicate.exit_code == 1 and "Traceback" not in duplicate.output
    bad = cli("sites", "add", "x", "--webhook-url", "ftp://nope")
    assert bad.exit_code == 1 and "webhook-url" in bad.output
    rotated = cli("sites", "rotate-key", "1")
    assert rotated.exit_code == 0 and key not in rotated.output and "whs_" in rotated.output
    missing = cli("sites", "disable", "999")
    assert missing.exit_code == 1 and "No site" in missing.output
    assert sql.execute("SELECT changed_by FROM v1_hub_audit_log ORDER BY id LIMIT 1").fetchone()[0] == "cli"


def test_slots_add_list_show_with_clear_errors(cli, sql):
    assert cli("sites", "add", "shop-s").exit_code == 0
    added = cli("slots", "add", "노트북", "12345", "--daily", "4", "--site", "1", "--end", "2099-12-31", "--ref", "o1")
    assert added.exit_code == 0 and "Created slot 1" in added.output, added.output
    again = cli("slots", "add", "노트북", "12345", "--daily", "4", "--site", "1", "--end", "2099-12-31", "--ref", "o1")
    assert again.exit_code == 0 and "Already registered" in again.output
    listed = cli("slots", "list")
    assert listed.exit_code == 0 and "노트북" in listed.output and "0/4" in listed.output, listed.output
    shown = cli("slots", "show", "1")
    assert shown.exit_code == 0 and "Slot 1" in shown.output and "12345" in shown.output
    for args, words in ((("slots", "add", "k", "c", "--daily", "0"), "--daily"),
                        (("slots", "add", "k", "c", "--daily", "1", "--start", "2024-13-01"), "--start"),
                        (("slots", "add", "k", "c", "--daily", "1", "--start", "2024-02-01", "--end", "2024-01-01"),
                         "--end"),
                        (("slots", "add", "k", "c", "--daily", "1", "--site", "77"), "site_id"),
                        (("slots", "show", "42"), "No slot")):
        result = cli(*args)
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output, result.output
    assert sql.execute("SELECT count(*) FROM v1_hub_work_slots").fetchone()[0] == 1
    assert cli("slots", "deactivate", "1").exit_code == 0
    assert sql.execute("SELECT is_active FROM v1_hub_work_slots").fetchone()[0] is False
