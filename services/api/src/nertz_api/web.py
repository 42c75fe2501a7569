"""The monitoring API (FastAPI, port 8081): reads Postgres projections only.

Errors are JSON ``{"error": <slug>, "reason": <what was expected and what it was>}`` (:class:`ErrorBody`):
an unknown symbol (not configured and never seen on the log) is 404, an invalid value 422 (FastAPI's
validation errors are rendered in the same shape, with ``details``), a request body over
``ApiContext.max_body_bytes`` (64 KiB) 413, the database or the bus unreachable 503 (a stable slug and a
plain reason; the exception text goes to the log, never to the client). Symbols are 2-30 ASCII letters
and digits, case-blind, and nothing else (no trailing newline). ``POST /start`` and ``POST /stop`` need
the bearer token ``NERTZ_API__TOKEN`` and publish ``TradingStarted`` / ``TradingStopped`` on the log;
they never write state themselves (the projector records them when it reads them back). Their body is
optional: no body means ``{"scope": "all", "reason": ""}``; a JSON ``null`` body is refused (422
``invalid_body``, as is a body that is not UTF-8), so a client bug never stops every symbol. The OpenAPI
document (``/openapi.json``) declares each response's model and every error status an endpoint can
answer. Prometheus exposition of the service registry is at ``/metrics``.

Reads are open unless ``NERTZ_API__READ_TOKEN`` is set: then every ``GET`` but ``/health``, ``/metrics``
and the OpenAPI document needs ``Authorization: Bearer <read token>`` (the admin token reads too), and a
request without it is a 401 before anything else is looked at. ``/status`` adds to the projections what
the services' heartbeats say (``nertz-heartbeats``, never the log: :mod:`nertz_api.liveness`), with an
overall ``ok``/``degraded`` and the reasons; ``/config`` serves every service's effective settings from
its heartbeat, secrets masked, and the API's own; ``/check_reset`` tells a client whether the log or the
projections were reset since its last known position (:mod:`nertz_api.resets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Literal

import asyncpg
import msgspec
from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nertz_api import commands, examples, liveness, queries, resets
from nertz_api.queries import summary
from nertz_common import bus, heartbeat, live_config, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id

if TYPE_CHECKING:
    from nats.js import JetStreamContext

__all__ = ["ApiContext", "ApiError", "ErrorBody", "create_app", "summary"]

log = logging.getLogger("nertz.api.web")

#: a symbol as the client may write it (case-blind); the OpenAPI pattern of every symbol parameter
SYMBOL_PATTERN = r"^[A-Za-z0-9]{2,30}$"
_SYMBOL_RE = re.compile(r"[A-Za-z0-9]{2,30}")  # used with fullmatch: ``$`` would let "BTCUSDT\n" through
MAX_CANDLES = 5000
MAX_BODY_BYTES = 64 * 1024
INT64_MAX = 2**63 - 1
#: the database errors answered 503: unreachable, shutting down or cancelled (57xxx), out of resources (53xxx)
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError, OSError, TimeoutError,
)  # fmt: skip
DATABASE_UNAVAILABLE = "expected the database to answer, it did not (unreachable, shutting down or too slow)"


@dataclass(frozen=True)
class ApiContext:
    """What the endpoints need, built by the composition root and set on ``app.state`` in ``lifespan``.

    Attributes
    ----------
    pool : asyncpg.Pool
        The projection database (read only from here).
    symbols : tuple[str, ...]
        Configured symbols (known even before any row mentions them).
    registry : CollectorRegistry
        The service's metrics registry, served at ``/metrics``.
    publisher : bus.Publisher or None
        Publishes operator commands; None makes ``POST /start``/``/stop`` answer 503.
    token : SecretStr or None
        Bearer token of the mutating endpoints; None disables them (403).
    consumer : str
        The projector's durable consumer (its tracking row).
    max_body_bytes : int
        Largest request body accepted, bytes; a larger one is answered 413 before it is parsed.
    js : JetStreamContext or None
        Reads the heartbeats and the stream's state; None: ``/status`` is degraded (no heartbeats) and
        ``/config``, ``/check_reset`` answer 503.
    read_token : SecretStr or None
        Bearer token of the reads; None or empty: reads are open. The admin token reads too.
    services : tuple[str, ...]
        The services a complete deployment runs (``/status`` is degraded while one is not alive).
    service : str
        This API's own service name (its heartbeat's key).
    paused : callable or None
        Returns why the projector is paused (``database_unavailable``...), None while it runs.
    own : dict or None
        This API's effective settings for ``/config``: ``service``, ``version``, ``config_hash`` and
        ``settings`` (masked).
    stream : str
        The stream ``/check_reset`` looks at.
    """

    pool: asyncpg.Pool
    symbols: tuple[str, ...]
    registry: CollectorRegistry
    publisher: bus.Publisher | None = None
    token: SecretStr | None = None
    consumer: str = "projector"
    max_body_bytes: int = MAX_BODY_BYTES
    js: JetStreamContext | None = None
    read_token: SecretStr | None = None
    services: tuple[str, ...] = liveness.EXPECTED
    service: str = "api"
    paused: Callable[[], str | None] | None = None
    own: dict[str, Any] | None = field(default=None, hash=False)
    stream: str = subjects.STREAM


class ApiError(Exception):
    """An error answered as ``{"error": error, "reason": reason}`` with HTTP ``status``."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.details = details
        self.headers = headers


class JSON(JSONResponse):
    """A JSON response encoded by msgspec (datetimes as RFC 3339, lists from Postgres arrays)."""

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ControlRequest(BaseModel):
    """Body of ``POST /start`` and ``POST /stop``: ``scope`` is ``all`` or a symbol (case-blind)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"scope": "all", "reason": "news at 14:00"}, {"scope": "ETHUSDT"}]},
    )

    scope: str = Field(default="all", pattern=SYMBOL_PATTERN, description="'all' or a symbol", examples=["all"])
    reason: str = Field(
        default="", max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$", description="one line, no control characters"
    )


#: what no body means for ``POST /start`` and ``/stop`` (never mutated)
_NO_BODY = ControlRequest()

_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"


class ConfigUpdate(BaseModel):
    """Body of ``POST /config/update_all``: settings to change while running, by dotted key or nested."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"changes": {"signal.entry_threshold": 9.0, "executor.max_positions": 2}, "reason": "calmer market"},
            {"changes": {"validator": {"rules": {"min_win_rate": 0.3}}}},
        ]},
    )  # fmt: skip

    changes: dict[str, Any] = Field(
        description="new values by key: 'signal.<key>', 'executor.<key>' or 'validator.<key>' (the services' "
        "NERTZ_SIGNAL__..., NERTZ_EXECUTOR__..., NERTZ_VALIDATOR__... settings, lower case, '.' for '__'), or the "
        "same nested as objects; JSON scalars only",
        max_length=200,
    )
    reason: str = Field(default="", max_length=500, pattern=_ONE_LINE, description="one line, shown in the ledger")


class ThresholdsUpdate(BaseModel):
    """Body of ``POST /config/update_thresholds``: the signal's entry thresholds (score units, (0, 10])."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"entry_threshold": 9.0, "entry_threshold_books": 6.0, "reason": "more trades"},
            {"egm_buy_threshold": 9.2, "egm_sell_threshold": -9.2},
            {"entry_thresholds": {"egm+ild+rol+pio+ogm": 6.2}},
        ]},
    )  # fmt: skip

    entry_threshold: float | None = Field(default=None, gt=0, le=10, description="bars-only scores (EGM, PIO)")
    entry_threshold_books: float | None = Field(default=None, gt=0, le=10, description="scores with a book factor")
    entry_thresholds: dict[str, Annotated[float, Field(gt=0, le=10)]] | None = Field(
        default=None, max_length=32, description="by exact factor set, e.g. 'egm+ild+rol+pio+ogm'"
    )
    egm_buy_threshold: float | None = Field(
        default=None, gt=0, le=10, description="the original engine's name of entry_threshold (longs)"
    )
    egm_sell_threshold: float | None = Field(
        default=None, ge=-10, lt=0, description="the original engine's short threshold: -egm_buy_threshold"
    )
    reason: str = Field(default="", max_length=500, pattern=_ONE_LINE, description="one line, shown in the ledger")


class TradeRequest(BaseModel):
    """Body of ``POST /execute_trade/{symbol}``: the side (default: the signal's combined score decides)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"side": "Buy", "reason": "breakout"}, {}]}
    )

    side: Literal["Buy", "Sell", "long", "short"] | None = Field(
        default=None, description="Buy/long or Sell/short; none: the direction of the latest combined score"
    )
    reason: str = Field(default="", max_length=500, pattern=_ONE_LINE, description="one line, shown in the ledger")


