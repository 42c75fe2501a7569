"""Qwen through the ``dashscope`` SDK: one :class:`~nertz_validator.core.component.Ask` in, one recorded
:class:`~nertz_common.events.ModelCall` out. Never raises for what the model or the network does.

What it does for each call (``../shared/docs/WIRE.md`` §5):

- ``AioGeneration.call`` with ``result_format="message"``, ``response_format={"type": "json_object"}``
  (or the breaker's ``tools=``; the news analyst's searches, ``enable_search=True`` with its
  ``search_options``, may leave the format to the prompt), temperature and seed from the settings,
  ``enable_thinking=False`` (a non-streaming call to a thinking model otherwise answers 400), a
  ``request_timeout`` bounded by what is left of the call's time budget;
- **retries** with exponential backoff and full jitter (tenacity) on 429, 5xx, timeouts and refused
  connections, only while the budget lasts; 400 and a bad answer are not retried (temperature 0:
  the same question gets the same answer);
- a **key pool**: a key answered 429 rests ``key_cooloff_429_s``, one answered 401 rests
  ``key_cooloff_401_s``, and the next attempt takes the next key; with every key resting the call
  fails closed (``no_key``);
- at most ``max_concurrency`` calls in flight (across symbols; one symbol never waits for another's
  call, the runner starts every symbol's call at once);
- the answer's text (or tool calls as JSON), finish reason, request id, latency, token usage and
  cost (price table, USD per 1k tokens) are recorded; metrics count calls by model and outcome,
  latency, tokens, cost and key rotations.

Point it at another region or at the fake with ``DASHSCOPE_HTTP_BASE_URL`` (``base_url``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import dashscope
from prometheus_client import CollectorRegistry, Counter, Histogram
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, stop_before_delay, wait_random_exponential

from nertz_common import events as ev
from nertz_common.llm import Reply, read_reply
from nertz_validator.core.component import Ask
from nertz_validator.settings import QwenSettings

log = logging.getLogger("nertz.validator.qwen")

#: DashScope's own default (Beijing)
DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"

#: outcomes worth another attempt (another key, a moment later)
RETRYABLE = frozenset({"http_429", "http_401", "http_5xx", "timeout", "connection"})

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 40.0)


class LlmMetrics:
    """``nertz_llm_*``: what the model costs and how often it fails."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter("nertz_llm_calls_total", "Model calls, by model, role and outcome",
                             ["model", "role", "outcome"], registry=registry)  # fmt: skip
        self.attempts = Counter("nertz_llm_attempts_total", "HTTP attempts, by model and outcome",
                                ["model", "outcome"], registry=registry)  # fmt: skip
        self.latency = Histogram("nertz_llm_call_seconds", "Wall time of a call, retries included",
                                 ["model", "role"], buckets=LATENCY_BUCKETS, registry=registry)  # fmt: skip
        self.tokens = Counter("nertz_llm_tokens_total", "Tokens, by model and direction (in/out)",
                              ["model", "direction"], registry=registry)  # fmt: skip
        self.cost = Counter("nertz_llm_cost_usd_total", "Cost from the price table, USD", ["model"],
                            registry=registry)  # fmt: skip
        self.rotations = Counter("nertz_llm_key_rotations_total", "A key put to rest, by reason (429/401)",
                                 ["reason"], registry=registry)  # fmt: skip

    def start(self, model: str, roles: Sequence[str]) -> None:
        """Create the series of ``model``'s calls in ``roles`` at 0, before the first call.

        A labelled series appears at its first use; if Prometheus first scrapes it with its calls already
        counted, ``rate()`` over the window never sees them (a burst after a start, a short run).
        """
        for role in roles:
            self.latency.labels(model=model, role=role)
            self.calls.labels(model=model, role=role, outcome="ok")


