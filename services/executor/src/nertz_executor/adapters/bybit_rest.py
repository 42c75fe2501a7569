"""Bybit V5 private REST through pybit's ``HTTP``: signed calls with Bybit's errors mapped by what to do.

pybit's own retries are off (``max_retries=1`` and a dummy ``retry_codes``, WIRE.md §2.1), so nothing
sleeps unbounded in its thread; this client decides, per answer:

- ``retCode 10006`` (rate limit): wait until ``X-Bapi-Limit-Reset-Timestamp`` (bounded by
  ``rate_limit_max_wait_s``; 1 s when the header is missing), then retry;
- ``retCode 10002`` (the request's timestamp is outside the server's window: clock skew): read the
  server time (``/v5/market/time``), sign with the corrected clock from then on, retry;
- HTTP 5xx/429, ``retCode 10016`` (server error), a non-JSON body: transient, backoff and retry;
- a timeout or a lost connection: for a read, transient; for an order (``place_order``, ``cancel_order``)
  :class:`OutcomeUnknown`, since Bybit may have taken it — the caller looks the ``orderLinkId`` up,
  never resubmits blindly;
- anything else Bybit refuses (110007 insufficient balance, 110072 duplicate ``orderLinkId``, 10001
  bad parameter, 10003/10004 bad key or signature...): :class:`Refused` with Bybit's code and message.

Every call runs on this client's own one-thread executor (pybit shares one ``requests.Session``).
Secrets are given as plain strings to pybit only; they are never logged.
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
from pybit import _helpers
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

log = logging.getLogger("nertz.executor.bybit")

#: REST host per BYBIT_ENV (WIRE.md §3.1)
REST_URLS: dict[str, str] = {
    "mainnet": "https://api.bybit.com",
    "testnet": "https://api-testnet.bybit.com",
    "demo": "https://api-demo.bybit.com",
}
#: retCodes that are a success for our purpose: 110043 "leverage not modified"
NOT_MODIFIED = frozenset({110043})
_TRANSIENT_CODES = frozenset({10000, 10016})
#: pybit methods that change something at the exchange: a timeout leaves their outcome unknown
MUTATING = frozenset({"place_order", "cancel_order", "amend_order", "set_trading_stop", "set_leverage"})


class Refused(Exception):
    """Bybit refused the request: ``code`` is its ``retCode`` (or the HTTP status), ``message`` its text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class OutcomeUnknown(Exception):
    """An order request timed out or lost its connection: Bybit may or may not have taken it."""


class SignedHTTP(HTTP):
    """pybit ``HTTP`` with a base URL of our choosing and a clock corrected by ``offset_ms``.

    ``offset_ms`` (server − local, ms) is added to the ``X-BAPI-TIMESTAMP`` of every signed request,
    so a machine whose clock drifted signs requests the server accepts (retCode 10002 otherwise).
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = base_url.rstrip("/")
        self.offset_ms = 0

    def _prepare_headers(
        self, payload: Any, recv_window: int, content_type: str = "application/json"
    ) -> dict[str, str]:
        timestamp = _helpers.generate_timestamp() + self.offset_ms
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: Bybit's ``result`` and the server time of the envelope, ms."""

    result: dict[str, Any]
    server_ms: int