_NO_TRADE_BODY = TradeRequest()


class NewsRequest(BaseModel):
    """Body of ``POST /news/{symbol}``: why (optional)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "before the FOMC"}, {}]})

    reason: str = Field(default="", max_length=500, pattern=_ONE_LINE, description="one line, shown in the ledger")


_NO_NEWS_BODY = NewsRequest()


class BodyLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes`` (by ``Content-Length`` or as it streams).

    The body is buffered (at most ``max_bytes``) and replayed to ``app``, so nothing downstream reads an
    unbounded body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._refuse(f"was {int(declared)} (Content-Length)", scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # a disconnect: let the app see it
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await self._refuse(f"was more than {self._max}", scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [first or {"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self._app(scope, replayed, send)

    async def _refuse(self, was: str, scope: Scope, receive: Receive, send: Send) -> None:
        reason = f"expected a request body of at most {self._max} bytes, {was}"
        await _error(413, "payload_too_large", reason, headers={"Connection": "close"})(scope, receive, send)


class _Asgi:
    """Wrap an ASGI callable so that Starlette routes to it as an app (not as a request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _printable(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate cannot be encoded


def _error(status: int, error: str, reason: str, headers: Mapping[str, str] | None = None, **extra: Any) -> JSON:
    return JSON({"error": error, "reason": _printable(reason), **extra}, status_code=status, headers=headers)


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[ApiContext, Depends(_ctx)]


def _normalise(symbol: str) -> str:
    if not _SYMBOL_RE.fullmatch(symbol):
        raise ApiError(422, "invalid_symbol", f"expected a symbol of 2-30 letters and digits (BTCUSDT), was {symbol!r}")
    return symbol.upper()


_SymbolParam = Annotated[
    str,
    Path(description="2-30 letters and digits, case-blind", examples=["BTCUSDT"], json_schema_extra={
        "pattern": SYMBOL_PATTERN}),  # validated by _normalise, so that a bad one is 422 invalid_symbol
]  # fmt: skip


async def _symbol(symbol: _SymbolParam, ctx: Ctx) -> str:
    s = _normalise(symbol)
    if not await queries.is_known(ctx.pool, s, ctx.symbols):
        raise ApiError(
            404, "unknown_symbol", f"expected a configured symbol ({', '.join(ctx.symbols)}) or one on the log, was {s}"
        )
    return s


Symbol = Annotated[str, Depends(_symbol)]
_bearer = HTTPBearer(auto_error=False, description="NERTZ_API__TOKEN")


def _auth_problem(token: SecretStr | None, given: str) -> ApiError | None:
    """The refusal of a mutating request carrying the bearer token ``given`` ("" for none), or None."""
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        return ApiError(403, "disabled", "mutating endpoints are disabled: set NERTZ_API__TOKEN to enable them")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        return ApiError(
            401, "unauthorized", "expected the header 'Authorization: Bearer <NERTZ_API__TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return None


async def _authorized(ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    problem = _auth_problem(ctx.token, credentials.credentials if credentials is not None else "")
    if problem is not None:
        raise problem


_bearer_read = HTTPBearer(
    auto_error=False, scheme_name="ReadToken", description="NERTZ_API__READ_TOKEN (or NERTZ_API__TOKEN)"
)
READ_UNAUTHORIZED = "expected the header 'Authorization: Bearer <NERTZ_API__READ_TOKEN or NERTZ_API__TOKEN>'"


def _secret(token: SecretStr | None) -> str:
    return token.get_secret_value() if token is not None else ""


def _read_problem(read_token: SecretStr | None, token: SecretStr | None, given: str) -> ApiError | None:
    """The refusal of a read carrying the bearer token ``given`` ("" for none), or None (reads are open
    without a read token; the admin token reads too)."""
    expected = _secret(read_token)
    if not expected:
        return None
    admin = _secret(token)
    if secrets.compare_digest(given.encode(), expected.encode()) or (
        admin and secrets.compare_digest(given.encode(), admin.encode())
    ):
        return None
    return ApiError(401, "unauthorized", READ_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


async def _readable(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_read)]
) -> None:
    problem = _read_problem(ctx.read_token, ctx.token, credentials.credentials if credentials is not None else "")
    if problem is not None:
        raise problem


def _guarded_by(route: Any, guard: Callable[..., Any]) -> bool:
    return any(d.call is guard for d in getattr(getattr(route, "dependant", None), "dependencies", ()))


class AuthFirst:
    """Refuse an unauthorized request to a guarded endpoint before its body or parameters are looked at.

    FastAPI parses a JSON body before it solves a route's dependencies, so without this a caller
    without the token would learn from a 422 what the body should be; here every such request to a
    mutating endpoint is a 401 (or 403 when the endpoints are disabled), whatever its body, and every
    read without the read token (when one is set) a 401, before its symbol is even looked up.
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None, read_token: SecretStr | None = None) -> None:
        self._app = app
        self._token = token
        self._read_token = read_token
        self._protected: list[Any] | None = None
        self._reads: list[Any] = []

    def _routes(self, app: Any) -> list[Any]:
        if self._protected is None:
            routes = getattr(app, "routes", ())
            self._protected = [r for r in routes if _guarded_by(r, _authorized)]
            self._reads = [r for r in routes if _guarded_by(r, _readable)]
        return self._protected

    def _problem(self, scope: Scope, given: str) -> ApiError | None:
        # matched as the router matches (a path with parameters, /execute_trade/{symbol}, included)
        if any(r.matches(scope)[0] is Match.FULL for r in self._routes(scope.get("app"))):
            return _auth_problem(self._token, given)
        if any(r.matches(scope)[0] is Match.FULL for r in self._reads):
            return _read_problem(self._read_token, self._token, given)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
            kind, _, given = header.partition(" ")
            problem = self._problem(scope, given.strip() if kind.lower() == "bearer" else "")
            if problem is not None:
                await _error(problem.status, problem.error, problem.reason, headers=problem.headers)(
                    scope, receive, send
                )
                return
        await self._app(scope, receive, send)


async def _not_null(request: Request) -> None:
    if (await request.body()).strip() == b"null":
        raise ApiError(
            422, "invalid_body", 'expected no body or a JSON object such as {"scope": "all", "reason": "..."}, was null'
        )


# --- response models: the OpenAPI document of what the endpoints return (never used to validate) -------

Ns = Annotated[int, Field(description="UNIX time, ns")]
Usdt = Annotated[float, Field(description="USDT")]
LockState = Literal["FLAT", "ENTRY_PENDING", "LOCKED", "COOLDOWN"]


class _Out(BaseModel):
    """A response body; ``*_ns`` are UNIX nanoseconds, times RFC 3339, prices and P&L in USDT."""


class ErrorDetail(_Out):
    """One field that failed validation."""

    loc: list[str] = Field(description="where: body, path or query, then the field")
    msg: str
    type: str


class ErrorBody(_Out):
    """Every error: a stable slug and what was expected and what it was (never exception text)."""

    error: str = Field(
        description="stable code: invalid_symbol, invalid_request, invalid_body, invalid_config, unknown_symbol, "
        "unauthorized, disabled, payload_too_large, not_found, method_not_allowed, database_unavailable, "
        "bus_unavailable"
    )
    reason: str = Field(description="plain English: what was expected, and what it was")
    details: list[ErrorDetail] = Field(
        default_factory=list, description="422 invalid_request and invalid_config: each bad field or setting"
    )


class Health(_Out):
    """``/health``."""

    status: Literal["ok"]
    database: Literal["ok"]


class Projector(_Out):
    """The projector's committed position."""

    consumer: str
    stream_seq: int


class SymbolStatus(_Out):
    """One symbol in ``/status``."""

    lock_state: LockState
    lock_reason: str | None
    lock_since_ns: Ns | None
    last_bar_open_time_ns: Ns | None
    last_bar_open_time: datetime | None
    last_bar_closed: bool | None
    last_price: Usdt | None = Field(description="ticker last price, else the last close; USDT")
    trading_enabled: bool = Field(description="new entries allowed: the operators' switch in force, and no halt")
    halted: bool = Field(
        description="reconciliation halted new entries (a VenueMismatch 'halted'), until a later TradingStarted "
        "for the symbol or for all"
    )
    halt_reason: str | None = Field(description="why, as the latest halting VenueMismatch says; None if not halted")
    halted_since_ns: Ns | None


class LaneOut(_Out):
    """One durable consumer of a service, as its last heartbeat saw it."""

    consumed: int = Field(description="last stream sequence the service consumed")
    acked: int | None = Field(description="the consumer's ack floor on the server; None if unknown")
    pending: int | None = Field(description="messages not delivered yet; None if unknown")


class ServiceStatus(_Out):
    """One service in ``/status``, from its heartbeat (every field None without one)."""

    state: Literal["alive", "stale", "stopped", "missing"] = Field(
        description="alive: beat within 3 intervals; stale: beats stopped without a clean stop; stopped: its "
        "last beat says so; missing: no heartbeat"
    )
    alive: bool
    expected: bool = Field(description="one of the services a complete deployment runs (NERTZ_API__SERVICES)")
    last_beat_ns: Ns | None
    last_beat_age_s: float | None = Field(description="seconds since the last beat (the API's clock)")
    interval_s: float | None = Field(description="seconds between two beats")
    iterations: int | None = Field(description="inputs handled (its runners' steps, else the events it consumed)")
    published: int | None = Field(description="events it published that the stream stored")
    out_seq: int | None = Field(description="stream sequence of its last published event")
    version: str | None
    config_hash: str | None = Field(description="fingerprint of its configuration")
    pid: int | None
    host: str | None
    started_ns: Ns | None
    lanes: dict[str, LaneOut]
    paused: list[str] = Field(description="'<runner>: <reason>' of each runner waiting out an outage")


class Status(_Out):
    """``/status``."""

    trading_enabled: bool
    projector: Projector
    symbols: dict[str, SymbolStatus]
    status: Literal["ok", "degraded"] = Field(description="degraded when any of `reasons` holds")
    reasons: list[str] = Field(
        description="a service missing, stale or stopped, a runner or the projector paused, heartbeats unreadable"
    )
    services: dict[str, ServiceStatus] = Field(description="by service name: the expected ones and any that beats")


class OwnConfig(_Out):
    """The API's own effective settings."""

    service: str
    version: str
    config_hash: str
    settings: dict[str, Any] = Field(description="secrets masked as '***'")


class ServiceConfig(_Out):
    """A service's effective settings, from its last heartbeat."""

    state: Literal["alive", "stale", "stopped", "missing"]
    last_beat_ns: Ns
    version: str
    config_hash: str
    settings: dict[str, Any] = Field(description="secrets masked as '***'")


class ConfigOut(_Out):
    """``/config``."""

    api: OwnConfig | None = Field(description="this API's settings (None when it runs without them)")
    services: dict[str, ServiceConfig] = Field(description="by service name, every service with a heartbeat")
    unavailable: str | None = Field(description="why the heartbeats could not be read; None when they were")


class LogPosition(_Out):
    """The log (the ``NERTZ`` stream) now."""

    stream: str
    exists: bool
    first_seq: int
    last_seq: int
    messages: int
    created_ns: Ns | None = Field(description="when the stream was created (pass it back as log_created_ns)")
    created: datetime | None
    reset: bool
    missed: int = Field(description="messages after `seq` that retention dropped (not a reset)")


class ProjectionsPosition(_Out):
    """The projections now."""

    consumer: str
    stream_seq: int = Field(description="the projector's tracked sequence")
    created_ns: Ns | None = Field(description="the first migration's time (pass it back as projections_created_ns)")
    created: datetime | None
    reset: bool


class CheckReset(_Out):
    """``/check_reset``."""

    reset: bool = Field(description="the log or the projections were reset since `seq`")
    reason: str | None = Field(description="why, each reason separated by '; '; None when not reset")
    seq: int = Field(description="the position asked about")
    log: LogPosition
    projections: ProjectionsPosition


class Performance(_Out):
    """Counts and P&L of a symbol or of all symbols (see :func:`nertz_api.queries.profit`)."""

    bars: int
    intents: int
    approved: int
    rejected: int
    suppressed: int
    risk_denied: int
    fees_usdt: Usdt
    round_trips: int
    wins: int
    losses: int
    win_rate: float = Field(description="fraction; 0.0 without round trips")
    pnl_usdt: Usdt
    max_drawdown: Usdt


class Profit(_Out):
    """``/profit``."""

    overall: Performance
    symbols: dict[str, Performance]


class RoundTrip(_Out):
    """A closed position with its realized P&L (net of fees)."""

    event_id: str
    position_id: str
    correlation_id: str
    side: str
    qty: float
    entry_price: Usdt
    exit_price: Usdt
    exit_reason: str
    realized_pnl_usdt: Usdt
    fee_usdt: Usdt
    return_fraction: float
    holding_ns: int
    opened_ns: Ns
    closed_ns: Ns
    opened_at: datetime
    closed_at: datetime


class OpenPosition(_Out):
    """A position still open."""

    position_id: str
    correlation_id: str
    side: str
    qty: float
    entry_price: Usdt
    take_profit: Usdt | None
    stop_loss: Usdt | None
    opened_ns: Ns
    opened_at: datetime


class Trades(_Out):
    """``/trades/{symbol}``."""

    symbol: str
    trades: list[RoundTrip]
    open_positions: list[OpenPosition]


class Candle(_Out):
    """One bar."""

    open_time_ns: Ns
    open_time: datetime
    open: Usdt
    high: Usdt
    low: Usdt
    close: Usdt
    volume: float
    turnover: float | None
    closed: bool


class Candles(_Out):
    """``/candles/{symbol}/{limit}``; ``interval`` is None when the symbol has no bar yet."""

    symbol: str
    interval: str | None
    candles: list[Candle]


class Factors(_Out):
    """The latest factor snapshot."""

    event_id: str
    bar_id: str
    interval: str
    ts_event_ns: Ns
    ts: datetime
    close: Usdt
    egm: float | None
    ild: float | None
    rol: float | None
    pio: float | None
    ogm: float | None
    combined: float
    used: list[str]
    ema_fast: float | None
    ema_mid: float | None
    ema_slow: float | None
    trend: str
    atr: float | None
    regime: str
    intent_id: str | None
    veto: str | None


class SymbolCounts(_Out):
    """Decision counts of one symbol; the verdict counts are None before its first verdict."""

    bars: int
    factor_snapshots: int
    vetoed: int
    intents: int
    approved: int | None
    rejected: int | None
    suppressed: int | None
    risk_denied: int | None
    orders_submitted: int
    orders_rejected: int
    entries_expired: int
    orders_accepted: int
    orders_refused: int
    orders_canceled: int
    fills: int
    mismatches: int = Field(description="reconciliation mismatches (VenueMismatch)")
    round_trips: int


class AdaptedWeights(_Out):
    """The decay tracker's weights in force for one bar series (the latest ``WeightsAdapted``)."""

    interval: str
    bar_id: str
    ts_event_ns: Ns
    ts: datetime
    weights: dict[str, float] = Field(description="by factor: configured weight × multiplier; 0 = retired")
    multipliers: dict[str, float]
    accuracy: dict[str, float | None] = Field(
        description="rolling directional accuracy (fraction); null: too few calls"
    )
    calls: dict[str, int]
    retired: list[str]
    reason: str


class SymbolMetrics(_Out):
    """``/metrics/{symbol}``."""

    symbol: str
    factors: Factors | None
    counts: SymbolCounts
    weights: list[AdaptedWeights] = Field(
        default_factory=list, description="per bar series, the decay tracker's weights (empty while it is off)"
    )


class Intent(_Out):
    """An intent as proposed by signal."""

    event_id: str
    correlation_id: str
    causation_id: str
    ts_event_ns: Ns
    ts: datetime
    side: str
    entry_price: Usdt
    take_profit: Usdt
    stop_loss: Usdt
    qty: float
    notional_usdt: Usdt
    leverage: float
    sl_distance: float
    tp_distance: float
    combined: float
    trend: str
    regime: str
    reasons: list[str]


class Verdict(_Out):
    """A validator's verdict on an intent."""

    event_id: str
    ts_event_ns: Ns
    decision: Literal["approve", "reject"]
    confidence: float
    size_multiplier: float
    policy: str
    reasons: list[str]
    risk_flags: list[str]
    model: str | None
    prompt_hash: str | None
    latency_ms: float | None
    tokens_in: int | None
    tokens_out: int | None


class Suppression(_Out):
    """An intent the Hard Lock or a risk rule held back."""

    event_id: str
    kind: Literal["signal_suppressed", "risk_denied"]
    ts_event_ns: Ns
    reason: str
    rule: str | None
    lock_state: str | None
    decision: str | None


class Order(_Out):
    """An order submitted, rejected, expired, or as a real venue answered it: accepted, refused (``reason``
    is Bybit's ``"<retCode> <retMsg>"``) or canceled."""

    event_id: str
    kind: Literal["submitted", "rejected", "expired", "accepted", "refused", "canceled"]
    order_id: str
    ts_event_ns: Ns
    side: str | None
    order_type: str | None
    qty: float | None
    price_ref: Usdt | None
    take_profit: Usdt | None
    stop_loss: Usdt | None
    reduce_only: bool | None
    venue_name: str | None
    reason: str | None
    venue_order_id: str | None = Field(description="the venue's order id (Bybit orderId)")
    ret_code: int | None = Field(description="refused: Bybit's retCode")
    filled_qty: float | None = Field(description="canceled: what did fill of it, base currency")


class Fill(_Out):
    """A fill."""

    event_id: str
    order_id: str
    fill_id: str
    ts_event_ns: Ns
    side: str
    qty: float
    price: Usdt
    fee_usdt: Usdt
    liquidity: str
    reduce_only: bool
    venue_order_id: str | None
    leaves_qty: float = Field(description="what the order leaves unfilled after this fill, base currency")
    exit_reason: str | None = Field(description="what triggered an exit fill; None for an entry")


class Position(_Out):
    """A position opened by the intent."""

    position_id: str
    status: Literal["open", "closed"]
    side: str
    qty: float
    entry_price: Usdt
    exit_price: Usdt | None
    exit_reason: str | None
    realized_pnl_usdt: Usdt | None
    opened_ns: Ns
    closed_ns: Ns | None


class Decision(_Out):
    """An intent and everything that followed it (joined by correlation id)."""

    intent: Intent
    verdicts: list[Verdict]
    suppressions: list[Suppression]
    orders: list[Order]
    fills: list[Fill]
    positions: list[Position]


class Decisions(_Out):
    """``/decisions/{symbol}``."""

    symbol: str
    decisions: list[Decision]


class Ticker(_Out):
    """The latest merged ticker."""

    last_price: Usdt | None
    mark_price: Usdt | None
    index_price: Usdt | None
    bid1_price: Usdt | None
    ask1_price: Usdt | None
    funding_rate: float | None
    funding_interval_h: int | None
    next_funding_time_ns: Ns | None
    open_interest: float | None
    turnover_24h: float | None
    volume_24h: float | None
    ts_event_ns: Ns
    ts: datetime


class TickerOut(_Out):
    """``/ticker/{symbol}``."""

    symbol: str
    ticker: Ticker | None


class BookTop(_Out):
    """The latest top of book."""

    best_bid: Usdt | None
    best_bid_qty: float | None
    best_ask: Usdt | None
    best_ask_qty: float | None
    mid: Usdt | None
    spread: Usdt | None
    spread_bps: float | None
    depth: int
    update_id: int
    ts_event_ns: Ns
    ts: datetime


class Book(BookTop):
    """The latest book snapshot with its levels."""

    bids: list[list[float]] = Field(description="[[price, qty], ...], best first")
    asks: list[list[float]] = Field(description="[[price, qty], ...], best first")


class OrderbookOut(_Out):
    """``/orderbook/{symbol}``."""

    symbol: str
    book: Book | None


class Instrument(_Out):
    """Trading rules of the symbol."""

    tick_size: float
    qty_step: float
    min_order_qty: float
    max_leverage: float | None
    ts_event_ns: Ns


class Feed(_Out):
    """The latest feed status."""

    kind: Literal["gap", "resynced", "stale"]
    topic: str
    reason: str | None
    stale_s: float | None
    ts_event_ns: Ns
    ts: datetime


class MarketData(_Out):
    """``/market_data/{symbol}``."""

    symbol: str
    candle: Candle | None
    ticker: Ticker | None
    book: BookTop | None
    instrument: Instrument | None
    feed: Feed | None
    factors: Factors | None


class ModelCalls(_Out):
    """Model calls of one model, role and outcome."""

    model: str
    role: str
    outcome: str
    calls: int
    median_latency_ms: float
    tokens_in: int
    tokens_out: int
    cost_usd: float = Field(description="USD")


class VerdictCount(_Out):
    """Verdicts of one policy and decision."""

    policy: str
    decision: str
    n: int


class Llm(_Out):
    """``/llm``."""

    calls: list[ModelCalls]
    verdicts: list[VerdictCount]
    fail_closed: dict[str, int] = Field(description="fail-closed rejects by reason")
    cost_usd: float = Field(description="USD")


class Override(_Out):
    """A risk override in force."""

    override_id: str
    review_id: str
    symbol: str
    kind: str
    value: float | None
    side: str | None
    from_ns: Ns
    until_ns: Ns
    reason: str


class Review(_Out):
    """A circuit-breaker review."""

    event_id: str
    symbol: str
    ts_event_ns: Ns
    ts: datetime
    trigger: str
    policy: str
    refused: list[str]
    note: str


class Overrides(_Out):
    """``/overrides``."""

    at_ns: Ns
    active: list[Override]
    reviews: list[Review]


class Shadow(_Out):
    """One shadow validator against the live verdicts."""

    shadow: str
    judged: int
    agreed: int
    would_have_traded: int
    would_have_refused: int
    pnl_kept_usdt: Usdt
    pnl_avoided_usdt: Usdt
    agreement: float | None = Field(description="fraction agreed; None before the first judged intent")


class Shadows(_Out):
    """``/shadows``."""

    shadows: list[Shadow]


class VenuePosition(_Out):
    """The latest position a venue reported for a symbol (``side`` None and ``qty`` 0: no position)."""

    venue_name: str
    symbol: str
    source: Literal["stream", "reconcile"] = Field(description="private stream push, or reconciliation look-up")
    side: Literal["long", "short"] | None
    qty: float = Field(description="base currency")
    entry_price: Usdt | None
    mark_price: Usdt | None
    take_profit: Usdt | None
    stop_loss: Usdt | None
    trailing_stop: Usdt | None
    leverage: float | None
    unrealized_pnl_usdt: Usdt
    ts_event_ns: Ns
    ts: datetime


class Wallet(_Out):
    """The latest account a venue reported."""

    venue_name: str
    equity_usdt: Usdt
    wallet_balance_usdt: Usdt
    available_usdt: Usdt | None
    unrealized_pnl_usdt: Usdt
    ts_event_ns: Ns
    ts: datetime


class Halt(_Out):
    """A symbol reconciliation halts: its latest halting mismatch."""

    symbol: str
    venue_name: str
    reason: str
    correlation_id: str
    event_id: str
    ts_event_ns: Ns = Field(description="since when, UNIX ns")
    ts: datetime


class Mismatch(_Out):
    """What reconciliation found the log does not explain, and what the executor did about it."""

    event_id: str
    symbol: str
    venue_name: str
    correlation_id: str
    causation_id: str
    action: Literal["adopted", "halted", "closed"]
    reason: str
    ts_event_ns: Ns
    ts: datetime


class FundingTotal(_Out):
    """Funding of one symbol on one venue."""

    symbol: str
    venue_name: str
    payments: int
    fee_usdt: Usdt = Field(description="sum; > 0 paid by the account, < 0 received")


class FundingPayment(_Out):
    """One funding payment."""

    event_id: str
    fill_id: str
    venue_name: str
    correlation_id: str
    ts_event_ns: Ns
    ts: datetime
    fee_usdt: Usdt = Field(description="> 0 paid by the account, < 0 received")
    rate: float | None = Field(description="funding rate, fraction")
    position_value_usdt: Usdt | None


class VenueOut(_Out):
    """``/venue``: what the real venues last reported, and what reconciliation made of it."""

    positions: list[VenuePosition]
    wallets: list[Wallet] = Field(description="the latest per venue: equity and balance, USDT")
    halted: list[Halt]
    mismatches: list[Mismatch] = Field(description="newest first")
    funding: list[FundingTotal]


class VenueSymbol(_Out):
    """``/venue/{symbol}``."""

    symbol: str
    positions: list[VenuePosition] = Field(description="the latest per venue")
    halt: Halt | None = Field(description="None when reconciliation does not halt the symbol")
    mismatches: list[Mismatch] = Field(description="newest first")
    funding: list[FundingPayment] = Field(description="newest first")
    funding_usdt: Usdt = Field(description="every funding payment of the symbol; > 0 paid by the account")


class Accepted(_Out):
    """``POST /start`` and ``POST /stop``: the command is on the log (applied when services read it)."""

    accepted: Literal[True]
    type: Literal["TradingStarted", "TradingStopped"]
    event_id: str
    stream_seq: int
    scope: str = Field(description="'all' or the symbol")


class ConfigAccepted(_Out):
    """``POST /config/update_all`` and ``/config/update_thresholds``: the change is on the log; each service
    applies its keys where it sits in the log."""

    accepted: Literal[True]
    type: Literal["ConfigChanged"]
    event_id: str
    stream_seq: int
    changes: dict[str, Any] = Field(description="the change as published, by dotted key")


class TradeAccepted(_Out):
    """``POST /execute_trade/{symbol}``: the request is on the log; its intent (if the signal proposes one)
    goes through the validator, the risk guard and the Hard Lock like any other (see ``/decisions``)."""

    accepted: Literal[True]
    type: Literal["ManualTradeRequested"]
    event_id: str
    stream_seq: int
    symbol: str
    side: Literal["Buy", "Sell"] | None


class NewsAccepted(_Out):
    """``POST /news/{symbol}``: the request is on the log; the news analyst (with a DashScope key) asks Qwen,
    with web search, for the symbol's news at that position and publishes ``NewsAssessed``."""

    accepted: Literal[True]
    type: Literal["NewsRequested"]
    event_id: str
    stream_seq: int
    symbol: str


# --- the error responses each endpoint declares ------------------------------------------------------

BUS_UNREADABLE = "expected NATS to answer, it did not (unreachable, too slow, or this API runs without it)"
_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "unauthorized": {
            "error": "unauthorized",
            "reason": "expected the header 'Authorization: Bearer <NERTZ_API__TOKEN>'",
        },
        "read_unauthorized": {"error": "unauthorized", "reason": READ_UNAUTHORIZED},
    },
    403: {
        "disabled": {
            "error": "disabled",
            "reason": "mutating endpoints are disabled: set NERTZ_API__TOKEN to enable them",
        }
    },
    404: {
        "unknown_symbol": {
            "error": "unknown_symbol",
            "reason": "expected a configured symbol (BTCUSDT, ETHUSDT) or one on the log, was XYZUSDT",
        }
    },
    413: {
        "payload_too_large": {
            "error": "payload_too_large",
            "reason": "expected a request body of at most 65536 bytes, was 70000 (Content-Length)",
        }
    },
    422: {
        "invalid_symbol": {
            "error": "invalid_symbol",
            "reason": "expected a symbol of 2-30 letters and digits (BTCUSDT), was 'BTC-USDT'",
        },
        "invalid_request": {
            "error": "invalid_request",
            "reason": "path.limit: Input should be less than or equal to 5000",
            "details": [
                {
                    "loc": ["path", "limit"],
                    "msg": "Input should be less than or equal to 5000",
                    "type": "less_than_equal",
                }
            ],
        },
        "invalid_body": {
            "error": "invalid_body",
            "reason": 'expected no body or a JSON object such as {"scope": "all", "reason": "..."}, was null',
        },
        "invalid_config": {
            "error": "invalid_config",
            "reason": "2 bad setting(s), nothing was published: signal.ema_fast: shapes state built from the log: set "
            "it in the environment and restart the service; executor.max_positions: Input should be greater than "
            "or equal to 1",
            "details": [
                {
                    "loc": ["body", "changes", "signal.ema_fast"],
                    "type": "config",
                    "msg": "shapes state built from the log: set it in the environment and restart the service",
                },
                {
                    "loc": ["body", "changes", "executor.max_positions"],
                    "type": "config",
                    "msg": "Input should be greater than or equal to 1",
                },
            ],
        },
    },
    503: {
        "database_unavailable": {"error": "database_unavailable", "reason": DATABASE_UNAVAILABLE},
        "bus_unavailable": {
            "error": "bus_unavailable",
            "reason": "expected the log to store the command, it did not (NATS unreachable or not acknowledging)",
        },
        "bus_unreadable": {"error": "bus_unavailable", "reason": BUS_UNREADABLE},
    },
}
_DESCRIPTIONS = {
    401: "Missing or wrong bearer token",
    403: "Mutating endpoints disabled (no NERTZ_API__TOKEN)",
    404: "Unknown symbol (not configured, never on the log)",
    413: "Request body too large",
    422: "Invalid symbol, parameter or body",
    503: "Database (or, for commands, the bus) unavailable",
}


def _errors(*codes: int, only: tuple[str, ...] = ()) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        examples = {k: {"value": v} for k, v in _EXAMPLES[code].items() if not only or k in only}
        out[code] = {
            "model": ErrorBody,
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"examples": examples}},
        }
    return out


