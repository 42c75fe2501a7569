"""The coin hunter's question to Qwen: which of the qualifying symbols to trade (the ``dashscope`` SDK).

One call per universe refresh when ``NERTZ_UNIVERSE__QWEN`` is on: the symbols that pass the filters
(at most ``qwen_candidates``, by 24 h turnover) go to the model with their figures, and it answers
``{"symbols": [{"symbol", "reason"}]}`` with at most ``max_symbols`` of them. What it answered is a
:class:`~nertz_common.events.ModelCall`, recorded verbatim in the ``UniverseChanged`` that reads it
(:func:`nertz_ingest.core.universe.suggestions_of`), so a replay reads the same suggestions again.

Never raises for what the model or the network does: ``AioGeneration.call`` with
``result_format="message"``, ``response_format={"type": "json_object"}``, temperature 0 and a seed,
``enable_thinking=False`` (a non-streaming call to a thinking model answers 400 otherwise), a
``request_timeout``; 429, 5xx, timeouts and refused connections are retried with exponential backoff
and full jitter (tenacity) up to ``qwen_attempts``; a 400 or a 401 is not. A failed call is recorded
with its outcome, and the universe is then chosen from the tickers alone (fail closed: no symbol
comes from a model that did not answer). ``../shared/docs/WIRE.md`` §5 has the wire format.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import dashscope
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_random_exponential

from nertz_common import events as ev
from nertz_common.llm import Reply, read_reply
from nertz_ingest.core.universe import usdt

log = logging.getLogger("nertz.ingest.qwen")

PROMPT_ID = "universe.v1"
ROLE = "universe"
RETRYABLE = frozenset({"http_429", "http_5xx", "timeout", "connection"})
SYSTEM = (
    "You choose which Bybit USDT linear perpetual futures an automated trend-following strategy trades "
    "next. You are given the symbols that pass its liquidity filters, with their 24 h turnover (USDT) and "
    "spread. Pick at most max_symbols of them, the ones whose coming days are most likely to trend "
    "cleanly with deep liquidity; prefer diversity over correlated coins. Answer only a JSON object: "
    '{"symbols": [{"symbol": "SOLUSDT", "reason": "<one short sentence>"}]}.'
)


def messages(candidates: Sequence[ev.UniverseCandidate], max_symbols: int, as_of: str) -> list[dict[str, str]]:
    """The chat messages of one question: the system rules and the candidates as a JSON document."""
    doc = {
        "task": "universe",
        "as_of": as_of,
        "max_symbols": max_symbols,
        "candidates": [
            {
                "symbol": c.symbol,
                "turnover_24h_usdt": usdt(c.turnover_24h or 0.0),
                "spread_bps": round((c.spread or 0.0) * 10_000, 2),
            }
            for c in candidates
        ],
    }
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": json.dumps(doc, sort_keys=True)}]


class QwenSuggester:
    """Ask Qwen for the symbols to trade among the qualifiers (see the module docstring).

    Parameters
    ----------
    api_key : str
        A DashScope key (never logged, never recorded).
    model : str
        Pinned model id (``qwen-plus``).
    base_url : str, optional
        DashScope's HTTP base (another region, or a fake on 127.0.0.1); default the SDK's.
    timeout_s : float
        One attempt's HTTP timeout, s.
    attempts : int
        Attempts at most (>= 1).
    backoff_s : float
        First retry's wait, s (doubles, full jitter).
    """

    def __init__(
        self,
        api_key: str,
        model: str = "qwen-plus",
        *,
        base_url: str | None = None,
        timeout_s: float = 20.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self._key = api_key
        self.model, self.base_url = model, base_url
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s

    async def ask(self, candidates: Sequence[ev.UniverseCandidate], max_symbols: int, as_of: str) -> ev.ModelCall:
        """Ask once (retrying what is worth it) and return the call as it went, never raising.

        Parameters
        ----------
        candidates : sequence of UniverseCandidate
            The qualifiers shown to the model, in order.
        max_symbols : int
            Most symbols it may pick.
        as_of : str
            The time of Bybit's answer the figures come from, ISO 8601 UTC.
        """
        msgs = messages(candidates, max_symbols, as_of)
        sha = hashlib.sha256(json.dumps(msgs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        t0 = time.monotonic()
        tried: list[Reply] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=8 * self.backoff_s),
            retry=retry_if_result(lambda a: a.outcome in RETRYABLE),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else Reply("budget"),
        )
        a: Reply = await retrying(self._attempt, msgs, tried)
        if a.outcome != "ok":
            log.warning("universe.qwen_failed", extra={"outcome": a.outcome, "status": a.status, "code": a.code})
        return ev.ModelCall(
            role=ROLE, model=self.model, prompt_id=PROMPT_ID, prompt_sha256=sha, outcome=a.outcome,
            raw_text=a.text, finish_reason=a.finish_reason, status_code=a.status, error_code=a.code,
            error_message=a.message, request_id=a.request_id, latency_ms=(time.monotonic() - t0) * 1000.0,
            attempts=len(tried), tokens_in=a.tokens_in, tokens_out=a.tokens_out, cost_usd=0.0, key_index=0,
        )  # fmt: skip

    async def close(self) -> None:
        """Close the SDK's shared aiohttp session (else "Unclosed client session" at exit)."""
        closing: Any = dashscope.close_shared_aio_session()  # type: ignore[func-returns-value]
        if inspect.isawaitable(closing):
            await closing

    async def _attempt(self, msgs: list[dict[str, str]], tried: list[Reply]) -> Reply:
        kw: dict[str, Any] = dict(
            model=self.model, messages=msgs, api_key=self._key, result_format="message", temperature=0.0, seed=7,
            enable_thinking=False, response_format={"type": "json_object"}, request_timeout=self.timeout_s,
        )  # fmt: skip
        if self.base_url:
            kw["base_address"] = self.base_url
        try:
            resp = await dashscope.AioGeneration.call(**kw)
        except TimeoutError:
            a = Reply("timeout")
        except (aiohttp.ClientError, OSError) as e:
            a = Reply("connection", message=type(e).__name__)
        else:
            a = read_reply(resp)
        tried.append(a)
        return a
