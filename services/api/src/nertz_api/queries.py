"""The read side: what the API serves, computed from the projections only (never from the bus).

Every function takes the pool and returns plain JSON-ready values: ``*_ns`` are UNIX nanoseconds,
prices and P&L in USDT, fractions as fractions. ``max_drawdown`` is in USDT, positive, measured on
the cumulative realized P&L curve (starting at 0) ordered by close time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

#: the per-symbol keys of :func:`summary` (the demo prints and stores exactly these)
SUMMARY_KEYS = ("bars", "intents", "approved", "rejected", "suppressed", "round_trips", "win_rate", "pnl_usdt",
                "max_drawdown")  # fmt: skip


def max_drawdown(pnls: Iterable[float]) -> float:
    """Return the largest peak-to-trough fall of the cumulative P&L curve.

    Parameters
    ----------
    pnls : iterable of float
        Realized P&L of each round trip, USDT, in close-time order.

    Returns
    -------
    float
        Maximum drawdown, USDT, ``>= 0``; the curve starts at 0, so a first losing trade is a drawdown.
    """
    equity = peak = worst = 0.0
    for p in pnls:
        equity += p
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def _row(r: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(r) if r is not None else None


async def known_symbols(pool: asyncpg.Pool, configured: Sequence[str]) -> list[str]:
    """Return the configured symbols followed by every other symbol seen on the log, sorted."""
    rows = await pool.fetch("SELECT symbol FROM symbols")
    return sorted(set(configured) | {r["symbol"] for r in rows})


async def config_changes(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Return the ``changes`` of every ``ConfigChanged`` projected so far, in log order."""
    rows = await pool.fetch("SELECT changes FROM config_changes ORDER BY stream_seq")
    return [msgspec.json.decode(r["changes"]) if isinstance(r["changes"], str) else r["changes"] for r in rows]


async def is_known(pool: asyncpg.Pool, symbol: str, configured: Sequence[str]) -> bool:
    """Return True when ``symbol`` is configured or was seen on the log."""
    if symbol in configured:
        return True
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM symbols WHERE symbol = $1)", symbol))


async def tracked_seq(pool: asyncpg.Pool, consumer: str = "projector") -> int:
    """Return the projector's committed stream sequence (0 before its first batch)."""
    seq = await pool.fetchval("SELECT stream_seq FROM projector_tracking WHERE consumer = $1", consumer)
    return int(seq or 0)


async def projections_created(pool: asyncpg.Pool) -> datetime | None:
    """Return when the projection database was created (its first migration), None before any."""
    return await pool.fetchval("SELECT min(applied_at) FROM schema_migrations")  # type: ignore[no-any-return]


async def trading_enabled(pool: asyncpg.Pool, symbols: Sequence[str]) -> tuple[bool, dict[str, bool]]:
    """Return whether trading is enabled overall and per symbol.

    The latest ``TradingStarted``/``TradingStopped`` in log order whose scope is ``all`` or the symbol
    is in force; with no command on the log, trading is enabled.
    """
    rows = await pool.fetch(
        "SELECT DISTINCT ON (scope) scope, kind, stream_seq FROM control ORDER BY scope, stream_seq DESC"
    )
    latest = {r["scope"]: r["kind"] for r in rows}
    seq = {r["scope"]: r["stream_seq"] for r in rows}
    overall = latest.get("all", "started") == "started"
    per: dict[str, bool] = {}
    for s in symbols:
        if s in latest and seq[s] > seq.get("all", 0):
            per[s] = latest[s] == "started"
        else:
            per[s] = overall
    return overall, per


async def halts(pool: asyncpg.Pool, symbol: str | None = None) -> dict[str, dict[str, Any]]:
    """Return the symbols reconciliation halts now, each with its latest halting ``VenueMismatch``.

    A halt holds until a later ``TradingStarted`` (in log order) for the symbol or for all (the
    ``venue_halts`` view, migration 0004), as the executor lifts it.
    """
    where, args = ("WHERE symbol = $1", [symbol]) if symbol else ("", [])
    rows = await pool.fetch(
        f"SELECT symbol, venue_name, reason, correlation_id, event_id, ts_event_ns, ts FROM venue_halts {where} "
        "ORDER BY symbol",
        *args,
    )
    return {r["symbol"]: dict(r) for r in rows}