_READ = _errors(503, only=("database_unavailable",))
_QUERY = _errors(422, 503, only=("invalid_request", "database_unavailable"))
_PER_SYMBOL = _errors(404, 422, 503, only=("unknown_symbol", "invalid_symbol", "invalid_request",
                                           "database_unavailable"))  # fmt: skip
_CONFIG_COMMAND = _errors(401, 403, 413, 422, 503, only=("unauthorized", "disabled", "payload_too_large",
                          "invalid_config", "invalid_request", "invalid_body", "database_unavailable",
                          "bus_unavailable"))  # fmt: skip
_COMMAND = _errors(401, 403, 404, 413, 422, 503, only=("unauthorized", "disabled", "unknown_symbol",
                   "payload_too_large", "invalid_symbol", "invalid_request", "invalid_body", "database_unavailable",
                   "bus_unavailable"))  # fmt: skip
_CONFIG = _errors(503, only=("bus_unreadable",))
_CHECK = _errors(422, 503, only=("invalid_request", "database_unavailable", "bus_unreadable"))
#: what a read answers without the read token, when one is set
_READ_AUTH = _errors(401, only=("read_unauthorized",))

_T = 1_748_624_940_000_000_000  # 2025-05-30T17:09:00Z, the examples' "now"
_SERVICE_EXAMPLE: dict[str, Any] = {
    "state": "alive", "alive": True, "expected": True, "last_beat_ns": _T, "last_beat_age_s": 1.204,
    "interval_s": 5.0, "iterations": 43_200, "published": 43_251, "out_seq": 130_007,
    "version": "0.1.0+g1a2b3c4d5e", "config_hash": "3f9a1c07d2e4", "pid": 4242, "host": "nertz-vm",
    "started_ns": _T - 86_400 * 10**9, "lanes": {"signal": {"consumed": 130_005, "acked": 130_005, "pending": 0}},
    "paused": [],
}  # fmt: skip
# fmt: off
_STATUS_EXAMPLES = {
    "degraded": {
        "summary": "the executor stopped beating",
        "value": {
            "trading_enabled": True,
            "projector": {"consumer": "projector", "stream_seq": 130_007},
            "symbols": {},
            "status": "degraded",
            "reasons": ["executor: stale: last beat 42.0 s ago, expected every 5 s"],
            "services": {
                "signal": _SERVICE_EXAMPLE,
                "executor": {**_SERVICE_EXAMPLE, "state": "stale", "alive": False, "last_beat_age_s": 42.0,
                             "lanes": {}},
            },
        },
    }
}
_CONFIG_EXAMPLES = {
    "config": {
        "summary": "the api and the signal service",
        "value": {
            "api": {
                "service": "api", "version": "0.1.0+g1a2b3c4d5e", "config_hash": "9b0e5d11aa20",
                "settings": {"nats_url": "nats://nertz:***@nats:4222", "database_url": "***",
                             "symbols": ["BTCUSDT", "ETHUSDT"], "api": {"port": 8081, "token": "***"}},
            },
            "services": {
                "signal": {
                    "state": "alive", "last_beat_ns": _T, "version": "0.1.0+g1a2b3c4d5e",
                    "config_hash": "3f9a1c07d2e4",
                    "settings": {"symbols": ["BTCUSDT", "ETHUSDT"], "signal": {"entry_threshold": 9.5}},
                }
            },
            "unavailable": None,
        },
    }
}
_CHECK_EXAMPLES = {
    "unchanged": {
        "summary": "nothing was reset since seq 120000",
        "value": {
            "reset": False, "reason": None, "seq": 120_000,
            "log": {"stream": "NERTZ", "exists": True, "first_seq": 1, "last_seq": 130_007, "messages": 130_007,
                    "created_ns": _T - 86_400 * 10**9, "created": "2025-05-29T17:09:00Z", "reset": False,
                    "missed": 0},
            "projections": {"consumer": "projector", "stream_seq": 130_007, "created_ns": _T - 86_000 * 10**9,
                            "created": "2025-05-29T17:15:40Z", "reset": False},
        },
    },
    "recreated": {
        "summary": "the log was recreated under the client",
        "value": {
            "reset": True,
            "reason": "the log ends at 12, before your position 120000: it was recreated or purged; the "
            "projections track 12, below your position 120000: they were rebuilt",
            "seq": 120_000,
            "log": {"stream": "NERTZ", "exists": True, "first_seq": 1, "last_seq": 12, "messages": 12,
                    "created_ns": _T, "created": "2025-05-30T17:09:00Z", "reset": True, "missed": 0},
            "projections": {"consumer": "projector", "stream_seq": 12, "created_ns": _T,
                            "created": "2025-05-30T17:09:00Z", "reset": True},
        },
    },
}
# fmt: on


