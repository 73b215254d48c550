"""The worker fast path: well-formed allocate and submit requests served without FastAPI's layers.

Every worker cycle is one allocate and one submit, so these two routes are nearly all of a hub's
traffic. Through FastAPI each one pays for route matching, the dependency graph, a Request object, the
exception middleware and a response object: measured, 0.70-0.79 ms of hub CPU per request through
FastAPI, 0.41-0.44 ms here (docs/performance.md, finding 15). This pure-ASGI middleware answers the
common case directly and calls the very functions the routes call (``worker.allocate`` and
``worker.submit``) with the very models.

Anything it is not sure about goes to FastAPI untouched, with the body it read replayed: a body that is
not JSON or not valid, a query string with unknown, repeated or non-numeric parameters, another content
type, a fleet token that is missing or wrong, an address over the failed-authentication limit. So
every error reply (422 with field details, 401, 403, 429, 413 ...) is FastAPI's own, by construction.
An error raised by the ledger call (404 unknown allocation key, 409, 503 database unavailable ...) goes
through the app's own exception handlers, so it has the same shape and status as through the route.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from pydantic import ValidationError

from workhub.api import worker
from workhub.auth import bearer_token
from workhub.errors import HubError
from workhub.web import scope_client_ip

ALLOCATE_PATH = "/api/allocate-work"
SUBMIT_PATH = "/api/submit-result"
_FAST_ROUTES = frozenset((("GET", ALLOCATE_PATH), ("POST", ALLOCATE_PATH), ("POST", SUBMIT_PATH)))
_ALLOCATE_PARAMS = frozenset(("instance_number", "user_folder_number", "count"))
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class _RouteLabel:
    """Stands for the matched route in the scope: the metrics middleware reads its ``path``."""
    path: str


_ROUTE_LABELS = {path: _RouteLabel(path) for path in (ALLOCATE_PATH, SUBMIT_PATH)}


class _NotFast(Exception):
    """The request is left to FastAPI."""


class WorkerFastPath:
    def __init__(self, app, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        key = (scope.get("method"), scope.get("path"))
        if scope["type"] != "http" or key not in _FAST_ROUTES:
            return await self.app(scope, receive, send)
        body = b""
        if key[0] == "POST":
            body, complete = await _read_body(receive)
            if not complete:  # the client went away before sending its body: nobody to answer
                return None
            receive = _replay(body, receive)
        state = self.fastapi_app.state
        try:
            self._authorise(scope, state)
            request = _parse(key, scope, body)
        except (_NotFast, ValueError, TypeError, ValidationError):
            return await self.app(scope, receive, send)

        scope["route"] = _ROUTE_LABELS[key[1]]  # what the metrics middleware labels the request with
        settings = state.settings
        try:
            ip = scope_client_ip(scope, settings)
            if key[1] == SUBMIT_PATH:
                reply = await worker.submit(state.db, settings, scope, ip, request)
            else:
                reply = await worker.allocate(state.db, settings, scope, ip, request)
        except Exception as exc:  # noqa: BLE001 - answered by the app's own handler for it
            response = await self._handler(exc)(Request(scope, receive), exc)
            return await response(scope, receive, send)
        payload = reply.encode() if isinstance(reply, str) else reply
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), *_JSON_HEADERS]})
        await send({"type": "http.response.body", "body": payload})
        return None

    def _authorise(self, scope: dict, state) -> None:
        """Open worker routes, or the fleet token or admin key from an address under the limit.
        Anything else is FastAPI's to answer (401, 403 or 429 from workhub.auth)."""
        fleet = state.settings.fleet_token
        if fleet is None:
            return
        token = _bearer(scope)
        if token is None:
            raise _NotFast
        raw = token.encode()
        if not (hmac.compare_digest(raw, state.admin_key.encode())
                or hmac.compare_digest(raw, fleet.get_secret_value().encode())):
            raise _NotFast
        try:
            state.auth_limiter.check(scope_client_ip(scope, state.settings))
        except HubError:
            raise _NotFast from None

    def _handler(self, exc: Exception):
        handlers = self.fastapi_app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return handlers[Exception]


def _parse(key: tuple[str, str], scope: dict, body: bytes):
    if key[0] == "GET":
        return worker.AllocateRequest.model_validate(_allocate_params(scope["query_string"]))
    if body and not _is_json(scope):
        raise _NotFast
    if key[1] == ALLOCATE_PATH:
        data = orjson.loads(body) if body else None
        return worker.AllocateRequest() if data is None else worker.AllocateRequest.model_validate(_object(data))
    return worker.SubmitRequest.model_validate(_object(orjson.loads(body)))


def _allocate_params(query_string: bytes) -> dict:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= _ALLOCATE_PARAMS:
        raise _NotFast
    for value in params.values():
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            raise _NotFast
    return params


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise _NotFast
    return data


def _is_json(scope: dict) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return True  # FastAPI reads a body without a content type as JSON too


def _bearer(scope: dict) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


async def _read_body(receive) -> tuple[bytes, bool]:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive):
    """A receive that hands the app the body already read, then the server's messages (disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install(app: FastAPI) -> None:
    if app.state.settings.worker_fast_path:
        app.add_middleware(WorkerFastPath, fastapi_app=app)