async def status(pool: asyncpg.Pool, configured: Sequence[str], consumer: str = "projector") -> dict[str, Any]:
    """Return the projector position, whether trading is enabled, and per symbol the lock state, the
    last bar, the last price (ticker last price, else the last close) and whether reconciliation halted
    it, and why. A symbol's ``trading_enabled`` is the operators' switch in force and no halt."""
    symbols = await known_symbols(pool, configured)
    enabled, per_enabled = await trading_enabled(pool, symbols)
    halted = await halts(pool)
    locks = {r["symbol"]: r for r in await pool.fetch("SELECT * FROM locks")}
    bars = {r["symbol"]: r for r in await pool.fetch("SELECT * FROM last_bars")}
    tickers = {r["symbol"]: r for r in await pool.fetch("SELECT symbol, last_price, ts_event_ns FROM tickers")}
    out: dict[str, Any] = {}
    for s in symbols:
        lock, bar, tick, halt = locks.get(s), bars.get(s), tickers.get(s), halted.get(s)
        last_price = tick["last_price"] if tick and tick["last_price"] is not None else (bar["close"] if bar else None)
        out[s] = {
            "lock_state": lock["state"] if lock else "FLAT",
            "lock_reason": lock["reason"] if lock else None,
            "lock_since_ns": lock["since_ns"] if lock else None,
            "last_bar_open_time_ns": bar["open_time_ns"] if bar else None,
            "last_bar_open_time": bar["open_time"] if bar else None,
            "last_bar_closed": bar["closed"] if bar else None,
            "last_price": last_price,
            "trading_enabled": per_enabled[s] and halt is None,
            "halted": halt is not None,
            "halt_reason": halt["reason"] if halt else None,
            "halted_since_ns": halt["ts_event_ns"] if halt else None,
        }
    return {
        "trading_enabled": enabled,
        "projector": {"consumer": consumer, "stream_seq": await tracked_seq(pool, consumer)},
        "symbols": out,
    }