def _ok(examples: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's examples of a route (put in again as written by ``create_app``'s OpenAPI)."""
    return {200: {"content": {"application/json": {"examples": examples}}}}


#: the hand-written 200 examples by path (the others are recorded answers, :mod:`nertz_api.examples`)
_WRITTEN_EXAMPLES: dict[str, dict[str, Any]] = {
    "/status": _STATUS_EXAMPLES,
    "/config": _CONFIG_EXAMPLES,
    "/check_reset": _CHECK_EXAMPLES,
}


class HttpMetrics:
    """Request counts and latencies by route template (``nertz_api_http_*``)."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "nertz_api") -> None:
        self.requests = Counter(
            f"{prefix}_http_requests_total",
            "HTTP requests, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"{prefix}_http_request_seconds", "HTTP request latency, by route template", ["route"], registry=registry
        )


#: how long /status and /config wait for the heartbeats, s (a status page answers even while NATS is down)
HEARTBEATS_TIMEOUT_S = 1.0
_NO_BUCKET = f"the bucket {heartbeat.BUCKET} does not exist (run `nertz streams apply`)"


async def _heartbeats(ctx: ApiContext, route: str) -> tuple[dict[str, heartbeat.Heartbeat], str | None]:
    """The services' heartbeats, or none and why they could not be read."""
    import nats.js.errors

    if ctx.js is None:
        return {}, "this API runs without NATS"
    try:
        return await heartbeat.read_all(ctx.js, timeout_s=HEARTBEATS_TIMEOUT_S), None
    except nats.js.errors.BucketNotFoundError:
        return {}, _NO_BUCKET
    except Exception as e:  # NATS down or slow: the status page still answers
        log.warning("http.heartbeats_unreadable", extra={"error": repr(e)[:300], "route": route})
        return {}, "NATS did not answer"


