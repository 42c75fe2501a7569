"""The monitoring API (FastAPI, port 8081): reads Postgres projections only.

Errors are JSON ``{"error": <slug>, "reason": <what was expected and what it was>}``: an unknown symbol
(not configured and never seen on the log) is 404, an invalid value 422 (FastAPI's validation errors are
rendered in the same shape, with ``details``), the database unreachable 503. ``POST /start`` and
``POST /stop`` need the bearer token ``NERTZ_API__TOKEN`` and publish ``TradingStarted`` /
``TradingStopped`` on the log; they never write state themselves (the projector records them when it
reads them back). Prometheus exposition of the service registry is at ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

import asyncpg
import msgspec
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nertz_api import queries
from nertz_api.queries import summary
from nertz_common import bus
from nertz_common import events as ev
from nertz_common.ids import derive_id

__all__ = ["ApiContext", "ApiError", "create_app", "summary"]

log = logging.getLogger("nertz.api.web")

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
MAX_CANDLES = 5000


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
    """

    pool: asyncpg.Pool
    symbols: tuple[str, ...]
    registry: CollectorRegistry
    publisher: bus.Publisher | None = None
    token: SecretStr | None = None
    consumer: str = "projector"


class ApiError(Exception):
    """An error answered as ``{"error": error, "reason": reason}`` with HTTP ``status``."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


class JSON(Response):
    """A JSON response encoded by msgspec (datetimes as RFC 3339, lists from Postgres arrays)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ControlRequest(BaseModel):
    """Body of ``POST /start`` and ``POST /stop``: ``scope`` is ``all`` or a symbol."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(default="all", max_length=30)
    reason: str = Field(default="", max_length=500)


class _Asgi:
    """Wrap an ASGI callable so that Starlette routes to it as an app (not as a request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _error(status: int, error: str, reason: str, **extra: Any) -> JSON:
    return JSON({"error": error, "reason": reason, **extra}, status_code=status)


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[ApiContext, Depends(_ctx)]


def _normalise(symbol: str) -> str:
    s = symbol.upper()
    if not SYMBOL_RE.match(s):
        raise ApiError(422, "invalid_symbol", f"expected a symbol of 2-30 letters and digits (BTCUSDT), was {symbol!r}")
    return s


async def _symbol(symbol: str, ctx: Ctx) -> str:
    s = _normalise(symbol)
    if not await queries.is_known(ctx.pool, s, ctx.symbols):
        raise ApiError(
            404, "unknown_symbol", f"expected a configured symbol ({', '.join(ctx.symbols)}) or one on the log, was {s}"
        )
    return s


Symbol = Annotated[str, Depends(_symbol)]
_bearer = HTTPBearer(auto_error=False, description="NERTZ_API__TOKEN")


async def _authorized(ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = ctx.token.get_secret_value() if ctx.token is not None else ""
    if not expected:
        raise ApiError(403, "disabled", "mutating endpoints are disabled: set NERTZ_API__TOKEN to enable them")
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "expected the header 'Authorization: Bearer <NERTZ_API__TOKEN>'")


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


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the FastAPI app; ``ctx`` is put on ``app.state`` by its lifespan.

    Parameters
    ----------
    ctx : ApiContext
        Pool, configured symbols, metrics registry, publisher and token (see :class:`ApiContext`).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = ctx
        yield

    app = FastAPI(
        title="Nertz API",
        description="Projections of the Nertz event log: market data, factors, decisions, trades and P&L.",
        version="1",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    _install_errors(app)
    metrics = HttpMetrics(ctx.registry)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route=route, method=request.method, status=str(response.status_code)).inc()
        metrics.seconds.labels(route=route).observe(time.perf_counter() - t0)
        return response

    app.router.routes.append(Route("/metrics", _Asgi(make_asgi_app(ctx.registry)), methods=["GET"]))

    @app.get("/health", summary="Database reachable")
    async def health(ctx: Ctx) -> JSON:
        try:
            await ctx.pool.fetchval("SELECT 1", timeout=2)
        except Exception as e:
            return _error(503, "database_unavailable", f"expected the database to answer, it failed: {e!r}")
        return JSON({"status": "ok", "database": "ok"})

    @app.get("/status", summary="Projector position, trading switch, and per symbol lock state, last bar and price")
    async def status(ctx: Ctx) -> JSON:
        return JSON(await queries.status(ctx.pool, ctx.symbols, ctx.consumer))

    @app.get("/profit", summary="Performance overall and per symbol (P&L in USDT, drawdown on realized P&L)")
    async def profit(ctx: Ctx) -> JSON:
        return JSON(await queries.profit(ctx.pool, ctx.symbols))

    @app.get("/trades/{symbol}", summary="Round trips (newest first) and open positions")
    async def trades(ctx: Ctx, symbol: Symbol, limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 100) -> JSON:
        return JSON(
            {
                "symbol": symbol,
                "trades": await queries.trades(ctx.pool, symbol, limit),
                "open_positions": await queries.open_positions(ctx.pool, symbol),
            }
        )

    @app.get("/candles/{symbol}/{limit}", summary="The last `limit` candles (1..5000), oldest first")
    async def candles(
        ctx: Ctx,
        symbol: Symbol,
        limit: Annotated[int, Path(ge=1, le=MAX_CANDLES, description="number of candles, 1..5000")],
        interval: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{1,6}$", description="Bybit interval")] = None,
    ) -> JSON:
        return JSON(await queries.candles(ctx.pool, symbol, limit, interval))

    @app.get("/metrics/{symbol}", summary="Latest factor snapshot and decision counts")
    async def symbol_metrics(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON(await queries.symbol_metrics(ctx.pool, symbol))

    @app.get("/decisions/{symbol}", summary="Intents → verdicts → suppressions → orders → fills, newest first")
    async def decisions(ctx: Ctx, symbol: Symbol, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JSON:
        return JSON({"symbol": symbol, "decisions": await queries.decisions(ctx.pool, symbol, limit)})

    @app.get("/ticker/{symbol}", summary="Latest ticker (null before the first)")
    async def ticker(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON({"symbol": symbol, "ticker": await queries.ticker(ctx.pool, symbol)})

    @app.get("/orderbook/{symbol}", summary="Latest book snapshot (null before the first)")
    async def orderbook(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON({"symbol": symbol, "book": await queries.orderbook(ctx.pool, symbol)})

    @app.get("/market_data/{symbol}", summary="Last candle, ticker, top of book, instrument, feed status, factors")
    async def market_data(ctx: Ctx, symbol: Symbol) -> JSON:
        return JSON(await queries.market_data(ctx.pool, symbol))

    @app.get("/llm", summary="Model calls by model, role and outcome (latency, tokens, cost); verdicts; fail-closed")
    async def llm(ctx: Ctx) -> JSON:
        return JSON(await queries.llm(ctx.pool))

    @app.get("/overrides", summary="Circuit-breaker reviews (newest first) and the risk overrides in force")
    async def overrides(
        ctx: Ctx,
        symbol: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{2,30}$")] = None,
        at_ns: Annotated[int | None, Query(ge=0, description="UNIX ns; default: the latest bar's time")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> JSON:
        sym = await _symbol(symbol, ctx) if symbol is not None else None
        return JSON(await queries.overrides(ctx.pool, sym, at_ns, limit))

    @app.get("/shadows", summary="Per shadow validator: agreement with the live verdicts and what it would have earned")
    async def shadows(ctx: Ctx) -> JSON:
        return JSON({"shadows": await queries.shadows(ctx.pool)})

    async def command(ctx: ApiContext, cls: type[ev.TradingStarted | ev.TradingStopped], body: ControlRequest) -> JSON:
        scope = "all" if body.scope.lower() == "all" else _normalise(body.scope)
        if scope != "all" and not await queries.is_known(ctx.pool, scope, ctx.symbols):
            raise ApiError(404, "unknown_symbol", f"expected scope 'all' or a known symbol, was {scope}")
        if ctx.publisher is None:
            raise ApiError(503, "bus_unavailable", "expected a NATS publisher, this API runs without one")
        now = time.time_ns()  # an operator command: its time is when the operator gave it
        fields: dict[str, Any] = {"scope": scope, "actor": "api"}
        if cls is ev.TradingStopped:
            fields["reason"] = body.reason
        event = cls(event_id=derive_id(cls.__name__, scope, now), ts_event=now, ts_init=now, **fields)
        try:
            seq = await ctx.publisher.publish(event)
        except bus.PublishError as e:
            raise ApiError(503, "bus_unavailable", f"expected the log to store the command, it failed: {e}") from e
        log.info("control.published", extra={"type": cls.__name__, "scope": scope, "event_id": event.event_id})
        return JSON(
            {"accepted": True, "type": cls.__name__, "event_id": event.event_id, "stream_seq": seq, "scope": scope},
            status_code=202,
        )

    @app.post("/start", status_code=202, dependencies=[Depends(_authorized)], summary="Publish TradingStarted")
    async def start(ctx: Ctx, body: ControlRequest | None = None) -> JSON:
        return await command(ctx, ev.TradingStarted, body or ControlRequest())

    @app.post("/stop", status_code=202, dependencies=[Depends(_authorized)], summary="Publish TradingStopped")
    async def stop(ctx: Ctx, body: ControlRequest | None = None) -> JSON:
        return await command(ctx, ev.TradingStopped, body or ControlRequest())

    return app


def _install_errors(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.error, exc.reason)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        reason = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details) or "invalid request"
        return _error(422, "invalid_request", reason, details=details)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return JSON({"error": slug, "reason": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def db_down(request: Request, exc: Exception) -> Response:
        log.warning("http.database_unavailable", extra={"error": repr(exc)[:300]})
        return _error(503, "database_unavailable", f"expected the database to answer, it failed: {exc!r}")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for cls in (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError):
        app.add_exception_handler(cls, db_down)
