"""Bybit V5 public market REST through pybit's ``HTTP``: instruments-info and kline backfill.

pybit's ``HTTP`` is synchronous (one ``requests.Session``), so every call runs on this client's own
one-thread executor. Retries are ours, not pybit's (pybit is built with ``max_retries=1`` and a dummy
``retry_codes``, WIRE.md §2.1, so it raises at once and never sleeps unbounded in its thread):

- **rate limit** (``retCode 10006``): wait until ``X-Bapi-Limit-Reset-Timestamp`` (bounded by
  ``rate_limit_max_wait_s``; exponential backoff when the header is missing), then retry;
- **transient** (HTTP 5xx or 429, ``retCode 10016`` server error, a non-JSON body, a timeout, a
  connection error): exponential backoff with jitter (tenacity), then retry;
- anything else (a refused parameter, an unknown symbol, HTTP 403...) is not retried: :class:`RestError`.

Every call is bounded: ``timeout_s`` per request (pybit's ``timeout``) and ``attempts`` tries in all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from nertz_ingest.core.bybit import KLINE_INTERVAL_MS
from nertz_ingest.metrics import IngestMetrics

log = logging.getLogger("nertz.ingest.rest")

#: REST base URL per BYBIT_ENV (public market data of demo trading is mainnet's, WIRE.md §3.1)
REST_URLS: dict[str, str] = {
    "mainnet": "https://api.bybit.com",
    "testnet": "https://api-testnet.bybit.com",
    "demo": "https://api.bybit.com",
}
MAX_PAGE = 1000
"""Bybit's largest kline page (``limit`` ≤ 1000)."""
_TRANSIENT_CODES = {10000, 10016}  # timeout / server error


class RestError(Exception):
    """A REST call that failed for good: refused by Bybit, or still failing after every attempt."""


class _RateLimited(Exception):
    def __init__(self, reset_ms: int | None, detail: str) -> None:
        super().__init__(detail)
        self.reset_ms = reset_ms


class _Transient(Exception):
    pass


class LocalHTTP(HTTP):
    """pybit ``HTTP`` whose base URL is ``base_url`` (e.g. a fake on ``http://127.0.0.1:PORT``), WIRE.md §2.1."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = base_url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful REST answer: Bybit's ``result`` and the server time of the envelope (ms)."""

    result: dict[str, Any]
    server_ms: int