async def _log_position(ctx: ApiContext) -> dict[str, Any]:
    import nats.js.errors

    if ctx.js is None:
        raise ApiError(503, "bus_unavailable", BUS_UNREADABLE)
    try:
        info = await asyncio.wait_for(ctx.js.stream_info(ctx.stream), 2.0)
    except nats.js.errors.NotFoundError:
        return {"stream": ctx.stream, "exists": False, "first_seq": 0, "last_seq": 0, "messages": 0,
                "created_ns": None, "created": None}  # fmt: skip
    except Exception as e:
        log.warning("http.bus_unavailable", extra={"error": repr(e)[:300], "route": "/check_reset"})
        raise ApiError(503, "bus_unavailable", BUS_UNREADABLE) from e
    st = info.state
    return {"stream": ctx.stream, "exists": True, "first_seq": st.first_seq, "last_seq": st.last_seq,
            "messages": st.messages, "created_ns": resets.ns_of(info.created), "created": info.created}  # fmt: skip


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the FastAPI app; ``ctx`` is put on ``app.state`` by its lifespan.

    Parameters
    ----------
    ctx : ApiContext
        Pool, configured symbols, metrics registry, publisher, token and body limit (see :class:`ApiContext`).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = ctx
        yield

    app = FastAPI(
        title="Nertz API",
        description="Projections of the Nertz event log: market data, factors, decisions, trades and P&L, and what "
        "the venue reports.",
        version="1",
        lifespan=lifespan,
        default_response_class=JSON,
        separate_input_output_schemas=False,  # a field with a default is optional in a response schema too
    )
    _install_errors(app)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:  # every operation's answer has an example (recorded, nertz_api.examples)
        if app.openapi_schema is None:
            doc = plain_openapi()
            # FastAPI drops the None values of examples: the hand-written ones go in as written
            for path, written in _WRITTEN_EXAMPLES.items():
                doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["examples"] = written
            app.openapi_schema = examples.with_examples(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=ctx.max_body_bytes)
    # outermost: no body is read, no parameter looked at, for a caller without the token
    app.add_middleware(AuthFirst, token=ctx.token, read_token=ctx.read_token)
    metrics = HttpMetrics(ctx.registry)
    guarded = bool(_secret(ctx.read_token))

    def get(path: str, *, responses: dict[int | str, dict[str, Any]], **kw: Any) -> Callable[[Any], Any]:
        """``app.get`` of a read: behind the read token when one is set."""
        if not guarded:
            return app.get(path, responses=responses, **kw)
        return app.get(path, responses={**responses, **_READ_AUTH}, dependencies=[Depends(_readable)], **kw)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route=route, method=request.method, status=str(response.status_code)).inc()
        metrics.seconds.labels(route=route).observe(time.perf_counter() - t0)
        return response

    app.router.routes.append(Route("/metrics", _Asgi(make_asgi_app(ctx.registry)), methods=["GET"]))

    @app.get("/health", summary="Database reachable", response_model=Health, responses=_READ)
    async def health(ctx: Ctx) -> JSON:
        try:
            await ctx.pool.fetchval("SELECT 1", timeout=2)
        except Exception as e:
            log.warning("http.database_unavailable", extra={"error": repr(e)[:300], "route": "/health"})
            return _error(503, "database_unavailable", DATABASE_UNAVAILABLE)
        return JSON({"status": "ok", "database": "ok"})

    @get(
        "/status", summary="Projector position, trading switch, per symbol lock, last bar, price and halt; per "
        "service heartbeat; ok or degraded, and why", response_model=Status,
        responses={**_READ, **_ok(_STATUS_EXAMPLES)},
    )  # fmt: skip
    async def status(ctx: Ctx) -> JSON:
        body = await queries.status(ctx.pool, ctx.symbols, ctx.consumer)
        beats, unreadable = await _heartbeats(ctx, "/status")
        paused = ctx.paused() if ctx.paused is not None else None
        liveness_ = liveness.assess(
            beats, time.time_ns(), ctx.services, unreadable=unreadable, paused=paused, own=ctx.service
        )
        return JSON({**body, **liveness_})

    @get(
        "/config", summary="Every service's effective settings from its heartbeat, and the API's own (secrets "
        "masked)", response_model=ConfigOut, responses={**_CONFIG, **_ok(_CONFIG_EXAMPLES)},
    )  # fmt: skip
    async def config(ctx: Ctx) -> JSON:
        if ctx.js is None:
            raise ApiError(503, "bus_unavailable", BUS_UNREADABLE)
        beats, unreadable = await _heartbeats(ctx, "/config")
        if unreadable is not None and unreadable != _NO_BUCKET:
            raise ApiError(503, "bus_unavailable", BUS_UNREADABLE)
        return JSON({"api": ctx.own, "services": liveness.configs(beats, time.time_ns()), "unavailable": unreadable})

    @get(
        "/check_reset", summary="Whether the log or the projections were reset since your last known position",
        response_model=CheckReset, responses={**_CHECK, **_ok(_CHECK_EXAMPLES)},
    )  # fmt: skip
    async def check_reset(
        ctx: Ctx,
        seq: Annotated[int, Query(ge=0, le=INT64_MAX, description="the projector's stream_seq you last read "
                                  "(/status or this answer)", examples=[120_000])] = 0,
        log_created_ns: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="log.created_ns of your "
                                                    "last answer, UNIX ns")] = None,
        projections_created_ns: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="projections."
                                                            "created_ns of your last answer, UNIX ns")] = None,
    ) -> JSON:  # fmt: skip
        tracked = await queries.tracked_seq(ctx.pool, ctx.consumer)
        created = await queries.projections_created(ctx.pool)
        projections = {"consumer": ctx.consumer, "stream_seq": tracked, "created_ns": resets.ns_of(created),
                       "created": created}  # fmt: skip
        return JSON(resets.check(seq, await _log_position(ctx), projections, log_created_ns, projections_created_ns))

    @get(
        "/profit", summary="Performance overall and per symbol (P&L in USDT, drawdown on realized P&L)",
        response_model=Profit, responses=_READ,
    )  # fmt: skip
    async def profit(ctx: Ctx) -> JSON:
        return JSON(await queries.profit(ctx.pool, ctx.symbols))

    @get(
        "/trades/{symbol}", summary="Round trips (newest first) and open positions", response_model=Trades,
        responses=_PER_SYMBOL,
    )  # fmt: skip
    async def trades(ctx: Ctx, symbol: Symbol, limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 100) -> JSON:
        return JSON(
            {
                "symbol": symbol,
                "trades": await queries.trades(ctx.pool, symbol, limit),
                "open_positions": await queries.open_positions(ctx.pool, symbol),
            }
        )

    @get(
        "/candles/{symbol}/{limit}", summary="The last `limit` candles (1..5000), oldest first",
        response_model=Candles, responses=_PER_SYMBOL,
    )  # fmt: skip
    async def candles(
        ctx: Ctx,
        symbol: Symbol,
        limit: Annotated[int, Path(ge=1, le=MAX_CANDLES, description="number of candles, 1..5000")],
        interval: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{1,6}$", description="Bybit interval")] = None,
    ) -> JSON:
        return JSON(await queries.candles(ctx.pool, symbol, limit, interval))

    @get(
        "/metrics/{symbol}", summary="Latest factor snapshot and decision counts", response_model=SymbolMetrics,
        responses=_PER_SYMBOL,
    )  # fmt: skip
    async def symbol_metrics(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON(await queries.symbol_metrics(ctx.pool, symbol))

    @get(
        "/decisions/{symbol}", summary="Intents → verdicts → suppressions → orders → fills, newest first",
        response_model=Decisions, responses=_PER_SYMBOL,
    )  # fmt: skip
    async def decisions(ctx: Ctx, symbol: Symbol, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JSON:
        return JSON({"symbol": symbol, "decisions": await queries.decisions(ctx.pool, symbol, limit)})

    @get(
        "/ticker/{symbol}", summary="Latest ticker (null before the first)", response_model=TickerOut,
        responses=_PER_SYMBOL,
    )  # fmt: skip
    async def ticker(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON({"symbol": symbol, "ticker": await queries.ticker(ctx.pool, symbol)})

    @get(
        "/orderbook/{symbol}", summary="Latest book snapshot (null before the first)", response_model=OrderbookOut,
        responses=_PER_SYMBOL,
    )  # fmt: skip
    async def orderbook(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON({"symbol": symbol, "book": await queries.orderbook(ctx.pool, symbol)})

    @get(
        "/market_data/{symbol}", summary="Last candle, ticker, top of book, instrument, feed status, factors",
        response_model=MarketData, responses=_PER_SYMBOL,
    )  # fmt: skip
    async def market_data(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON(await queries.market_data(ctx.pool, symbol))

    @get(
        "/llm", summary="Model calls by model, role and outcome (latency, tokens, cost); verdicts; fail-closed",
        response_model=Llm, responses=_READ,
    )  # fmt: skip
    async def llm(ctx: Ctx) -> JSON:
        return JSON(await queries.llm(ctx.pool))

    @get(
        "/overrides", summary="Circuit-breaker reviews (newest first) and the risk overrides in force",
        response_model=Overrides, responses=_PER_SYMBOL,
    )  # fmt: skip
    async def overrides(
        ctx: Ctx,
        symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="case-blind")] = None,
        at_ns: Annotated[
            int | None, Query(ge=0, le=INT64_MAX, description="UNIX ns; default: the latest bar's time")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> JSON:
        sym = await _symbol(symbol, ctx) if symbol is not None else None
        return JSON(await queries.overrides(ctx.pool, sym, at_ns, limit))

    @get(
        "/shadows", summary="Per shadow validator: agreement with the live verdicts and what it would have earned",
        response_model=Shadows, responses=_READ,
    )  # fmt: skip
    async def shadows(ctx: Ctx) -> JSON:
        return JSON({"shadows": await queries.shadows(ctx.pool)})

    @get(
        "/venue", summary="What the venues last reported: positions, wallet equity, halts, recent mismatches, funding",
        response_model=VenueOut, responses=_QUERY,
    )  # fmt: skip
    async def venue(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000, description="mismatches")] = 50) -> JSON:
        return JSON(await queries.venue(ctx.pool, limit))

    @get(
        "/venue/{symbol}", summary="A symbol's venue positions, halt and its reason, mismatches and funding",
        response_model=VenueSymbol, responses=_PER_SYMBOL,
    )  # fmt: skip
    async def venue_symbol(
        ctx: Ctx, symbol: Symbol, limit: Annotated[int, Query(ge=1, le=1000, description="mismatches, payments")] = 50
    ) -> JSON:
        return JSON(await queries.venue_symbol(ctx.pool, symbol, limit))

    def publisher(ctx: ApiContext) -> bus.Publisher:
        if ctx.publisher is None:
            raise ApiError(503, "bus_unavailable", "expected a NATS publisher, this API runs without one")
        return ctx.publisher

    async def publish(ctx: ApiContext, event: ev.SystemEvent) -> int:
        try:
            seq = await publisher(ctx).publish(event)
        except bus.PublishError as e:
            log.warning(
                "control.unpublished",
                extra={"type": type(event).__name__, "scope": event.scope, "error": repr(e)[:300]},
            )
            raise ApiError(503, "bus_unavailable", _EXAMPLES[503]["bus_unavailable"]["reason"]) from e
        log.info(
            "control.published", extra={"type": type(event).__name__, "scope": event.scope, "event_id": event.event_id}
        )
        return seq

    async def per_symbol(
        ctx: ApiContext, cls: type[ev.SystemEvent], symbol: str, extra: dict[str, Any] | None = None, **fields: Any
    ) -> JSON:
        """Publish one command about ``symbol`` (its scope) and answer 202 with where it is on the log."""
        publisher(ctx)
        now = time.time_ns()  # an operator command: its time is when the operator gave it
        event = cls(event_id=derive_id(cls.__name__, symbol, now), ts_event=now, ts_init=now, scope=symbol, **fields)
        seq = await publish(ctx, event)
        return JSON(
            {"accepted": True, "type": cls.__name__, "event_id": event.event_id, "stream_seq": seq, "symbol": symbol,
             **(extra or {})},
            status_code=202,
        )  # fmt: skip

    async def command(ctx: ApiContext, cls: type[ev.TradingStarted | ev.TradingStopped], body: ControlRequest) -> JSON:
        scope = "all" if body.scope.lower() == "all" else _normalise(body.scope)
        if scope != "all" and not await queries.is_known(ctx.pool, scope, ctx.symbols):
            raise ApiError(404, "unknown_symbol", f"expected scope 'all' or a known symbol, was {scope}")
        publisher(ctx)
        now = time.time_ns()  # an operator command: its time is when the operator gave it
        fields: dict[str, Any] = {"scope": scope, "actor": "api"}
        if cls is ev.TradingStopped:
            fields["reason"] = body.reason
        event = cls(event_id=derive_id(cls.__name__, scope, now), ts_event=now, ts_init=now, **fields)
        seq = await publish(ctx, event)
        return JSON(
            {"accepted": True, "type": cls.__name__, "event_id": event.event_id, "stream_seq": seq, "scope": scope},
            status_code=202,
        )

    async def change_config(ctx: ApiContext, changes: Mapping[str, Any], reason: str) -> JSON:
        publisher(ctx)
        beats, _ = await _heartbeats(ctx, "/config/update")
        try:
            flat = commands.validated(changes, beats, await queries.config_changes(ctx.pool))
        except live_config.ConfigRejected as e:
            details = [{"loc": ["body", "changes", k], "msg": v, "type": "config"} for k, v in e.errors.items()]
            text = "; ".join(f"{k}: {v}" for k, v in e.errors.items())
            raise ApiError(
                422, "invalid_config", f"{len(e.errors)} bad setting(s), nothing was published: {text}", details=details
            ) from None
        now = time.time_ns()
        key = msgspec.json.encode(dict(sorted(flat.items()))).decode()
        event = ev.ConfigChanged(
            event_id=derive_id("ConfigChanged", key, now), ts_event=now, ts_init=now, changes=flat, reason=reason
        )
        seq = await publish(ctx, event)
        return JSON(
            {"accepted": True, "type": "ConfigChanged", "event_id": event.event_id, "stream_seq": seq, "changes": flat},
            status_code=202,
        )

    @app.post(
        "/config/update_all", summary="Publish ConfigChanged: any live setting of signal, executor or validator",
        status_code=202, dependencies=[Depends(_authorized), Depends(_not_null)], response_model=ConfigAccepted,
        responses=_CONFIG_COMMAND,
    )  # fmt: skip
    async def update_all(ctx: Ctx, body: ConfigUpdate) -> JSON:
        return await change_config(ctx, body.changes, body.reason)

    @app.post(
        "/config/update_thresholds", summary="Publish ConfigChanged: the signal's entry thresholds",
        status_code=202, dependencies=[Depends(_authorized), Depends(_not_null)], response_model=ConfigAccepted,
        responses=_CONFIG_COMMAND,
    )  # fmt: skip
    async def update_thresholds(ctx: Ctx, body: ThresholdsUpdate) -> JSON:
        try:
            changes = commands.thresholds(
                body.entry_threshold, body.entry_threshold_books, body.entry_thresholds, body.egm_buy_threshold,
                body.egm_sell_threshold,
            )  # fmt: skip
        except live_config.ConfigRejected as e:
            details = [{"loc": ["body", k], "msg": v, "type": "config"} for k, v in e.errors.items()]
            raise ApiError(422, "invalid_config", "; ".join(f"{k}: {v}" for k, v in e.errors.items()),
                           details=details) from None  # fmt: skip
        return await change_config(ctx, changes, body.reason)

    @app.post(
        "/execute_trade/{symbol}", summary="Publish ManualTradeRequested: the signal evaluates the symbol now",
        status_code=202, dependencies=[Depends(_authorized), Depends(_not_null)], response_model=TradeAccepted,
        responses=_COMMAND,
    )  # fmt: skip
    async def execute_trade(ctx: Ctx, symbol: Symbol, body: Annotated[TradeRequest, Body()] = _NO_TRADE_BODY) -> JSON:
        sides: dict[str | None, ev.OrderSide | None] = {"Buy": "Buy", "long": "Buy", "Sell": "Sell", "short": "Sell"}
        side = sides.get(body.side)
        return await per_symbol(ctx, ev.ManualTradeRequested, symbol, {"side": side}, side=side, reason=body.reason)

    @app.post(
        "/news/{symbol}", summary="Publish NewsRequested: the news analyst asks Qwen for the symbol's news now",
        status_code=202, dependencies=[Depends(_authorized), Depends(_not_null)], response_model=NewsAccepted,
        responses=_COMMAND,
    )  # fmt: skip
    async def request_news(ctx: Ctx, symbol: Symbol, body: Annotated[NewsRequest, Body()] = _NO_NEWS_BODY) -> JSON:
        return await per_symbol(ctx, ev.NewsRequested, symbol, reason=body.reason)

    def control(cls: type[ev.TradingStarted | ev.TradingStopped]) -> Callable[..., Awaitable[JSON]]:
        async def endpoint(ctx: Ctx, body: Annotated[ControlRequest, Body()] = _NO_BODY) -> JSON:
            return await command(ctx, cls, body)

        return endpoint

    for path, cls in (("/start", ev.TradingStarted), ("/stop", ev.TradingStopped)):
        app.add_api_route(
            path, control(cls), methods=["POST"], name=path[1:], status_code=202, summary=f"Publish {cls.__name__}",
            dependencies=[Depends(_authorized), Depends(_not_null)], response_model=Accepted, responses=_COMMAND,
        )  # fmt: skip

    return app


def _install_errors(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if exc.details:
            return _error(exc.status, exc.error, exc.reason, headers=exc.headers, details=exc.details)
        return _error(exc.status, exc.error, exc.reason, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {
                "loc": [_printable(str(p)) for p in e.get("loc", ())],
                "msg": _printable(str(e.get("msg", ""))),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        reason = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details) or "invalid request"
        return _error(422, "invalid_request", reason, details=details)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI could not parse the body (not UTF-8, a broken form): invalid, 422
            return _error(422, "invalid_body", f"expected a JSON body in UTF-8, it could not be parsed ({exc.detail})")
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return _error(exc.status_code, slug, str(exc.detail), headers=exc.headers)

    async def db_down(request: Request, exc: Exception) -> Response:
        log.warning("http.database_unavailable", extra={"error": repr(exc)[:300], "route": request.url.path[:200]})
        return _error(503, "database_unavailable", DATABASE_UNAVAILABLE)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for cls in DATABASE_ERRORS:
        app.add_exception_handler(cls, db_down)
