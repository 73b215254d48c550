"""Plain data classes for the protocol's replies (kept dependency-free on purpose)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Package:
    """One leased unit of work: a keyword + product code, the proxy to use and the slot's settings."""

    allocation_key: str
    expires_at: datetime
    work_date: str
    slot: dict[str, Any]
    settings: dict[str, bool]
    proxy: dict[str, Any]

    @property
    def keyword(self) -> str:
        return self.slot["keyword"]

    @property
    def code(self) -> str:
        return self.slot["code"]

    @property
    def proxy_url(self) -> str:
        return self.proxy["url"]

    def __repr__(self) -> str:  # the proxy password stays out of logs
        return (f"Package(key={self.allocation_key}, slot={self.slot.get('id')}, "
                f"keyword={self.keyword!r}, proxy={self.proxy.get('id')}, expires_at={self.expires_at.isoformat()})")

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Package:
        return cls(allocation_key=data["allocation_key"], expires_at=parse_time(data["expires_at"]),
                   work_date=data["work_date"], slot=data["slot"], settings=data["settings"],
                   proxy=data["proxy"])


@dataclass(frozen=True)
class AllocateReply:
    status: str  # "allocated" | "no_work"
    allocations: list[Package] = field(default_factory=list)
    reason: str | None = None
    retry_after_seconds: int | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> AllocateReply:
        return cls(status=data["status"], allocations=[Package.parse(p) for p in data.get("allocations", [])],
                   reason=data.get("reason"), retry_after_seconds=data.get("retry_after_seconds"))


@dataclass(frozen=True)
class SubmitOutcome:
    allocation_key: str
    status: str  # "accepted" | "duplicate" | "late" | "error"
    result_id: int | None = None
    counted: bool | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], allocation_key: str | None = None) -> SubmitOutcome:
        return cls(allocation_key=str(data.get("allocation_key", allocation_key)), status=data["status"],
                   result_id=data.get("result_id"), counted=data.get("counted"), error=data.get("error"))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