class BybitRest:
    """Public market REST calls with timeouts, rate-limit waits and retries.

    Parameters
    ----------
    url : str
        Base URL (:data:`REST_URLS` or an override such as ``http://127.0.0.1:PORT``).
    timeout_s : float
        Timeout of one HTTP request, s.
    attempts : int
        Tries per call, the first included.
    rate_limit_max_wait_s : float
        Longest wait for a rate-limit reset, s (a reset further away is waited in steps of this).
    backoff_initial_s, backoff_max_s : float
        Exponential backoff with jitter between transient failures, s.
    metrics : IngestMetrics, optional
        ``rest_calls_total{endpoint, outcome}`` is counted there.
    clock_ms : callable, optional
        Wall clock in ms (to turn a reset timestamp into a wait); default ``time.time_ns() // 1e6``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        attempts: int = 5,
        rate_limit_max_wait_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        metrics: IngestMetrics | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"expected attempts >= 1, was {attempts}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.rate_limit_max_wait_s = rate_limit_max_wait_s
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s
        )
        self._metrics = metrics
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        # a dummy retry code (an empty set means "the defaults" to pybit) and one try: retries are ours
        self._http = LocalHTTP(
            self.url, timeout=timeout_s, max_retries=1, retry_codes={-1}, logging_level=logging.WARNING
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bybit-rest")

    def close(self) -> None:
        """Release the HTTP session and the worker thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.client.close()

    # --- calls ------------------------------------------------------------------------------------

    async def call(self, endpoint: str, **params: Any) -> Answer:
        """Call one pybit market method (``get_kline``, ``get_instruments_info``...) with retries.

        Raises
        ------
        RestError
            If Bybit refuses the request, or it still fails after ``attempts`` tries.
        """
        fn = getattr(self._http, endpoint)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type((_RateLimited, _Transient)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(endpoint, fn, params)
        except (_RateLimited, _Transient) as e:
            raise RestError(f"{endpoint} failed after {self.attempts} attempts: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, endpoint: str, fn: Callable[..., Any], params: dict[str, Any]) -> Answer:
        loop = asyncio.get_running_loop()
        outcome = "ok"
        try:
            fut = loop.run_in_executor(self._pool, partial(fn, **params))
            env = await asyncio.wait_for(fut, self.timeout_s * 2 + 5)
        except InvalidRequestError as e:
            if e.status_code == 10006:
                outcome = "rate_limited"
                reset = (e.resp_headers or {}).get("X-Bapi-Limit-Reset-Timestamp")
                raise _RateLimited(int(reset) if reset else None, f"retCode 10006 {e.message}") from None
            if e.status_code in _TRANSIENT_CODES:
                outcome = "server_error"
                raise _Transient(f"retCode {e.status_code} {e.message}") from None
            outcome = "refused"
            raise RestError(f"{endpoint}({params}) refused: retCode {e.status_code} {e.message}") from None
        except FailedRequestError as e:
            if e.status_code >= 500 or e.status_code in (409, 429):  # 409: pybit's "not JSON"
                outcome = f"http_{e.status_code // 100}xx" if e.status_code >= 500 else f"http_{e.status_code}"
                raise _Transient(f"HTTP {e.status_code}: {e.message}") from None
            outcome = f"http_{e.status_code}"
            raise RestError(f"{endpoint}({params}) failed: HTTP {e.status_code} {e.message}") from None
        except (requests.Timeout, TimeoutError) as e:
            outcome = "timeout"
            raise _Transient(f"timed out after {self.timeout_s:g} s: {e!r}") from None
        except requests.ConnectionError as e:
            outcome = "connection_error"
            raise _Transient(f"connection error: {e!r}") from None
        finally:
            if self._metrics:
                self._metrics.rest_calls.labels(endpoint=endpoint, outcome=outcome).inc()
            if outcome != "ok":
                log.warning("rest.failed", extra={"endpoint": endpoint, "outcome": outcome})
        return Answer(env.get("result") or {}, int(env.get("time") or self._clock_ms()))

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RateLimited) and exc.reset_ms is not None:
            wait_s = (exc.reset_ms - self._clock_ms()) / 1000 + 0.01
            return min(max(wait_s, 0.0), self.rate_limit_max_wait_s)
        return float(self._backoff(state))

    # --- endpoints --------------------------------------------------------------------------------

    async def instrument(self, symbol: str) -> tuple[dict[str, Any] | None, int]:
        """Return the linear instruments-info entry of ``symbol`` (None if Bybit has none) and the server time (ms).

        Raises
        ------
        RestError
        """
        answer = await self.call("get_instruments_info", category="linear", symbol=symbol)
        rows = [r for r in answer.result.get("list") or [] if r.get("symbol") == symbol]
        return (rows[0] if rows else None), answer.server_ms

    async def tickers(self) -> tuple[list[dict[str, Any]], int]:
        """Return every linear ticker row (``/v5/market/tickers?category=linear``, one call) and the server time (ms).

        Raises
        ------
        RestError
        """
        answer = await self.call("get_tickers", category="linear")
        return list(answer.result.get("list") or []), answer.server_ms

    async def instruments(self, max_pages: int = 20) -> list[dict[str, Any]]:
        """Return every trading linear instrument (instruments-info, pages of 1000 followed by ``cursor``).

        Raises
        ------
        RestError
            If a page fails, or more than ``max_pages`` pages come (a cursor that never ends).
        """
        rows: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(max_pages):
            params: dict[str, Any] = {"category": "linear", "limit": MAX_PAGE}
            if cursor:
                params["cursor"] = cursor
            answer = await self.call("get_instruments_info", **params)
            rows.extend(answer.result.get("list") or [])
            cursor = str(answer.result.get("nextPageCursor") or "")
            if not cursor:
                return rows
        raise RestError(f"expected instruments-info to end within {max_pages} pages, was still paging")

    async def kline_history(
        self, symbol: str, interval: str, bars: int, end_ms: int | None = None
    ) -> tuple[list[list[Any]], int, int]:
        """Fetch at least ``bars`` closed klines before now (plus the open one), paging backwards.

        Each page asks for ``limit`` ≤ 1000 rows ending at ``end`` = the oldest start seen - 1 ms (Bybit
        returns the newest rows of the window first). Paging stops when enough rows are in, or a page
        is short or brings nothing new (no older history). ``end_ms`` starts the paging there instead
        of now (ms; the open candle is then usually not among the rows).

        Returns
        -------
        (rows, server_ms, pages)
            The rows (any order, no duplicate start), the first answer's server time (ms), pages fetched.

        Raises
        ------
        RestError
        ValueError
            If ``interval`` is not a fixed-length Bybit interval.
        """
        if not KLINE_INTERVAL_MS.get(interval):
            raise ValueError(f"expected a fixed-length kline interval, was {interval!r}")
        rows: dict[int, list[Any]] = {}
        bad: list[list[Any]] = []  # kept for the parser to reject with a reason
        server_ms: int | None = None
        end = end_ms
        pages = 0
        while len(rows) < bars + 1:  # + the candle still open
            limit = min(MAX_PAGE, bars + 1 - len(rows))
            params: dict[str, Any] = {"category": "linear", "symbol": symbol, "interval": interval, "limit": limit}
            if end is not None:
                params["end"] = end
            answer = await self.call("get_kline", **params)
            pages += 1
            if server_ms is None:
                server_ms = answer.server_ms
            page = answer.result.get("list") or []
            new = 0
            for row in page:
                try:
                    start = int(row[0])
                except (ValueError, TypeError, IndexError):
                    bad.append(row)
                    continue
                if start not in rows:
                    rows[start] = row
                    new += 1
            if not page or new == 0 or len(page) < limit:
                break
            end = min(rows) - 1
        return [*rows.values(), *bad], server_ms if server_ms is not None else self._clock_ms(), pages