class KeyPool:
    """API keys taken in turn; a key that was refused rests for a while.

    Parameters
    ----------
    keys : sequence of str
    clock : callable
        Monotonic seconds (injectable for tests).
    """

    def __init__(self, keys: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = list(keys)
        self._rest_until = [0.0] * len(self.keys)
        self._next = 0
        self._clock = clock

    def take(self) -> tuple[int, str] | None:
        """Return ``(index, key)`` of the next key not resting, None when every key rests."""
        now = self._clock()
        n = len(self.keys)
        for i in range(n):
            k = (self._next + i) % n
            if self._rest_until[k] <= now:
                self._next = (k + 1) % n
                return k, self.keys[k]
        return None

    def rest(self, index: int, seconds: float) -> None:
        """Put key ``index`` to rest for ``seconds``."""
        self._rest_until[index] = max(self._rest_until[index], self._clock() + seconds)


@dataclass(frozen=True, slots=True)
class _Attempt(Reply):
    key_index: int | None = None


class QwenClient:
    """Answer :class:`Ask` calls with Qwen (see the module docstring).

    Parameters
    ----------
    settings : QwenSettings
    keys : sequence of str
        The key pool (never logged).
    base_url : str, optional
        DashScope's HTTP base (``https://dashscope-intl.aliyuncs.com/api/v1``, or a fake's).
    registry : CollectorRegistry, optional
        Where the ``nertz_llm_*`` metrics go.
    metrics : LlmMetrics, optional
        Metrics already registered (a second client in the same process shares them).
    """

    def __init__(
        self,
        settings: QwenSettings,
        keys: Sequence[str],
        *,
        base_url: str | None = None,
        registry: CollectorRegistry | None = None,
        metrics: LlmMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = KeyPool(keys)
        self.base_url = base_url
        if not dashscope.base_http_api_url:  # DASHSCOPE_HTTP_BASE_URL set but empty: the SDK would post to ""
            dashscope.base_http_api_url = DEFAULT_BASE_URL
        self.metrics = metrics or LlmMetrics(registry or CollectorRegistry())
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    async def __call__(self, call: Any) -> ev.ModelCall:
        """Ask ``call`` (an :class:`Ask`); return what happened, as recorded in the verdict."""
        assert isinstance(call, Ask)
        s = self.settings
        t0 = time.monotonic()
        deadline = t0 + s.budget_s
        tried: list[_Attempt] = []
        async with self._slots:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(s.max_attempts) | stop_before_delay(s.budget_s),
                wait=wait_random_exponential(multiplier=s.backoff_s, max=max(s.backoff_s, s.budget_s / 4)),
                retry=retry_if_result(lambda a: a.outcome in RETRYABLE),
                retry_error_callback=lambda state: state.outcome.result() if state.outcome else _Attempt("budget"),
            )
            last: _Attempt = await retrying(self._attempt, call, deadline, tried)
        if last.outcome == "budget" and tried:
            last = tried[-1]  # the budget ran out: what the last attempt got is the failure
        latency = time.monotonic() - t0
        return self._record(call, last, len(tried), latency)

    async def _attempt(self, call: Ask, deadline: float, tried: list[_Attempt]) -> _Attempt:
        s = self.settings
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return _Attempt("budget")
        picked = self.pool.take()
        if picked is None:
            return _Attempt("no_key")
        index, key = picked
        kw: dict[str, Any] = dict(
            model=call.model, messages=call.messages, api_key=key, result_format="message",
            temperature=s.temperature, seed=s.seed, enable_thinking=False,
            request_timeout=min(s.request_timeout_s, remaining),
        )  # fmt: skip
        if call.tools is not None:
            kw["tools"] = call.tools
            kw["tool_choice"] = "auto"
        elif call.json_mode:
            kw["response_format"] = {"type": "json_object"}
        if call.enable_search:
            kw["enable_search"] = True
            if call.search_options:
                kw["search_options"] = call.search_options
        if self.base_url:
            kw["base_address"] = self.base_url
        try:
            resp = await dashscope.AioGeneration.call(**kw)
        except TimeoutError:
            a = _Attempt("timeout", key_index=index)
        except (aiohttp.ClientError, OSError) as e:
            a = _Attempt("connection", message=type(e).__name__, key_index=index)
        else:
            a = self._read(resp, index)
        tried.append(a)
        self.metrics.attempts.labels(model=call.model, outcome=a.outcome).inc()
        if a.outcome == "http_429":
            self.pool.rest(index, s.key_cooloff_429_s)
            self.metrics.rotations.labels(reason="429").inc()
        elif a.outcome == "http_401":
            self.pool.rest(index, s.key_cooloff_401_s)
            self.metrics.rotations.labels(reason="401").inc()
        if a.outcome != "ok":
            log.warning(
                "llm.attempt_failed",
                extra={"model": call.model, "role": call.role, "key": call.key, "outcome": a.outcome,
                       "status": a.status, "code": a.code, "key_index": index},
            )  # fmt: skip
        return a

    @staticmethod
    def _read(resp: Any, index: int) -> _Attempt:
        r = read_reply(resp)
        return _Attempt(
            r.outcome, r.status, r.code, r.message, r.request_id, r.text, r.finish_reason, r.tokens_in, r.tokens_out,
            index,
        )  # fmt: skip

    def _record(self, call: Ask, a: _Attempt, attempts: int, latency_s: float) -> ev.ModelCall:
        price_in, price_out = self._price(call.model)
        cost = a.tokens_in / 1000 * price_in + a.tokens_out / 1000 * price_out
        m = self.metrics
        m.calls.labels(model=call.model, role=call.role, outcome=a.outcome).inc()
        m.latency.labels(model=call.model, role=call.role).observe(latency_s)
        m.tokens.labels(model=call.model, direction="in").inc(a.tokens_in)
        m.tokens.labels(model=call.model, direction="out").inc(a.tokens_out)
        m.cost.labels(model=call.model).inc(cost)
        return ev.ModelCall(
            role=call.role, model=call.model, prompt_id=call.prompt_id, prompt_sha256=call.prompt_sha256,
            outcome=a.outcome, raw_text=a.text, finish_reason=a.finish_reason, status_code=a.status,
            error_code=a.code, error_message=a.message, request_id=a.request_id,
            latency_ms=round(latency_s * 1000, 3), attempts=attempts, tokens_in=a.tokens_in, tokens_out=a.tokens_out,
            cost_usd=round(cost, 8), key_index=a.key_index,
        )  # fmt: skip

    def _price(self, model: str) -> tuple[float, float]:
        prices = self.settings.prices
        if model in prices:
            return prices[model]
        family = max((p for p in prices if model.startswith(p)), key=len, default=None)
        return prices[family] if family else (0.0, 0.0)

    async def close(self) -> None:
        """Close the SDK's shared aiohttp session (else: "Unclosed client session" at exit)."""
        closing: Any = dashscope.close_shared_aio_session()  # type: ignore[func-returns-value]
        if inspect.isawaitable(closing):
            await closing


def fresh_only(
    client: Callable[[Any], Awaitable[ev.ModelCall]], max_lag_s: float, clock: Callable[[], float] = time.time
) -> Callable[[Any], Awaitable[ev.ModelCall]]:
    """Wrap ``client`` so that a question about the past is answered ``stale`` without asking the model.

    A web search answers about now: an :class:`Ask` whose ``as_of_ns`` is more than ``max_lag_s``
    before the wall clock (``clock()``, UNIX s) gets a :class:`~nertz_common.events.ModelCall` with
    outcome ``stale`` and the lag in ``error_message`` (recorded like any answer); others go to ``client``.
    """

    async def answer(call: Any) -> ev.ModelCall:
        assert isinstance(call, Ask)
        if call.as_of_ns is not None:
            lag = clock() - call.as_of_ns / 1e9
            if lag > max_lag_s:
                return ev.ModelCall(
                    role=call.role, model=call.model, prompt_id=call.prompt_id, prompt_sha256=call.prompt_sha256,
                    outcome="stale", error_message=f"asked {lag:.0f} s after its time, more than {max_lag_s:g} s",
                )  # fmt: skip
        return await client(call)

    return answer


class BlockingQwen:
    """A :class:`QwenClient` for synchronous callers (the in-process tools' log runner): one event loop
    in a background thread, every call submitted to it and waited for.

    Use as a context manager, or call :meth:`close`. ``answer(component, call)`` matches the log
    runner's ``answer``/``ask`` parameter.
    """

    def __init__(self, client: QwenClient) -> None:
        import threading

        self.client = client
        self.calls = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qwen-loop", daemon=True)
        self._thread.start()

    def answer(self, component: str, call: Any) -> ev.ModelCall:
        """Ask ``call`` and wait for the recorded answer."""
        self.calls += 1
        return asyncio.run_coroutine_threadsafe(self.client(call), self._loop).result()

    def close(self) -> None:
        """Close the SDK session and stop the loop."""
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BlockingQwen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
