"""Domain errors: raised by core, rendered by the API as {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def not_found(what: str, ident: Any = None) -> HubError:
    return HubError(404, f"{what}_not_found", f"No {what.replace('_', ' ')} with that id.",
                    None if ident is None else {"id": ident})


def conflict(code: str, message: str, details: Any = None) -> HubError:
    return HubError(409, code, message, details)


def invalid(message: str, details: Any = None, code: str = "validation_error") -> HubError:
    return HubError(422, code, message, details)