class BybitRest:
    """Signed Bybit V5 calls with bounded retries (see the module docstring).

    Parameters
    ----------
    base_url : str
        REST base URL (:data:`REST_URLS` for an environment, or a fake's ``http://127.0.0.1:PORT``).
    api_key, api_secret : str
    timeout_s : float
        Per request (pybit's ``timeout``), s.
    recv_window_ms : int
        Bybit's ``recv_window``, ms.
    attempts : int
        Tries in all for one call (rate limits, skew and transient errors each use one).
    rate_limit_max_wait_s : float
        Longest wait for a rate limit's reset, s.
    on_call : callable, optional
        ``on_call(method, outcome)`` after every attempt (metrics): outcome ``ok``, ``rate_limited``,
        ``clock_skew``, ``transient``, ``refused``, ``unknown``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout_s: float = 5.0,
        recv_window_ms: int = 5000,
        attempts: int = 5,
        rate_limit_max_wait_s: float = 10.0,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self.http = SignedHTTP(
            base_url,
            api_key=api_key,
            api_secret=api_secret,
            timeout=timeout_s,
            recv_window=recv_window_ms,
            max_retries=1,
            retry_codes={-1},  # a non-empty dummy: pybit's own retries stay off (WIRE.md §2.1)
            return_response_headers=True,
            logging_level=logging.WARNING,
        )
        self.attempts = attempts
        self.rate_limit_max_wait_s = rate_limit_max_wait_s
        self._on_call = on_call or (lambda method, outcome: None)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bybit-rest")

    @property
    def offset_ms(self) -> int:
        """Server clock − local clock, ms (0 until a 10002 made us read the server time)."""
        return self.http.offset_ms

    async def call(self, method: str, **params: Any) -> Answer:
        """Call pybit ``HTTP.<method>(**params)`` and return its answer.

        Raises
        ------
        Refused
            If Bybit refused the request (its retCode and message), or it still failed after every attempt.
        OutcomeUnknown
            If an order request (:data:`MUTATING`) timed out or lost its connection.
        """
        last = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                body, _elapsed, _headers = await self._run(getattr(self.http, method), **params)
            except InvalidRequestError as e:
                code = int(e.status_code)
                if code in NOT_MODIFIED:
                    self._on_call(method, "ok")
                    return Answer({}, int(time.time() * 1000) + self.offset_ms)
                if code == 10006:
                    self._on_call(method, "rate_limited")
                    await asyncio.sleep(self._reset_wait_s(e.resp_headers))
                    last = f"{code} {e.message}"
                    continue
                if code == 10002:
                    self._on_call(method, "clock_skew")
                    await self.resync_clock()
                    last = f"{code} {e.message}"
                    continue
                if code in _TRANSIENT_CODES:
                    self._on_call(method, "transient")
                    await asyncio.sleep(_backoff(attempt))
                    last = f"{code} {e.message}"
                    continue
                self._on_call(method, "refused")
                raise Refused(code, str(e.message)) from None
            except FailedRequestError as e:
                status = int(e.status_code) if isinstance(e.status_code, int) else 0
                if status in (401, 403):
                    self._on_call(method, "refused")
                    raise Refused(status, str(e.message)) from None
                self._on_call(method, "transient")  # 5xx, 429, a non-JSON body (409), retries exceeded
                last = f"HTTP {status} {e.message}"
                await asyncio.sleep(_backoff(attempt))
                continue
            except (requests.Timeout, requests.ConnectionError) as e:
                if method in MUTATING:
                    self._on_call(method, "unknown")
                    raise OutcomeUnknown(f"{method}: {type(e).__name__}") from e
                self._on_call(method, "transient")
                last = type(e).__name__
                await asyncio.sleep(_backoff(attempt))
                continue
            self._on_call(method, "ok")
            return Answer(body.get("result") or {}, int(body.get("time") or 0))
        raise Refused(-1, f"{method} still failing after {self.attempts} attempts: {last}")

    async def resync_clock(self) -> int:
        """Read the server time and sign with it from now on; return the new offset, ms."""
        t0 = time.time()
        body, _elapsed, _headers = await self._run(self.http.get_server_time)
        t1 = time.time()
        server_ms = int(body["result"]["timeNano"]) // 1_000_000
        self.http.offset_ms = server_ms - round((t0 + t1) / 2 * 1000)
        log.warning("bybit.clock_resynced", extra={"offset_ms": self.http.offset_ms})
        return self.http.offset_ms

    def close(self) -> None:
        """Stop the executor thread (calls in flight finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., Any], **params: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, **params))

    def _reset_wait_s(self, headers: Any) -> float:
        try:
            reset_ms = int(headers["X-Bapi-Limit-Reset-Timestamp"])
        except (KeyError, TypeError, ValueError):
            return 1.0
        wait = reset_ms / 1000 - time.time()
        return min(max(wait, 0.05), self.rate_limit_max_wait_s)


def _backoff(attempt: int) -> float:
    return float(min(0.2 * 2 ** (attempt - 1), 5.0))
