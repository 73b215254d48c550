"""The one settings object: every knob is an ``HUB_*`` environment variable (or `.env`)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workhub.keys import new_admin_key


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    # --- database -------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset = embedded server under data_dir/pgdata"
    )
    data_dir: Path = Path(".workhub")
    pool_min: int = 2
    pool_max: int = 100
    pool_idle_timeout: float = 60.0
    pool_timeout: float = 10.0
    # None disables server-side prepared statements (needed behind PgBouncer in transaction mode).
    prepare_threshold: int | None = 5
    embedded_max_connections: int = 400
    # A streaming replica for the read-only pages and reports (dashboard, monitor, analysis); the worker
    # protocol, the ledger and everything that writes stay on database_url.
    read_database_url: str | None = Field(
        default=None, description="PostgreSQL URL of a read replica for dashboards and reports; unset = database_url"
    )

    # --- HTTP -----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    server: str = "uvicorn"  # or "granian"
    trusted_proxies: list[str] = Field(default_factory=list, description="CIDRs allowed to set X-Forwarded-For")
    max_body_bytes: int = 1_000_000
    # Well-formed allocate and submit requests skip FastAPI's layers (workhub/api/fastpath.py); off sends
    # every request through FastAPI (same replies, more CPU per request).
    worker_fast_path: bool = True
    log_level: str = "INFO"

    # --- auth -----------------------------------------------------------
    admin_key: SecretStr | None = None
    fleet_token: SecretStr | None = None
    auth_fail_limit: int = 20  # failed authentications per source IP per minute
    session_secret: SecretStr | None = None

    # --- time -----------------------------------------------------------
    timezone: str = "Asia/Seoul"
    # Shifts the hub's clock; for roll-over drills and tests only.
    clock_offset_seconds: float = 0.0

    # --- ledger ---------------------------------------------------------
    lease_seconds: int = 300
    lease_max_seconds: int = 1800  # a lease never lives longer than this from allocation
    max_attempts_factor: int = 3  # default max_daily_attempts = factor x target

    # --- proxies --------------------------------------------------------
    proxy_default_max_uses: int = 20
    proxy_cooldown_after_blocks: int = 3
    proxy_cooldown_seconds: int = 600
    proxy_offline_after_seconds: int = 300
    proxy_ip_history_max: int = 50
    proxy_history_days: int = 35  # daily usage_stats and state-change events kept per proxy

    # --- clients --------------------------------------------------------
    client_online_seconds: int = 600

    # --- alarms ---------------------------------------------------------
    alarm_window_seconds: int = 3600
    alarm_min_sample: int = 20
    alarm_block_rate: float = 0.10
    alarm_success_rate: float = 0.80
    alarm_client_offline_seconds: int = 600
    alarm_proxy_available_ratio: float = 0.10
    # a client counts for the offline alarm only if it was seen within this lookback
    alarm_client_lookback_seconds: int = 86400
    alert_webhook_url: str | None = None

    # --- caching --------------------------------------------------------
    cache_dashboard_seconds: int = 60
    cache_stats_seconds: int = 300

    # --- operations -----------------------------------------------------
    scheduler_enabled: bool = True
    retain_allocations_days: int = 7
    retain_tracking_days: int = 30
    retain_results_days: int = 90
    retain_clients_days: int = 30
    retain_activity_log_weeks: int = 8
    retain_triggers_days: int = 90
    partitions_months_ahead: int = 2
    partitions_weeks_ahead: int = 2
    backup_dir: Path | None = None
    # where pg_dump/psql live; unset = search the embedded server, /usr/lib/postgresql/*/bin and PATH
    pg_bin_dir: Path | None = None
    scheduler_tick_seconds: float = 5.0  # how often the leader looks for due jobs
    scheduler_leader_retry_seconds: float = 10.0  # how often a follower tries to become leader
    maintenance_hour: int = Field(3, ge=0, le=23)  # local hour of the daily, weekly (Mon) and monthly (1st) jobs
    maintenance_batch_size: int = 5000  # rows moved per archive transaction
    maintenance_lock_timeout: str = "10s"  # partition DETACH/ATTACH gives up rather than stall the hot path
    maintenance_runs_keep_days: int = 14  # successful minute-job records; every other run is kept
    stats_rollup_days: int = 14  # the weekly rollup recomputes this many recent work dates
    inactive_client_report_days: int = 7

    # --- webhooks -------------------------------------------------------
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: float = 30.0  # first retry after this, doubling each attempt
    webhook_backoff_max_seconds: float = 3600.0
    webhook_batch_size: int = 50

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("prepare_threshold", mode="before")
    @classmethod
    def _threshold_none(cls, value):
        """`HUB_PREPARE_THRESHOLD=` (empty), `none` or `null` disable prepared statements (PgBouncer)."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    # --- derived --------------------------------------------------------
    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def now(self) -> datetime:
        """The hub's clock (UTC-aware); every SQL function is handed this instead of now()."""
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset_seconds)

    def work_date(self):
        return self.now().astimezone(self.tz).date()

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin_key"

    def resolved_admin_key(self) -> str:
        """HUB_ADMIN_KEY, or the key generated and kept under data_dir on first run."""
        if self.admin_key is not None:
            return self.admin_key.get_secret_value()
        path = self.admin_key_file
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = new_admin_key()
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
