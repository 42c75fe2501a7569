"""The coin hunter's adapter: ask Bybit for its linear tickers, let the core choose, keep the universe.

One refresh is two REST calls (``/v5/market/tickers?category=linear``: every symbol's 24 h turnover
and best bid/ask; ``/v5/market/instruments-info``: which symbols are trading USDT perpetuals), then the
pure choice of :mod:`nertz_ingest.core.universe`. What Bybit answered is recorded in the
``UniverseChanged`` itself (every candidate that can matter, with its figures), stamped with Bybit's
time of the answer, so a replay decides the same change again (docs/decisions.md D24). The live feed
(:class:`nertz_ingest.live.LiveFeed`) runs the refreshes and serves the symbols.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nertz_common import events as ev
from nertz_ingest.adapters.bybit_rest import BybitRest
from nertz_ingest.core import universe as core
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.settings import UniverseConfig

if TYPE_CHECKING:
    from nertz_ingest.adapters.qwen import QwenSuggester

log = logging.getLogger("nertz.ingest.universe")


class UniverseHunter:
    """Refresh the universe from Bybit's tickers.

    Parameters
    ----------
    rest : BybitRest
        The REST client (tickers, instruments-info).
    config : UniverseConfig
        Filters, cap, refresh period and whether the configured symbols are pinned.
    configured : sequence of str
        ``NERTZ_SYMBOLS``: the universe before the first change, and the pinned symbols when
        ``config.pin_symbols``.
    current : sequence of str, optional
        The universe in force (the symbols of the log's last ``UniverseChanged``); default ``configured``.
    metrics : IngestMetrics, optional
    suggester : QwenSuggester, optional
        Asks Qwen which qualifiers to trade at each refresh (``NERTZ_UNIVERSE__QWEN``).

    Attributes
    ----------
    symbols : list of str
        The universe in force, ranked by 24 h turnover after the first change.
    refresh_s : float
        Seconds between two refreshes.
    """

    def __init__(
        self,
        rest: BybitRest,
        config: UniverseConfig,
        configured: Sequence[str],
        *,
        current: Sequence[str] | None = None,
        metrics: IngestMetrics | None = None,
        suggester: QwenSuggester | None = None,
    ) -> None:
        self.rest = rest
        self.suggester = suggester
        self.shown = config.qwen_candidates
        self.refresh_s = config.refresh_s
        self.rules = core.Rules(
            min_turnover_usdt=config.min_turnover_usdt,
            max_spread=config.max_spread,
            max_symbols=config.max_symbols,
            pinned=tuple(configured) if config.pin_symbols else (),
        )
        self.symbols = list(current) if current else list(configured)
        self.metrics = metrics

    async def refresh(self) -> ev.UniverseChanged | None:
        """Ask Bybit, choose, and return the change (None: the same set, or nothing qualified).

        :attr:`symbols` moves to the change's symbols: publish the change before serving them.

        Raises
        ------
        RestError
            If Bybit refuses or a call still fails after its retries (the universe stays).
        """
        try:
            tickers, server_ms = await self.rest.tickers()
            instruments = await self.rest.instruments()
        except Exception:
            self._count("failed")
            raise
        quotes = core.quotes(tickers, instruments)
        call, suggested = await self._suggest(quotes, server_ms)
        choice = core.choose(quotes, self.symbols, self.rules, suggested)
        change = core.change(choice, self.symbols, self.rules, server_ms * 1_000_000, call=call)
        if not choice.symbols:
            log.warning("universe.nothing_qualified", extra={"tickers": len(tickers), "kept": self.symbols})
            self._count("nothing_qualified")
        elif change is None:
            self._count("unchanged")
        else:
            log.info(
                "universe.changed",
                extra={"symbols": change.symbols, "added": change.added, "removed": change.removed},
            )
            self.symbols = list(change.symbols)
            self._count("changed")
        return change

    async def _suggest(
        self, quotes: list[ev.UniverseCandidate], server_ms: int
    ) -> tuple[ev.ModelCall | None, dict[str, str]]:
        """Ask Qwen which of the qualifiers to trade: the call and its suggestions ({} when it failed)."""
        if self.suggester is None:
            return None, {}
        ranked = [c for c in core.choose(quotes, self.symbols, self.rules).candidates if c.rank is not None]
        if not ranked:
            return None, {}
        call = await self.suggester.ask(ranked[: self.shown], self.rules.max_symbols, _iso(server_ms))
        read = core.suggestions_of(call)
        if self.metrics:
            self.metrics.universe_suggestions.labels(outcome=read.failure or "ok").inc()
        if read.failure is not None:
            log.warning("universe.suggestions_failed", extra={"failure": read.failure, "detail": read.detail})
        else:
            log.info("universe.suggested", extra={"symbols": list(read.symbols), "detail": read.detail})
        return call, read.symbols

    def _count(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.universe_refreshes.labels(outcome=outcome).inc()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