async def _per_symbol_counts(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = defaultdict(dict)

    async def put(sql: str) -> None:
        for r in await pool.fetch(sql):
            stats[r["symbol"]].update({k: v for k, v in r.items() if k != "symbol"})

    await put("SELECT symbol, count(*) AS bars FROM candles WHERE closed GROUP BY symbol")
    await put("SELECT symbol, count(*) AS intents FROM intents GROUP BY symbol")
    await put("SELECT symbol, approved, rejected, suppressed, risk_denied FROM decision_counts")
    await put("SELECT symbol, sum(fee_usdt) AS fees_usdt FROM fills GROUP BY symbol")
    return stats


def _perf(pnls: list[float]) -> dict[str, Any]:
    wins = sum(1 for p in pnls if p > 0)
    return {
        "round_trips": len(pnls),
        "wins": wins,
        "losses": len(pnls) - wins,
        "win_rate": wins / len(pnls) if pnls else 0.0,
        "pnl_usdt": float(sum(pnls)),
        "max_drawdown": max_drawdown(pnls),
    }


_ZERO = {"bars": 0, "intents": 0, "approved": 0, "rejected": 0, "suppressed": 0, "risk_denied": 0, "fees_usdt": 0.0}


async def profit(pool: asyncpg.Pool, configured: Sequence[str] = ()) -> dict[str, Any]:
    """Return the performance overall and per symbol.

    Keys: ``bars`` (closed candles), ``intents``, ``approved``/``rejected`` (verdicts; rejected by a
    policy), ``suppressed`` (intents that met the Hard Lock), ``risk_denied`` (see the
    ``decision_counts`` view, migration 0002), ``round_trips``, ``wins`` (P&L > 0), ``losses``, ``win_rate``
    (fraction; 0.0 without round trips), ``pnl_usdt`` (realized, net of fees), ``max_drawdown`` (USDT),
    ``fees_usdt`` (sum of fill fees). The overall drawdown is measured on the combined curve.
    """
    counts = await _per_symbol_counts(pool)
    trips = await pool.fetch("SELECT symbol, realized_pnl_usdt FROM round_trips ORDER BY closed_ns, event_id")
    pnls: dict[str, list[float]] = defaultdict(list)
    for r in trips:
        pnls[r["symbol"]].append(r["realized_pnl_usdt"])
    symbols = sorted(set(configured) | set(counts) | set(pnls) | {r["symbol"] for r in await pool.fetch(
        "SELECT symbol FROM symbols")})  # fmt: skip
    per = {s: {**_ZERO, **counts.get(s, {}), **_perf(pnls.get(s, []))} for s in symbols}
    for row in per.values():
        row["fees_usdt"] = float(row["fees_usdt"] or 0.0)
    overall = {k: sum(row[k] for row in per.values()) for k in _ZERO}
    overall.update(_perf([r["realized_pnl_usdt"] for r in trips]))
    return {"overall": overall, "symbols": per}


async def summary(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    """Return per symbol seen on the log exactly :data:`SUMMARY_KEYS` (the demo's printed summary).

    Values: counts as int; ``win_rate`` a fraction (0.0 without round trips); ``pnl_usdt`` and
    ``max_drawdown`` in USDT (see :func:`profit`).
    """
    per = (await profit(pool))["symbols"]
    return {s: {k: row[k] for k in SUMMARY_KEYS} for s, row in per.items()}


async def trades(pool: asyncpg.Pool, symbol: str, limit: int) -> list[dict[str, Any]]:
    """Return the symbol's round trips, newest first (at most ``limit``)."""
    rows = await pool.fetch(
        "SELECT event_id, position_id, correlation_id, side, qty, entry_price, exit_price, exit_reason, "
        "realized_pnl_usdt, fee_usdt, return_fraction, holding_ns, opened_ns, closed_ns, opened_at, closed_at "
        "FROM round_trips WHERE symbol = $1 ORDER BY closed_ns DESC, event_id DESC LIMIT $2",
        symbol,
        limit,
    )
    return [dict(r) for r in rows]


async def open_positions(pool: asyncpg.Pool, symbol: str) -> list[dict[str, Any]]:
    """Return the symbol's open positions."""
    rows = await pool.fetch(
        "SELECT position_id, correlation_id, side, qty, entry_price, take_profit, stop_loss, opened_ns, opened_at "
        "FROM positions WHERE symbol = $1 AND status = 'open' ORDER BY opened_ns",
        symbol,
    )
    return [dict(r) for r in rows]


async def candles(pool: asyncpg.Pool, symbol: str, limit: int, interval: str | None = None) -> dict[str, Any]:
    """Return the last ``limit`` candles of ``interval`` (default: that of the symbol's latest bar), oldest first."""
    if interval is None:
        interval = await pool.fetchval("SELECT interval FROM last_bars WHERE symbol = $1", symbol)
    rows = await pool.fetch(
        "SELECT open_time_ns, open_time, open, high, low, close, volume, turnover, closed FROM candles "
        "WHERE symbol = $1 AND interval = $2 ORDER BY open_time_ns DESC LIMIT $3",
        symbol,
        interval,
        limit,
    )
    return {"symbol": symbol, "interval": interval, "candles": [dict(r) for r in reversed(rows)]}


async def latest_snapshot(pool: asyncpg.Pool, symbol: str) -> dict[str, Any] | None:
    """Return the symbol's latest factor snapshot."""
    return _row(
        await pool.fetchrow(
            "SELECT event_id, bar_id, interval, ts_event_ns, ts, close, egm, ild, rol, pio, ogm, combined, used, "
            "ema_fast, ema_mid, ema_slow, trend, atr, regime, intent_id, veto FROM factor_snapshots "
            "WHERE symbol = $1 ORDER BY ts_event_ns DESC, stream_seq DESC LIMIT 1",
            symbol,
        )
    )


async def symbol_metrics(pool: asyncpg.Pool, symbol: str) -> dict[str, Any]:
    """Return the latest factor snapshot and the decision counts of one symbol."""
    counts = await pool.fetchrow(
        """SELECT
             (SELECT count(*) FROM candles WHERE symbol = $1 AND closed) AS bars,
             (SELECT count(*) FROM factor_snapshots WHERE symbol = $1) AS factor_snapshots,
             (SELECT count(*) FROM factor_snapshots WHERE symbol = $1 AND veto IS NOT NULL) AS vetoed,
             (SELECT count(*) FROM intents WHERE symbol = $1) AS intents,
             (SELECT approved FROM decision_counts WHERE symbol = $1) AS approved,
             (SELECT rejected FROM decision_counts WHERE symbol = $1) AS rejected,
             (SELECT suppressed FROM decision_counts WHERE symbol = $1) AS suppressed,
             (SELECT risk_denied FROM decision_counts WHERE symbol = $1) AS risk_denied,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'submitted') AS orders_submitted,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'rejected') AS orders_rejected,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'expired') AS entries_expired,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'accepted') AS orders_accepted,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'refused') AS orders_refused,
             (SELECT count(*) FROM orders WHERE symbol = $1 AND kind = 'canceled') AS orders_canceled,
             (SELECT count(*) FROM fills WHERE symbol = $1) AS fills,
             (SELECT count(*) FROM venue_mismatches WHERE symbol = $1) AS mismatches,
             (SELECT count(*) FROM round_trips WHERE symbol = $1) AS round_trips""",
        symbol,
    )
    weights = await pool.fetch(
        "SELECT DISTINCT ON (interval) interval, bar_id, ts_event_ns, ts, weights, multipliers, accuracy, calls, "
        "retired, reason FROM factor_weights WHERE symbol = $1 ORDER BY interval, stream_seq DESC",
        symbol,
    )
    return {
        "symbol": symbol,
        "factors": await latest_snapshot(pool, symbol),
        "counts": dict(counts),
        "weights": [{k: msgspec.json.decode(v) if k in _JSONB else v for k, v in dict(r).items()} for r in weights],
    }


_JSONB = frozenset({"weights", "multipliers", "accuracy", "calls", "retired"})


async def decisions(pool: asyncpg.Pool, symbol: str, limit: int) -> list[dict[str, Any]]:
    """Return the symbol's latest ``limit`` intents, newest first, each with what followed it by
    correlation id: verdicts → suppressions (and risk denials) → orders → fills → position → round trip."""
    intents = await pool.fetch(
        "SELECT event_id, correlation_id, causation_id, ts_event_ns, ts, side, entry_price, take_profit, stop_loss, "
        "qty, notional_usdt, leverage, sl_distance, tp_distance, combined, trend, regime, reasons FROM intents "
        "WHERE symbol = $1 ORDER BY ts_event_ns DESC, stream_seq DESC LIMIT $2",
        symbol,
        limit,
    )
    ids_ = [r["correlation_id"] for r in intents]

    async def grouped(sql: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in await pool.fetch(sql, ids_):
            d = dict(r)
            out[d.pop("correlation_id")].append(d)
        return out

    verdicts = await grouped(
        "SELECT correlation_id, event_id, ts_event_ns, decision, confidence, size_multiplier, policy, reasons, "
        "risk_flags, model, prompt_hash, latency_ms, tokens_in, tokens_out FROM verdicts "
        "WHERE correlation_id = ANY($1) ORDER BY stream_seq"
    )
    suppressions = await grouped(
        "SELECT correlation_id, event_id, kind, ts_event_ns, reason, rule, lock_state, decision FROM suppressed "
        "WHERE correlation_id = ANY($1) ORDER BY stream_seq"
    )
    orders = await grouped(
        "SELECT correlation_id, event_id, kind, order_id, ts_event_ns, side, order_type, qty, price_ref, take_profit, "
        "stop_loss, reduce_only, venue_name, reason, venue_order_id, ret_code, filled_qty FROM orders "
        "WHERE correlation_id = ANY($1) ORDER BY stream_seq"
    )
    fills = await grouped(
        "SELECT correlation_id, event_id, order_id, fill_id, ts_event_ns, side, qty, price, fee_usdt, liquidity, "
        "reduce_only, venue_order_id, leaves_qty, exit_reason FROM fills WHERE correlation_id = ANY($1) "
        "ORDER BY stream_seq"
    )
    positions = await grouped(
        "SELECT correlation_id, position_id, status, side, qty, entry_price, exit_price, exit_reason, "
        "realized_pnl_usdt, opened_ns, closed_ns FROM positions WHERE correlation_id = ANY($1)"
    )
    out = []
    for r in intents:
        cid = r["correlation_id"]
        out.append(
            {
                "intent": dict(r),
                "verdicts": verdicts.get(cid, []),
                "suppressions": suppressions.get(cid, []),
                "orders": orders.get(cid, []),
                "fills": fills.get(cid, []),
                "positions": positions.get(cid, []),
            }
        )
    return out


async def ticker(pool: asyncpg.Pool, symbol: str) -> dict[str, Any] | None:
    """Return the symbol's latest ticker."""
    return _row(
        await pool.fetchrow(
            "SELECT last_price, mark_price, index_price, bid1_price, ask1_price, funding_rate, funding_interval_h, "
            "next_funding_time_ns, open_interest, turnover_24h, volume_24h, ts_event_ns, ts FROM tickers "
            "WHERE symbol = $1",
            symbol,
        )
    )


async def orderbook(pool: asyncpg.Pool, symbol: str) -> dict[str, Any] | None:
    """Return the symbol's latest book snapshot: levels (``[[price, qty], ...]``), top, mid and spread."""
    row = await pool.fetchrow(
        "SELECT best_bid, best_bid_qty, best_ask, best_ask_qty, mid, spread, spread_bps, bids::text AS bids, "
        "asks::text AS asks, depth, update_id, ts_event_ns, ts FROM book_tops WHERE symbol = $1",
        symbol,
    )
    if row is None:
        return None
    d = dict(row)
    d["bids"] = msgspec.json.decode(d["bids"])
    d["asks"] = msgspec.json.decode(d["asks"])
    return d


async def market_data(pool: asyncpg.Pool, symbol: str) -> dict[str, Any]:
    """Return everything known about the symbol's market: last candle, ticker, top of book (no levels),
    instrument rules, the latest feed status and the latest factor snapshot."""
    last = await candles(pool, symbol, 1)
    book = await orderbook(pool, symbol)
    if book is not None:
        book.pop("bids")
        book.pop("asks")
    instrument = _row(
        await pool.fetchrow(
            "SELECT tick_size, qty_step, min_order_qty, max_leverage, ts_event_ns FROM instruments WHERE symbol = $1",
            symbol,
        )
    )
    feed = _row(
        await pool.fetchrow(
            "SELECT kind, topic, reason, stale_s, ts_event_ns, ts FROM feed_status WHERE symbol = $1 "
            "ORDER BY stream_seq DESC LIMIT 1",
            symbol,
        )
    )
    return {
        "symbol": symbol,
        "candle": last["candles"][-1] if last["candles"] else None,
        "ticker": await ticker(pool, symbol),
        "book": book,
        "instrument": instrument,
        "feed": feed,
        "factors": await latest_snapshot(pool, symbol),
    }


async def llm(pool: asyncpg.Pool) -> dict[str, Any]:
    """Return what the model did: calls by model, role and outcome (count, median latency ms, tokens, cost
    USD), verdicts by policy and decision, fail-closed rejects by reason."""
    calls = await pool.fetch(
        "SELECT model, role, outcome, count(*) AS calls, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS median_latency_ms, "
        "sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd "
        "FROM model_calls GROUP BY model, role, outcome ORDER BY model, role, outcome"
    )
    verdicts = await pool.fetch(
        "SELECT policy, decision, count(*) AS n FROM verdicts GROUP BY policy, decision ORDER BY policy, decision"
    )
    failed = await pool.fetch(
        "SELECT failure, count(*) AS n FROM verdicts WHERE failure IS NOT NULL GROUP BY failure ORDER BY n DESC"
    )
    return {
        "calls": [dict(r) for r in calls],
        "verdicts": [dict(r) for r in verdicts],
        "fail_closed": {r["failure"]: r["n"] for r in failed},
        "cost_usd": sum(float(r["cost_usd"] or 0) for r in calls),
    }


async def overrides(pool: asyncpg.Pool, symbol: str | None, at_ns: int | None, limit: int) -> dict[str, Any]:
    """Return the circuit breaker's reviews (newest first) and the overrides in force at ``at_ns``
    (default: the symbol's latest bar time, i.e. the log's clock)."""
    where, args = ("WHERE symbol = $1", [symbol]) if symbol else ("", [])
    reviews = await pool.fetch(
        f"SELECT event_id, symbol, ts_event_ns, ts, trigger, policy, refused, note FROM risk_reviews {where} "
        f"ORDER BY ts_event_ns DESC LIMIT {int(limit)}",
        *args,
    )
    if at_ns is None:
        clock = await pool.fetchval("SELECT max(ts_event_ns) FROM last_bars")
        at_ns = int(clock or 0)
    active = await pool.fetch(
        "SELECT override_id, review_id, symbol, kind, value, side, from_ns, until_ns, reason FROM risk_overrides "
        "WHERE until_ns > $1 AND from_ns <= $1" + (" AND symbol = $2" if symbol else "") + " ORDER BY until_ns",
        at_ns,
        *args,
    )
    return {"at_ns": at_ns, "active": [dict(r) for r in active], "reviews": [dict(r) for r in reviews]}


async def shadows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Return, per shadow validator, its agreement with the live validator and what it would have earned."""
    rows = await pool.fetch("SELECT * FROM shadow_agreement ORDER BY shadow")
    out = []
    for r in rows:
        d = dict(r)
        d["agreement"] = d["agreed"] / d["judged"] if d["judged"] else None
        out.append(d)
    return out


_VENUE_POSITION = (
    "venue_name, symbol, source, side, qty, entry_price, mark_price, take_profit, stop_loss, trailing_stop, leverage, "
    "unrealized_pnl_usdt, ts_event_ns, ts"
)
_MISMATCH = "event_id, symbol, venue_name, correlation_id, causation_id, action, reason, ts_event_ns, ts"


async def venue(pool: asyncpg.Pool, limit: int) -> dict[str, Any]:
    """Return what the real venues reported and what reconciliation made of it: the latest position per
    venue and symbol (``side`` None and ``qty`` 0 for none), the latest wallet per venue (USDT), the
    symbols halted now with the reason, the latest ``limit`` mismatches (newest first), and funding
    paid per symbol (USDT, > 0 paid by the account)."""
    positions = await pool.fetch(f"SELECT {_VENUE_POSITION} FROM venue_positions ORDER BY venue_name, symbol")
    wallets = await pool.fetch(
        "SELECT venue_name, equity_usdt, wallet_balance_usdt, available_usdt, unrealized_pnl_usdt, ts_event_ns, ts "
        "FROM venue_wallet ORDER BY venue_name"
    )
    mismatches = await pool.fetch(f"SELECT {_MISMATCH} FROM venue_mismatches ORDER BY stream_seq DESC LIMIT $1", limit)
    funding = await pool.fetch(
        "SELECT symbol, venue_name, count(*) AS payments, sum(fee_usdt) AS fee_usdt FROM funding "
        "GROUP BY symbol, venue_name ORDER BY symbol, venue_name"
    )
    return {
        "positions": [dict(r) for r in positions],
        "wallets": [dict(r) for r in wallets],
        "halted": list((await halts(pool)).values()),
        "mismatches": [dict(r) for r in mismatches],
        "funding": [dict(r) for r in funding],
    }


async def venue_symbol(pool: asyncpg.Pool, symbol: str, limit: int) -> dict[str, Any]:
    """Return one symbol's venue view: its latest position per venue, its halt (None when not halted),
    its latest ``limit`` mismatches and funding payments (newest first) and the funding total (USDT)."""
    positions = await pool.fetch(
        f"SELECT {_VENUE_POSITION} FROM venue_positions WHERE symbol = $1 ORDER BY venue_name", symbol
    )
    mismatches = await pool.fetch(
        f"SELECT {_MISMATCH} FROM venue_mismatches WHERE symbol = $1 ORDER BY stream_seq DESC LIMIT $2", symbol, limit
    )
    funding = await pool.fetch(
        "SELECT event_id, fill_id, venue_name, correlation_id, ts_event_ns, ts, fee_usdt, rate, position_value_usdt "
        "FROM funding WHERE symbol = $1 ORDER BY stream_seq DESC LIMIT $2",
        symbol,
        limit,
    )
    total = await pool.fetchval("SELECT coalesce(sum(fee_usdt), 0) FROM funding WHERE symbol = $1", symbol)
    return {
        "symbol": symbol,
        "positions": [dict(r) for r in positions],
        "halt": (await halts(pool, symbol)).get(symbol),
        "mismatches": [dict(r) for r in mismatches],
        "funding": [dict(r) for r in funding],
        "funding_usdt": float(total),
    }
