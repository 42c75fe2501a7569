"""The projector: the whole ``NERTZ`` log into Postgres read models, one transaction per fetched batch.

Each batch's effect and the tracking row ``projector_tracking(consumer, stream_seq)`` are written in one
asyncpg transaction, then the batch is acked (ARCHITECTURE.md §3 "api"; the eventsourcing pattern of a
tracking record next to the view). Invariant: a tracked sequence ``T`` means every message with a
sequence ``<= T`` is projected (or was unprojectable and dead-lettered). So:

- a delivery with ``stream_seq <= T`` is a redelivery and is skipped (acked, no effect);
- the projector consumes every subject of the stream, so sequences are contiguous: if the first new
  delivery is beyond ``T + 1`` (a crash left a batch unacked while the server kept delivering newer
  messages, or a poison message was terminated at fetch), the missing sequences are read from the
  stream directly and projected in the same transaction. Nothing is ever skipped by a gap;
- fact rows are keyed by the ``event_id`` that stated them (``ON CONFLICT DO NOTHING``) and "latest"
  rows only move forward by ``stream_seq``, so even a replay that ignores the tracking row changes
  nothing.

Rows are grouped per statement. A batch's statement of many rows goes by binary ``COPY``: a fact
straight into its table (if one of its rows is there already, a replay, that copy is undone and the
rows take the next way), any other into a temporary staging table, moved into its table by one
``INSERT ... SELECT ... ON CONFLICT``; either costs Postgres about 40 % less per row than an
``executemany`` execution each (and asyncpg no more). A statement of few rows, and one message's
rows, go by ``executemany`` (one pipelined round trip). The lock's connection commits
asynchronously (see ``_ASYNC_COMMIT``).
"Latest" tables (tickers, book tops, instruments, current lock, candles of the same bar, the venue's
positions and wallet) keep one row per key and batch, which turns ~10 book updates per second into
one write per batch.

Errors: connection-level failures become :class:`nertz_common.errors.TransientError` (the batch is
retried in place). A row Postgres rejects (a data or constraint error, e.g. a NUL byte in a text
field) makes the batch fall back to one savepoint per message: the good ones are projected, each
rejected one is dead-lettered alone (``DeadLettered`` on ``sys.dlq.api``, published before the commit
so it cannot be lost) and the batch commits. Anything else (a bug: unknown column...) propagates and
stops the service; redelivery resumes the work after a restart.

Only one projector may write a database: a session advisory lock (per consumer name) is held for the
lifetime of :meth:`Projector.run`, on the connection that writes the batches; a second instance waits
for it (hot standby).

A database outage is waited out, for as long as it lasts: the batch in hand is retried in place with
backoff (the runner's), the projector reports itself paused (``projector.paused`` with the reason, the
``nertz_api_projector_paused`` gauge, ``nertz_api_projector_pauses_total{reason}``) and resumes
(``projector.resumed``) once a batch commits again. The lock died with its connection, so it is taken
again first; if another instance took it meanwhile, this one goes back to standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import nats.errors
import nats.js.errors
import prometheus_client as prom
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from nertz_common import bus, lock, subjects
from nertz_common import events as ev
from nertz_common.errors import TransientError
from nertz_common.metrics import LATENCY_BUCKETS, BusMetrics
from nertz_common.node.nats_runner import ProjectionRunner

log = logging.getLogger("nertz.api.projector")

Row = tuple[Any, ...]

#: sqlstate classes of a row Postgres refuses: data exception, integrity constraint violation
_REJECTED_CLASSES = ("22", "23")
#: sqlstate classes worth a retry: connection, transaction rollback (serialization, deadlock),
#: insufficient resources, operator intervention (shutdown), system error
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")


#: pause reasons (the ``reason`` label of ``nertz_api_projector_pauses_total``)
DATABASE_UNAVAILABLE = "database_unavailable"
BUS_UNAVAILABLE = "bus_unavailable"


class Unencodable(Exception):
    """asyncpg could not encode a row's value for ``COPY`` (``executemany`` reports it as ``DataError``)."""


class ProjectionMismatch(Exception):
    """The database tracks a position the stream never reached: it belongs to another stream."""


class DatabaseUnavailable(TransientError):
    """The projection database cannot be reached (down, restarting, connection lost): retry later."""


class LockLost(Exception):
    """The projector lock died with its connection and another instance holds it now."""


def is_rejected(e: BaseException) -> bool:
    """Return True when ``e`` says Postgres (or asyncpg's encoder) refused a row's values."""
    if isinstance(e, asyncpg.exceptions.DataError | Unencodable):
        return True
    return isinstance(e, asyncpg.PostgresError) and str(e.sqlstate or "")[:2] in _REJECTED_CLASSES


def is_transient(e: BaseException) -> bool:
    """Return True when ``e`` is a connection-level failure that a retry may cure."""
    if isinstance(e, asyncpg.PostgresError):
        return str(e.sqlstate or "")[:2] in _TRANSIENT_CLASSES
    if isinstance(e, asyncpg.exceptions.DataError):
        return False
    # InternalClientError: a connection left mid-operation when its backend died ("another operation
    # is in progress"): a fresh connection cures it
    return isinstance(
        e, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError | OSError | TimeoutError | ConnectionError
    )


def _lost(conn: asyncpg.Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took the connection back when it closed
        return True


# --- statements ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One upsert into ``table``: its columns and what happens ``ON CONFLICT``.

    Written row by row (:attr:`sql`, by ``executemany``), or as a whole by a binary ``COPY`` into a
    staging table (:meth:`stage_sql`) and one ``INSERT ... SELECT`` from it (:meth:`from_stage`).
    """

    table: str
    cols: tuple[str, ...]
    conflict: str

    @property
    def sql(self) -> str:
        """``INSERT INTO table (cols) VALUES ($1, ...) ON CONFLICT ...``."""
        values = ", ".join(f"${i}" for i in range(1, len(self.cols) + 1))
        return f"INSERT INTO {self.table} ({', '.join(self.cols)}) VALUES ({values}) ON CONFLICT {self.conflict}"

    @property
    def upserts(self) -> bool:
        """True when a conflict updates the row (one ``INSERT`` may not update a row twice)."""
        return "DO UPDATE" in self.conflict

    def stage_sql(self, stage: str) -> str:
        """Create the staging table ``stage`` (temporary, emptied at every commit) of this statement's
        columns, unless the session has it (a pooled connection keeps it from an earlier user)."""
        cols = ", ".join(self.cols)
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS SELECT {cols} FROM {self.table} "
            "WITH NO DATA"
        )

    def from_stage(self, stage: str) -> str:
        """``INSERT INTO table (cols) SELECT cols FROM pg_temp.<stage> ON CONFLICT ...``."""
        cols = ", ".join(self.cols)
        return f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM pg_temp.{stage} ON CONFLICT {self.conflict}"


def _insert(table: str, cols: str, conflict: str = "DO NOTHING") -> Statement:
    return Statement(table, tuple(c.strip() for c in cols.split(",")), conflict)


def _latest(table: str, key: str, cols: str) -> Statement:
    """An upsert of the row per ``key`` (one column, or several: ``"venue_name, symbol"``) that only moves
    forward by ``stream_seq``."""
    names = [c.strip() for c in cols.split(",")]
    keys = {k.strip() for k in key.split(",")}
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in keys)
    return _insert(table, cols, f"({key}) DO UPDATE SET {sets} WHERE {table}.stream_seq < EXCLUDED.stream_seq")


_CANDLE_COLS = (
    "symbol, interval, open_time_ns, open, high, low, close, volume, turnover, closed, "
    "ts_event_ns, event_id, stream_seq"
)
_CANDLE_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _CANDLE_COLS.split(", ")[3:])

_LAST_BAR_COLS = "symbol, interval, open_time_ns, close, closed, ts_event_ns, event_id, stream_seq"
_LAST_BAR_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _LAST_BAR_COLS.split(", ")[1:])

_VENUE_POSITION_COLS = (
    "side, qty, entry_price, mark_price, take_profit, stop_loss, trailing_stop, leverage, unrealized_pnl_usdt, "
    "ts_event_ns"
)
_WALLET_COLS = "equity_usdt, wallet_balance_usdt, available_usdt, unrealized_pnl_usdt, ts_event_ns"

#: statement name -> statement, in the order a batch writes them (positions: open before close)
STATEMENTS: dict[str, Statement] = {
    "symbols": _insert("symbols", "symbol, venue, market, first_seen_ns, first_stream_seq"),
    "candles": _insert(
        "candles",
        _CANDLE_COLS,
        f"(symbol, interval, open_time_ns) DO UPDATE SET {_CANDLE_SET} "
        "WHERE candles.stream_seq < EXCLUDED.stream_seq AND (EXCLUDED.closed OR NOT candles.closed)",
    ),
    "last_bars": _insert(
        "last_bars",
        _LAST_BAR_COLS,
        f"(symbol) DO UPDATE SET {_LAST_BAR_SET} WHERE last_bars.stream_seq < EXCLUDED.stream_seq "
        "AND (EXCLUDED.open_time_ns > last_bars.open_time_ns OR (EXCLUDED.open_time_ns = last_bars.open_time_ns "
        "AND (EXCLUDED.closed OR NOT last_bars.closed)))",
    ),
    "tickers": _latest(
        "tickers",
        "symbol",
        "symbol, last_price, mark_price, index_price, bid1_price, ask1_price, funding_rate, funding_interval_h, "
        "next_funding_time_ns, open_interest, turnover_24h, volume_24h, ts_event_ns, event_id, stream_seq",
    ),
    "book_tops": _latest(
        "book_tops",
        "symbol",
        "symbol, best_bid, best_bid_qty, best_ask, best_ask_qty, mid, spread, spread_bps, bids, asks, depth, "
        "update_id, seq, ts_event_ns, event_id, stream_seq",
    ),
    "trades": _insert("trades", "symbol, trade_id, ts_event_ns, price, qty, side, event_id, stream_seq"),
    "instruments": _latest(
        "instruments",
        "symbol",
        "symbol, tick_size, qty_step, min_order_qty, max_leverage, ts_event_ns, event_id, stream_seq",
    ),
    "feed_status": _insert(
        "feed_status", "event_id, symbol, kind, topic, reason, stale_s, update_id, ts_event_ns, stream_seq"
    ),
    "factor_snapshots": _insert(
        "factor_snapshots",
        "event_id, symbol, bar_id, interval, ts_event_ns, close, egm, ild, rol, pio, ogm, combined, used, "
        "ema_fast, ema_mid, ema_slow, trend, atr, regime, intent_id, veto, stream_seq",
    ),
    "intents": _insert(
        "intents",
        "event_id, symbol, correlation_id, causation_id, ts_event_ns, side, entry_price, take_profit, stop_loss, "
        "qty, notional_usdt, leverage, sl_distance, tp_distance, combined, trend, regime, reasons, stream_seq",
    ),
    "verdicts": _insert(
        "verdicts",
        "event_id, symbol, correlation_id, causation_id, ts_event_ns, decision, confidence, size_multiplier, "
        "policy, reasons, risk_flags, model, prompt_hash, raw_text, latency_ms, tokens_in, tokens_out, prompt_id, "
        "request_id, cost_usd, failure, overrides, stream_seq",
    ),
    "model_calls": _insert(
        "model_calls",
        "event_id, ordinal, kind, symbol, correlation_id, ts_event_ns, role, model, prompt_id, prompt_sha256, "
        "outcome, finish_reason, status_code, error_code, request_id, latency_ms, attempts, tokens_in, tokens_out, "
        "cost_usd, stream_seq",
        "(event_id, ordinal) DO NOTHING",
    ),
    "risk_reviews": _insert(
        "risk_reviews",
        "event_id, symbol, correlation_id, causation_id, ts_event_ns, trigger, policy, refused, note, stream_seq",
    ),
    "risk_overrides": _insert(
        "risk_overrides",
        "override_id, review_id, symbol, kind, value, side, from_ns, until_ns, reason, stream_seq",
    ),
    "shadow_verdicts": _insert(
        "shadow_verdicts",
        "event_id, shadow, symbol, correlation_id, ts_event_ns, decision, confidence, size_multiplier, policy, "
        "reasons, model, prompt_id, failure, stream_seq",
    ),
    "verdicts_awaited": _insert(
        "verdicts_awaited", "event_id, symbol, correlation_id, causation_id, ts_event_ns, lock_state, stream_seq"
    ),
    "suppressed": _insert(
        "suppressed",
        "event_id, kind, symbol, correlation_id, causation_id, ts_event_ns, reason, rule, lock_state, decision, "
        "stream_seq",
    ),
    "orders": _insert(
        "orders",
        "event_id, kind, order_id, symbol, correlation_id, causation_id, ts_event_ns, side, order_type, qty, "
        "price_ref, take_profit, stop_loss, reduce_only, venue_name, reason, venue_order_id, ret_code, filled_qty, "
        "stream_seq",
    ),
    "fills": _insert(
        "fills",
        "event_id, order_id, fill_id, symbol, correlation_id, causation_id, ts_event_ns, side, qty, price, "
        "fee_usdt, liquidity, reduce_only, venue_name, venue_order_id, leaves_qty, exit_reason, stream_seq",
    ),
    "venue_positions": _latest(
        "venue_positions",
        "venue_name, symbol",
        f"venue_name, symbol, source, {_VENUE_POSITION_COLS}, event_id, stream_seq",
    ),
    "reconciled_positions": _insert(
        "reconciled_positions", f"event_id, venue_name, symbol, {_VENUE_POSITION_COLS}, stream_seq"
    ),
    "venue_wallet": _latest("venue_wallet", "venue_name", f"venue_name, {_WALLET_COLS}, event_id, stream_seq"),
    "venue_wallet_history": _insert("venue_wallet_history", f"event_id, venue_name, {_WALLET_COLS}, stream_seq"),
    "funding": _insert(
        "funding",
        "event_id, fill_id, symbol, venue_name, correlation_id, causation_id, ts_event_ns, fee_usdt, rate, "
        "position_value_usdt, stream_seq",
    ),
    "venue_mismatches": _insert(
        "venue_mismatches",
        "event_id, symbol, venue_name, correlation_id, causation_id, action, reason, ts_event_ns, stream_seq",
    ),
    "positions_open": _insert(
        "positions",
        "position_id, symbol, correlation_id, side, qty, entry_price, take_profit, stop_loss, entry_fee_usdt, "
        "opened_ns, open_event_id, status, stream_seq",
    ),
    "positions_close": _insert(
        "positions",
        "position_id, symbol, correlation_id, side, qty, entry_price, opened_ns, status, exit_price, exit_reason, "
        "realized_pnl_usdt, closed_ns, close_event_id, stream_seq",
        "(position_id) DO UPDATE SET status = 'closed', exit_price = EXCLUDED.exit_price, "
        "exit_reason = EXCLUDED.exit_reason, realized_pnl_usdt = EXCLUDED.realized_pnl_usdt, "
        "closed_ns = EXCLUDED.closed_ns, close_event_id = EXCLUDED.close_event_id, stream_seq = EXCLUDED.stream_seq "
        "WHERE positions.close_event_id IS DISTINCT FROM EXCLUDED.close_event_id",
    ),
    "round_trips": _insert(
        "round_trips",
        "event_id, position_id, symbol, correlation_id, side, qty, entry_price, exit_price, exit_reason, "
        "realized_pnl_usdt, fee_usdt, return_fraction, holding_ns, opened_ns, closed_ns, stream_seq",
    ),
    "stop_moves": _insert(
        "stop_moves",
        "event_id, position_id, symbol, correlation_id, causation_id, venue_name, phase, stop_loss, take_profit, "
        "trailing_distance, active_price, reason, ts_event_ns, stream_seq",
    ),
    "position_reductions": _insert(
        "position_reductions",
        "event_id, position_id, symbol, correlation_id, causation_id, order_id, side, qty_closed, qty_left, "
        "entry_price, exit_price, exit_reason, realized_pnl_usdt, fee_usdt, ts_event_ns, stream_seq",
    ),
    "lock_history": _insert(
        "lock_history", "event_id, symbol, state, reason, event_type, correlation_id, ts_event_ns, stream_seq"
    ),
    "locks": _latest(
        "locks", "symbol", "symbol, state, reason, event_type, correlation_id, since_ns, event_id, stream_seq"
    ),
    "control": _insert("control", "event_id, kind, scope, actor, reason, ts_event_ns, stream_seq"),
    "factor_weights": _insert(
        "factor_weights",
        "event_id, symbol, interval, bar_id, weights, multipliers, accuracy, calls, retired, reason, ts_event_ns, "
        "stream_seq",
    ),
    "config_changes": _insert("config_changes", "event_id, changes, actor, reason, ts_event_ns, stream_seq"),
    "manual_trades": _insert("manual_trades", "event_id, symbol, side, actor, reason, ts_event_ns, stream_seq"),
    "notifications": _insert(
        "notifications",
        "event_id, channel, source_event_id, kind, chat_id, message_id, reply_to_message_id, ts_event_ns, stream_seq",
    ),
    "universe_changes": _insert(
        "universe_changes",
        "event_id, symbols, added, removed, candidates, min_turnover_usdt, max_spread, max_symbols, source, "
        "ts_event_ns, stream_seq",
    ),
    "dead_letters": _insert(
        "dead_letters", "event_id, service, reason, subject, failed_stream_seq, raw, ts_event_ns, stream_seq"
    ),
    "news_assessments": _insert(
        "news_assessments",
        "event_id, symbol, trigger, request_id, window_days, impact, key_events, critical, summary, failure, "
        "failure_detail, model, prompt_id, prompt_sha256, raw_text, latency_ms, tokens_in, tokens_out, cost_usd, "
        "ts_event_ns, stream_seq",
    ),
    "news_requests": _insert("news_requests", "event_id, symbol, actor, reason, ts_event_ns, stream_seq"),
}

#: waits between two attempts while the database is unreachable (the last one repeats), s
_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)

#: a batch's statement of fewer rows goes by ``executemany`` (a copy and a move cost two round trips)
_COPY_MIN_ROWS = 16
#: staging tables are ``pg_temp.<prefix><statement name>``, one per statement and connection
_STAGE_PREFIX = "nertz_stage_"
_STAGES_GET = "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()"

#: the lock's connection commits without waiting for the WAL flush: a crash of Postgres may lose the
#: last few commits (~3 × wal_writer_delay), each whole with its tracking row, so the view stays
#: consistent and those batches are projected again from the stream (the projector reads the
#: tracking row anew for each batch and fills a gap before it); the wait was ~10 % of a batch
_ASYNC_COMMIT = "SET synchronous_commit TO off"

_TRACKING_GET = "SELECT stream_seq FROM projector_tracking WHERE consumer = $1 FOR UPDATE"
_TRACKING_SET = (
    "INSERT INTO projector_tracking (consumer, stream_seq, updated_at) VALUES ($1, $2, now()) "
    "ON CONFLICT (consumer) DO UPDATE SET stream_seq = EXCLUDED.stream_seq, updated_at = now() "
    "WHERE projector_tracking.stream_seq < EXCLUDED.stream_seq"
)


# --- event -> rows ------------------------------------------------------------------------------


def _closed_wins(old: Row, new: Row) -> bool:
    return bool(new[9]) or not old[9]  # candles: column 9 = closed


def _later_bar_wins(old: Row, new: Row) -> bool:
    # last_bars: column 2 = open_time_ns, 4 = closed
    return new[2] > old[2] or (new[2] == old[2] and (bool(new[4]) or not old[4]))


def _json(levels: list[tuple[float, float]]) -> str:
    return msgspec.json.encode(levels).decode()


class Writes:
    """The rows one batch (or one message) writes, per statement, in log order.

    "Latest" statements keep one row per key: the later one in log order, unless ``wins(old, new)``
    says otherwise (a closed candle wins over a later open update of the same bar).

    Parameters
    ----------
    known_symbols : set[str]
        Symbols already in the ``symbols`` table (not written again).
    """

    def __init__(self, known_symbols: set[str]) -> None:
        self._known = known_symbols
        self.rows: dict[str, list[Row]] = {}
        self.keyed: dict[str, dict[Any, Row]] = {}
        self.new_symbols: set[str] = set()

    def fact(self, stmt: str, row: Row) -> None:
        """Add a row to ``stmt`` (a fact: every row is written)."""
        self.rows.setdefault(stmt, []).append(row)

    def latest(self, stmt: str, key: Any, row: Row, wins: Callable[[Row, Row], bool] | None = None) -> None:
        """Add a row to ``stmt`` keeping one per ``key``: ``row`` replaces the held one if ``wins(old, new)``
        (always, when ``wins`` is None). ``key`` is the statement's conflict target, so that one
        ``INSERT`` of the batch's rows never meets a row twice."""
        rows = self.keyed.setdefault(stmt, {})
        old = rows.get(key)
        if old is None or wins is None or wins(old, row):
            rows[key] = row

    def add(self, event: ev.Event, seq: int) -> None:
        """Add the rows of one event at stream sequence ``seq``."""
        if isinstance(event, ev.InstrumentEvent) and event.symbol not in self._known:
            self._new_symbol(event, seq)
        on = _HANDLERS.get(type(event))
        if on is not None:
            on(self, event, seq)

    def _new_symbol(self, event: ev.InstrumentEvent, seq: int) -> None:
        if event.symbol not in self.new_symbols:
            self.new_symbols.add(event.symbol)
            self.fact("symbols", (event.symbol, event.venue, event.market, event.ts_event, seq))

    async def flush(self, conn: asyncpg.Connection, *, copy: bool = False, staged: set[str] | None = None) -> int:
        """Write every statement's rows; return the number of rows sent.

        With ``copy`` (a whole batch), a statement of at least ``_COPY_MIN_ROWS`` rows goes by binary
        ``COPY``: a fact that does nothing on conflict straight into its table (in a savepoint: if a
        row is there already, the copy is undone and the rows are staged instead), any other into
        its staging table (``pg_temp``, emptied at every commit), moved by one ``INSERT ... SELECT``.
        The others go by ``executemany``, as does a fact statement that updates on conflict (its rows
        may meet one row twice, which one ``INSERT`` refuses) and every statement without ``copy``
        (one message's rows). ``staged`` names the staging tables known to exist on ``conn`` (None:
        look them up); those made here are added to it, so a caller whose transaction rolls back
        must forget them.

        Raises
        ------
        Unencodable
            If asyncpg cannot encode a copied value (rejected, as Postgres' data errors are).
        asyncpg.PostgresError
            What Postgres refuses (see :func:`is_rejected`, :func:`is_transient`).
        """
        n = 0
        for name, stmt in STATEMENTS.items():
            fact = name in self.rows
            rows = self.rows[name] if fact else list(self.keyed.get(name, {}).values())
            if not rows:
                continue
            n += len(rows)
            if not copy or len(rows) < _COPY_MIN_ROWS or (fact and stmt.upserts):
                await conn.executemany(stmt.sql, rows)
                continue
            if fact and await self._copy_new(conn, stmt, rows):
                continue
            if staged is None:
                staged = {r[0] for r in await conn.fetch(_STAGES_GET)}
            stage = _STAGE_PREFIX + name
            if stage not in staged:
                await conn.execute(stmt.stage_sql(stage))
                staged.add(stage)
            await self._copy(conn, stage, "pg_temp", stmt, rows)
            await conn.execute(stmt.from_stage(stage))
        return n

    @staticmethod
    async def _copy_new(conn: asyncpg.Connection, stmt: Statement, rows: list[Row]) -> bool:
        """Copy the rows of a fact straight into its table; False (nothing written) if one is there already."""
        try:
            async with conn.transaction():
                await Writes._copy(conn, stmt.table, None, stmt, rows)
        except asyncpg.UniqueViolationError:
            return False  # a redelivered fact (projected before, or twice in the batch): staged, it is skipped
        return True

    @staticmethod
    async def _copy(conn: asyncpg.Connection, table: str, schema: str | None, stmt: Statement, rows: list[Row]) -> None:
        try:
            await conn.copy_records_to_table(table, records=rows, columns=stmt.cols, schema_name=schema)
        except (OverflowError, TypeError, ValueError) as e:  # the encoder's, before Postgres saw the row
            raise Unencodable(f"expected values {stmt.table} can store, was {e}") from e


def _on_bar(w: Writes, e: ev.Bar, seq: int) -> None:
    row = (e.symbol, e.interval, e.open_time_ns, e.open, e.high, e.low, e.close, e.volume, e.turnover, e.closed,
           e.ts_event, e.event_id, seq)  # fmt: skip
    w.latest("candles", (e.symbol, e.interval, e.open_time_ns), row, _closed_wins)
    last = (e.symbol, e.interval, e.open_time_ns, e.close, e.closed, e.ts_event, e.event_id, seq)
    w.latest("last_bars", e.symbol, last, _later_bar_wins)


def _on_book_snapshot(w: Writes, e: ev.BookSnapshot, seq: int) -> None:
    bid, bid_qty = e.bids[0] if e.bids else (None, None)
    ask, ask_qty = e.asks[0] if e.asks else (None, None)
    mid = spread = spread_bps = None
    if bid is not None and ask is not None:
        mid = (bid + ask) / 2
        spread = ask - bid
        spread_bps = spread / mid * 1e4
    row = (e.symbol, bid, bid_qty, ask, ask_qty, mid, spread, spread_bps, _json(e.bids), _json(e.asks), e.depth,
           e.update_id, e.seq, e.ts_event, e.event_id, seq)  # fmt: skip
    w.latest("book_tops", e.symbol, row)


def _on_trade_batch(w: Writes, e: ev.TradeBatch, seq: int) -> None:
    for t in e.trades:
        w.latest("trades", (e.symbol, t.trade_id), (e.symbol, t.trade_id, t.ts_event, t.price, t.qty, t.side,
                                                   e.event_id, seq))  # fmt: skip


def _on_ticker(w: Writes, e: ev.Ticker, seq: int) -> None:
    row = (e.symbol, e.last_price, e.mark_price, e.index_price, e.bid1_price, e.ask1_price, e.funding_rate,
           e.funding_interval_h, e.next_funding_time_ns, e.open_interest, e.turnover_24h, e.volume_24h,
           e.ts_event, e.event_id, seq)  # fmt: skip
    w.latest("tickers", e.symbol, row)


def _on_instrument_spec(w: Writes, e: ev.InstrumentSpec, seq: int) -> None:
    row = (e.symbol, e.tick_size, e.qty_step, e.min_order_qty, e.max_leverage, e.ts_event, e.event_id, seq)
    w.latest("instruments", e.symbol, row)


def _on_feed_gap(w: Writes, e: ev.FeedGap, seq: int) -> None:
    w.fact("feed_status", (e.event_id, e.symbol, "gap", e.topic, e.reason, None, None, e.ts_event, seq))


def _on_feed_resynced(w: Writes, e: ev.FeedResynced, seq: int) -> None:
    w.fact("feed_status", (e.event_id, e.symbol, "resynced", e.topic, None, None, e.update_id, e.ts_event, seq))


def _on_feed_stale(w: Writes, e: ev.FeedStale, seq: int) -> None:
    w.fact("feed_status", (e.event_id, e.symbol, "stale", e.topic, None, e.stale_s, None, e.ts_event, seq))


def _on_factor_snapshot(w: Writes, e: ev.FactorSnapshot, seq: int) -> None:
    w.fact(
        "factor_snapshots",
        (e.event_id, e.symbol, e.bar_id, e.interval, e.ts_event, e.close, e.egm, e.ild, e.rol, e.pio, e.ogm,
         e.combined, e.used, e.ema_fast, e.ema_mid, e.ema_slow, e.trend, e.atr, e.regime, e.intent_id, e.veto,
         seq),
    )  # fmt: skip


def _on_intent_proposed(w: Writes, e: ev.IntentProposed, seq: int) -> None:
    w.fact(
        "intents",
        (e.event_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event, e.side, e.entry_price, e.take_profit,
         e.stop_loss, e.qty, e.notional_usdt, e.leverage, e.sl_distance, e.tp_distance, e.combined, e.trend,
         e.regime, e.reasons, seq),
    )  # fmt: skip


def _on_verdict_issued(w: Writes, e: ev.VerdictIssued, seq: int) -> None:
    w.fact(
        "verdicts",
        (e.event_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event, e.decision, e.confidence,
         e.size_multiplier, e.policy, e.reasons, e.risk_flags, e.model, e.prompt_hash, e.raw_text, e.latency_ms,
         e.tokens_in, e.tokens_out, e.prompt_id, e.request_id, e.cost_usd, e.failure, e.overrides, seq),
    )  # fmt: skip
    _calls(w, e, "verdict", e.calls, seq)


def _calls(w: Writes, e: ev.Correlated, kind: str, calls: list[ev.ModelCall], seq: int) -> None:
    for i, c in enumerate(calls):
        w.fact(
            "model_calls",
            (e.event_id, i, kind, e.symbol, e.correlation_id, e.ts_event, c.role, c.model, c.prompt_id,
             c.prompt_sha256, c.outcome, c.finish_reason, c.status_code, c.error_code, c.request_id, c.latency_ms,
             c.attempts, c.tokens_in, c.tokens_out, c.cost_usd, seq),
        )  # fmt: skip


def _on_shadow_verdict_issued(w: Writes, e: ev.ShadowVerdictIssued, seq: int) -> None:
    w.fact(
        "shadow_verdicts",
        (e.event_id, e.shadow, e.symbol, e.correlation_id, e.ts_event, e.decision, e.confidence, e.size_multiplier,
         e.policy, e.reasons, e.model, e.prompt_id, e.failure, seq),
    )  # fmt: skip
    _calls(w, e, "shadow", e.calls, seq)


def _on_risk_override_issued(w: Writes, e: ev.RiskOverrideIssued, seq: int) -> None:
    w.fact(
        "risk_reviews",
        (e.event_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event, e.trigger, e.policy, e.refused, e.note,
         seq),
    )  # fmt: skip
    for o in e.overrides:
        w.fact("risk_overrides", (o.override_id, e.event_id, o.symbol, o.kind, o.value, o.side, e.ts_event,
                                  o.until_ns, o.reason, seq))  # fmt: skip
    if e.call is not None:
        _calls(w, e, "review", [e.call], seq)


def _on_verdict_awaited(w: Writes, e: ev.VerdictAwaited, seq: int) -> None:
    w.fact("verdicts_awaited", (e.event_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event, e.lock_state, seq))


def _on_signal_suppressed(w: Writes, e: ev.SignalSuppressed, seq: int) -> None:
    w.fact("suppressed", (e.event_id, "signal_suppressed", e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                          e.reason, None, e.lock_state, e.decision, seq))  # fmt: skip


def _on_risk_denied(w: Writes, e: ev.RiskDenied, seq: int) -> None:
    w.fact("suppressed", (e.event_id, "risk_denied", e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                          e.reason, e.rule, None, "approve", seq))  # fmt: skip


def _lock(w: Writes, e: ev.Correlated, seq: int, reason: str) -> None:
    """Record a lock transition (the state from the one table, :mod:`nertz_common.lock`)."""
    t = lock.transition_of(e)
    if t is None or t not in lock.MOVES:
        return
    state = lock.TARGET[t]
    kind = type(e).__name__
    w.fact("lock_history", (e.event_id, e.symbol, state, reason, kind, e.correlation_id, e.ts_event, seq))
    w.latest("locks", e.symbol, (e.symbol, state, reason, kind, e.correlation_id, e.ts_event, e.event_id, seq))


def _on_order_submitted(w: Writes, e: ev.OrderSubmitted, seq: int) -> None:
    w.fact("orders", (e.event_id, "submitted", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      e.side, e.order_type, e.qty, e.price_ref, e.take_profit, e.stop_loss, e.reduce_only,
                      e.venue_name, None, None, None, None, seq))  # fmt: skip
    _lock(w, e, seq, "entry submitted")


def _on_order_rejected(w: Writes, e: ev.OrderRejected, seq: int) -> None:
    w.fact("orders", (e.event_id, "rejected", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      None, None, None, None, None, None, e.reduce_only, None, e.reason, None, None, None,
                      seq))  # fmt: skip
    _lock(w, e, seq, f"entry rejected: {e.reason}")


def _on_entry_expired(w: Writes, e: ev.EntryExpired, seq: int) -> None:
    w.fact("orders", (e.event_id, "expired", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      None, None, None, None, None, None, None, None, e.reason, None, None, None,
                      seq))  # fmt: skip
    _lock(w, e, seq, f"entry expired: {e.reason}")


def _on_order_filled(w: Writes, e: ev.OrderFilled, seq: int) -> None:
    w.fact("fills", (e.event_id, e.order_id, e.fill_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                     e.side, e.qty, e.price, e.fee_usdt, e.liquidity, e.reduce_only, e.venue_name, e.venue_order_id,
                     e.leaves_qty, e.exit_reason, seq))  # fmt: skip


def _on_order_accepted(w: Writes, e: ev.OrderAccepted, seq: int) -> None:
    w.fact("orders", (e.event_id, "accepted", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      None, None, None, None, None, None, e.reduce_only, e.venue_name, None, e.venue_order_id, None,
                      None, seq))  # fmt: skip


def _on_order_refused(w: Writes, e: ev.OrderRefused, seq: int) -> None:
    w.fact("orders", (e.event_id, "refused", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      None, None, None, None, None, None, e.reduce_only, e.venue_name, f"{e.ret_code} {e.ret_msg}",
                      None, e.ret_code, None, seq))  # fmt: skip


def _on_order_canceled(w: Writes, e: ev.OrderCanceled, seq: int) -> None:
    w.fact("orders", (e.event_id, "canceled", e.order_id, e.symbol, e.correlation_id, e.causation_id, e.ts_event,
                      None, None, None, None, None, None, e.reduce_only, e.venue_name, e.reason, e.venue_order_id,
                      None, e.filled_qty, seq))  # fmt: skip


def _on_position_snapshot(w: Writes, e: ev.PositionSnapshot, seq: int) -> None:
    position = (e.side, e.qty, e.entry_price, e.mark_price, e.take_profit, e.stop_loss, e.trailing_stop, e.leverage,
                e.unrealized_pnl_usdt, e.ts_event)  # fmt: skip
    w.latest("venue_positions", (e.venue_name, e.symbol), (e.venue_name, e.symbol, e.source, *position, e.event_id,
                                                           seq))  # fmt: skip
    if e.source == "reconcile":
        w.fact("reconciled_positions", (e.event_id, e.venue_name, e.symbol, *position, seq))


def _on_wallet_snapshot(w: Writes, e: ev.WalletSnapshot, seq: int) -> None:
    wallet = (e.equity_usdt, e.wallet_balance_usdt, e.available_usdt, e.unrealized_pnl_usdt, e.ts_event)
    w.latest("venue_wallet", e.venue_name, (e.venue_name, *wallet, e.event_id, seq))
    w.fact("venue_wallet_history", (e.event_id, e.venue_name, *wallet, seq))


def _on_funding_settled(w: Writes, e: ev.FundingSettled, seq: int) -> None:
    w.fact("funding", (e.event_id, e.fill_id, e.symbol, e.venue_name, e.correlation_id, e.causation_id, e.ts_event,
                       e.fee_usdt, e.rate, e.position_value_usdt, seq))  # fmt: skip


def _on_position_opened(w: Writes, e: ev.PositionOpened, seq: int) -> None:
    w.fact("positions_open", (e.position_id, e.symbol, e.correlation_id, e.side, e.qty, e.entry_price,
                              e.take_profit, e.stop_loss, e.fee_usdt, e.ts_event, e.event_id, "open", seq))  # fmt: skip


def _on_lock_engaged(w: Writes, e: ev.LockEngaged, seq: int) -> None:
    _lock(w, e, seq, e.reason)


def _on_position_closed(w: Writes, e: ev.PositionClosed, seq: int) -> None:
    # a round trip is the whole trade: what PositionReduced closed earlier (TP1) is in its figures
    opened_ns = max(0, e.ts_event - e.holding_ns)
    w.fact("positions_close", (e.position_id, e.symbol, e.correlation_id, e.side, e.trade_qty, e.entry_price,
                               opened_ns, "closed", e.exit_price, e.exit_reason, e.trade_pnl_usdt, e.ts_event,
                               e.event_id, seq))  # fmt: skip
    w.fact("round_trips", (e.event_id, e.position_id, e.symbol, e.correlation_id, e.side, e.trade_qty,
                           e.entry_price, e.exit_price, e.exit_reason, e.trade_pnl_usdt, e.trade_fee_usdt,
                           e.trade_return_fraction, e.holding_ns, opened_ns, e.ts_event, seq))  # fmt: skip
    _lock(w, e, seq, f"position closed: {e.exit_reason}")


def _on_position_reduced(w: Writes, e: ev.PositionReduced, seq: int) -> None:
    w.fact("position_reductions", (e.event_id, e.position_id, e.symbol, e.correlation_id, e.causation_id,
                                   e.order_id, e.side, e.qty_closed, e.qty_left, e.entry_price, e.exit_price,
                                   e.exit_reason, e.realized_pnl_usdt, e.fee_usdt, e.ts_event, seq))  # fmt: skip


def _on_stop_moved(w: Writes, e: ev.StopMoved, seq: int) -> None:
    w.fact("stop_moves", (e.event_id, e.position_id, e.symbol, e.correlation_id, e.causation_id, e.venue_name,
                          e.phase, e.stop_loss, e.take_profit, e.trailing_distance, e.active_price, e.reason,
                          e.ts_event, seq))  # fmt: skip


def _on_lock_released(w: Writes, e: ev.LockReleased, seq: int) -> None:
    _lock(w, e, seq, e.reason)


def _on_venue_mismatch(w: Writes, e: ev.VenueMismatch, seq: int) -> None:
    w.fact("venue_mismatches", (e.event_id, e.symbol, e.venue_name, e.correlation_id, e.causation_id, e.action,
                                e.reason, e.ts_event, seq))  # fmt: skip
    _lock(w, e, seq, f"position adopted: {e.reason}")  # only an adoption moves the lock (ENTRY_PENDING)


def _on_trading_started(w: Writes, e: ev.TradingStarted, seq: int) -> None:
    w.fact("control", (e.event_id, "started", e.scope, e.actor, "", e.ts_event, seq))


def _on_trading_stopped(w: Writes, e: ev.TradingStopped, seq: int) -> None:
    w.fact("control", (e.event_id, "stopped", e.scope, e.actor, e.reason, e.ts_event, seq))


def _on_dead_lettered(w: Writes, e: ev.DeadLettered, seq: int) -> None:
    # a malformed message's bytes may hold NUL, which Postgres text cannot: shown escaped, never lost
    raw, reason = e.raw.replace("\x00", "\\x00"), e.reason.replace("\x00", "\\x00")
    w.fact("dead_letters", (e.event_id, e.service, reason, e.subject, e.stream_seq, raw, e.ts_event, seq))


def _on_weights_adapted(w: Writes, e: ev.WeightsAdapted, seq: int) -> None:
    enc = msgspec.json.encode
    w.fact(
        "factor_weights",
        (e.event_id, e.symbol, e.interval, e.bar_id, enc(e.weights).decode(), enc(e.multipliers).decode(),
         enc(e.accuracy).decode(), enc(e.calls).decode(), enc(e.retired).decode(), e.reason, e.ts_event, seq),
    )  # fmt: skip


def _on_config_changed(w: Writes, e: ev.ConfigChanged, seq: int) -> None:
    w.fact("config_changes", (e.event_id, msgspec.json.encode(e.changes).decode(), e.actor, e.reason, e.ts_event, seq))


def _on_manual_trade_requested(w: Writes, e: ev.ManualTradeRequested, seq: int) -> None:
    w.fact("manual_trades", (e.event_id, e.scope, e.side, e.actor, e.reason, e.ts_event, seq))


def _on_notification_posted(w: Writes, e: ev.NotificationPosted, seq: int) -> None:
    w.fact(
        "notifications",
        (e.event_id, e.scope, e.source_event_id, e.kind, e.chat_id, e.message_id, e.reply_to_message_id,
         e.ts_event, seq),
    )  # fmt: skip


def _on_universe_changed(w: Writes, e: ev.UniverseChanged, seq: int) -> None:
    enc = msgspec.json.encode
    w.fact(
        "universe_changes",
        (e.event_id, enc(e.symbols).decode(), enc(e.added).decode(), enc(e.removed).decode(),
         enc(e.candidates).decode(), e.min_turnover_usdt, e.max_spread, e.max_symbols, e.source, e.ts_event, seq),
    )  # fmt: skip


def _on_news_assessed(w: Writes, e: ev.NewsAssessed, seq: int) -> None:
    c = e.call
    w.fact(
        "news_assessments",
        (e.event_id, e.symbol, e.trigger, e.request_id, e.window_days, e.impact,
         msgspec.json.encode(e.key_events).decode(), sum(k.critical for k in e.key_events), e.summary, e.failure,
         e.failure_detail, c and c.model, c and c.prompt_id, c and c.prompt_sha256, c and c.raw_text,
         c and c.latency_ms, c and c.tokens_in, c and c.tokens_out, c and c.cost_usd, e.ts_event, seq),
    )  # fmt: skip


def _on_news_requested(w: Writes, e: ev.NewsRequested, seq: int) -> None:
    w.fact("news_requests", (e.event_id, e.scope, e.actor, e.reason, e.ts_event, seq))


_HANDLERS: dict[type[ev.Event], Callable[[Writes, Any, int], None]] = {
    ev.Bar: _on_bar,
    ev.BookSnapshot: _on_book_snapshot,
    ev.TradeBatch: _on_trade_batch,
    ev.Ticker: _on_ticker,
    ev.InstrumentSpec: _on_instrument_spec,
    ev.FeedGap: _on_feed_gap,
    ev.FeedResynced: _on_feed_resynced,
    ev.FeedStale: _on_feed_stale,
    ev.FactorSnapshot: _on_factor_snapshot,
    ev.IntentProposed: _on_intent_proposed,
    ev.VerdictIssued: _on_verdict_issued,
    ev.ShadowVerdictIssued: _on_shadow_verdict_issued,
    ev.RiskOverrideIssued: _on_risk_override_issued,
    ev.VerdictAwaited: _on_verdict_awaited,
    ev.SignalSuppressed: _on_signal_suppressed,
    ev.RiskDenied: _on_risk_denied,
    ev.OrderSubmitted: _on_order_submitted,
    ev.OrderRejected: _on_order_rejected,
    ev.EntryExpired: _on_entry_expired,
    ev.OrderFilled: _on_order_filled,
    ev.PositionOpened: _on_position_opened,
    ev.LockEngaged: _on_lock_engaged,
    ev.PositionClosed: _on_position_closed,
    ev.PositionReduced: _on_position_reduced,
    ev.StopMoved: _on_stop_moved,
    ev.LockReleased: _on_lock_released,
    ev.VenueMismatch: _on_venue_mismatch,
    ev.OrderAccepted: _on_order_accepted,
    ev.OrderRefused: _on_order_refused,
    ev.OrderCanceled: _on_order_canceled,
    ev.PositionSnapshot: _on_position_snapshot,
    ev.WalletSnapshot: _on_wallet_snapshot,
    ev.FundingSettled: _on_funding_settled,
    ev.TradingStarted: _on_trading_started,
    ev.TradingStopped: _on_trading_stopped,
    ev.DeadLettered: _on_dead_lettered,
    ev.WeightsAdapted: _on_weights_adapted,
    ev.ConfigChanged: _on_config_changed,
    ev.ManualTradeRequested: _on_manual_trade_requested,
    ev.NotificationPosted: _on_notification_posted,
    ev.UniverseChanged: _on_universe_changed,
    ev.NewsAssessed: _on_news_assessed,
    ev.NewsRequested: _on_news_requested,
}
assert set(_HANDLERS) == set(ev.ALL_EVENT_TYPES), "every event type needs a projection"


# --- the projector ------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One message to project: from a delivery, or read from the stream to fill a gap."""

    event: ev.AnyEvent
    stream_seq: int
    subject: str
    raw: bytes


class ProjectorMetrics:
    """The projector's Prometheus metrics (``nertz_api_projector_*``)."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "nertz_api") -> None:
        self.events = prom.Counter(
            f"{prefix}_projector_events_total", "Events projected into Postgres, by type", ["type"], registry=registry
        )
        self.skipped = prom.Counter(
            f"{prefix}_projector_skipped_total", "Redelivered messages skipped (already tracked)", registry=registry
        )
        self.gap_filled = prom.Counter(
            f"{prefix}_projector_gap_filled_total",
            "Messages read from the stream directly to fill a gap in the deliveries",
            registry=registry,
        )
        self.rejected = prom.Counter(
            f"{prefix}_projector_rejected_total",
            "Messages whose rows Postgres rejected (dead-lettered)",
            registry=registry,
        )
        self.rows = prom.Counter(f"{prefix}_projector_rows_total", "Rows sent to Postgres", registry=registry)
        self.batch_seconds = prom.Histogram(
            f"{prefix}_projector_batch_seconds",
            "Time to project and commit one batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.shadow = prom.Counter(
            f"{prefix}_shadow_verdicts_total",
            "Shadow verdicts projected, by shadow and whether they agree with the live verdict of the intent",
            ["shadow", "agreement"],
            registry=registry,
        )
        self.tracked_seq = prom.Gauge(
            f"{prefix}_projector_tracked_seq", "Highest stream sequence committed to Postgres", registry=registry
        )
        self.paused = prom.Gauge(
            f"{prefix}_projector_paused",
            "1 while the projector waits out an outage (database or bus), else 0",
            registry=registry,
        )
        self.pauses = prom.Counter(
            f"{prefix}_projector_pauses_total", "Times the projector paused for an outage, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip


@dataclass
class ProjectorStats:
    """Counts since this projector started (for tests, benchmarks and logs)."""

    batches: int = 0
    projected: int = 0
    skipped: int = 0
    gap_filled: int = 0
    rejected: int = 0
    rows: int = 0
    seconds: float = 0.0
    tracked_seq: int = 0
    rejected_seqs: deque[int] = field(default_factory=lambda: deque(maxlen=100))


class Projector:
    """Project the log into Postgres; hand :meth:`handle` to :meth:`nertz_common.bus.Consumer.run_batch`.

    Parameters
    ----------
    pool : asyncpg.Pool
        The projection database (migrated).
    js : JetStreamContext
        Used to read missing sequences directly from the stream (gap fill).
    publisher : bus.Publisher
        Publishes ``DeadLettered`` records of rejected messages.
    consumer : str
        The durable consumer name, also the tracking row's key.
    service : str
        Service name of dead-letter records (``sys.dlq.<service>``).
    metrics : ProjectorMetrics, optional
    bus_metrics : BusMetrics, optional
        For the service-wide dead-letter counter.
    stream : str
        The stream the consumer reads.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        publisher: bus.Publisher,
        *,
        consumer: str = "projector",
        service: str = "api",
        metrics: ProjectorMetrics | None = None,
        bus_metrics: BusMetrics | None = None,
        stream: str = subjects.STREAM,
    ) -> None:
        self._pool = pool
        self._js = js
        self._publisher = publisher
        self.consumer = consumer
        self._service = service
        self._metrics = metrics
        self._bus_metrics = bus_metrics
        self._live: dict[str, str] = {}  # intent id -> live decision (for the shadow agreement metric)
        self._shadows_waiting: dict[str, list[tuple[str, str]]] = {}
        self._stream = stream
        self._known_symbols: set[str] = set()
        self._lock_conn: asyncpg.Connection | None = None
        # the staging tables made on the lock's connection (a temporary table lives with its session)
        self._staged_conn: asyncpg.Connection | None = None
        self._staged_tables: set[str] = set()
        self.stats = ProjectorStats()
        #: True while another instance holds the projector lock and this one waits for it
        self.waiting_for_lock = False
        #: why the projector waits out an outage (``database_unavailable``, ``bus_unavailable``), else None
        self.paused: str | None = None
        self._paused_at = 0.0
        self._attempt = 0
        self._holding = False  # under run(): every batch is written on the lock's connection

    @property
    def lock_key(self) -> int:
        """The ``pg_advisory_lock`` key that makes this consumer's projector single-writer."""
        digest = hashlib.sha256(f"nertz-projector:{self.consumer}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    async def tracked_seq(self) -> int:
        """Return the highest stream sequence committed for this consumer (0 before the first batch)."""
        async with self._pool.acquire() as conn:
            seq = await conn.fetchval("SELECT stream_seq FROM projector_tracking WHERE consumer = $1", self.consumer)
        return int(seq or 0)

    async def check_stream(self, last_seq: int) -> None:
        """Fail fast when the database tracks a sequence beyond the stream's last one.

        Parameters
        ----------
        last_seq : int
            The stream's last sequence (``stream_info().state.last_seq``).

        Raises
        ------
        ProjectionMismatch
            If the tracked sequence exceeds ``last_seq``: the stream was recreated and the database
            projects another log (new messages would be skipped as "already tracked").
        """
        tracked = await self.tracked_seq()
        if tracked > last_seq:
            raise ProjectionMismatch(
                f"expected the tracked sequence of {self.consumer!r} <= the stream's last sequence {last_seq}, "
                f"was {tracked}: this database projects another log; use a fresh database or drop its tables"
            )

    async def position(self) -> int:
        """Return the tracked sequence (the kernel resets the lane to the message after it).

        Raises
        ------
        nertz_common.errors.TransientError
            If the database is unreachable.
        """
        try:
            return await self.tracked_seq()
        except Exception as e:
            if is_transient(e):
                self._pause(DATABASE_UNAVAILABLE, e)
                raise DatabaseUnavailable(f"projection database unavailable: {e!r}") from e
            raise

    def runner(
        self, rt_js: JetStreamContext, publisher: bus.Publisher, metrics: BusMetrics, registry: CollectorRegistry,
        stop: asyncio.Event, batch: int = 1000,
    ) -> ProjectionRunner:  # fmt: skip
        """Return the kernel's projection runner of this projector on its durable consumer."""
        return ProjectionRunner(
            js=rt_js, publisher=publisher, metrics=metrics, registry=registry, stop=stop, service=self._service,
            lane=self.consumer, position=self.position, sink=self.handle, batch=batch, stream=self._stream,
        )  # fmt: skip

    async def run(self, runner: ProjectionRunner, lock_poll_s: float = 1.0) -> None:
        """Hold the projector lock, then project batches until the runner's stop event.

        A database outage (at start, while waiting for the lock, or while projecting) is waited out with
        backoff for as long as it lasts; if the lock was lost in it and another instance took it, this
        one waits for it again (hot standby).

        Parameters
        ----------
        runner : ProjectionRunner
            From :meth:`runner`.
        lock_poll_s : float
            Interval between two attempts at a lock another instance holds, s.

        Raises
        ------
        Exception
            Only what is not an outage (a bug, a broken invariant); the process exits.
        """
        while not runner.stop.is_set():
            if not await self._take_lock(runner.stop, lock_poll_s):
                return
            self._holding = True
            try:
                async with self._pool.acquire() as conn:
                    tracked = await conn.fetchval(
                        "SELECT stream_seq FROM projector_tracking WHERE consumer = $1", self.consumer
                    )
                self.stats.tracked_seq = int(tracked or 0)
                log.info("projector.started", extra={"consumer": self.consumer, "stream_seq": self.stats.tracked_seq})
                await runner.run()
                return
            except LockLost:
                log.warning("projector.lock_lost", extra={"consumer": self.consumer})
            except Exception as e:
                if not is_transient(e):
                    raise
                self._pause(DATABASE_UNAVAILABLE, e)
                await self._backoff(runner.stop)
            finally:
                self._holding = False
                await self._drop_lock()

    async def _take_lock(self, stop: asyncio.Event, poll_s: float) -> bool:
        """Wait for the projector lock on a connection of its own (kept as the writer); False on stop."""
        waited = False
        while not stop.is_set():
            conn = None
            try:
                conn = await self._pool.acquire()
                if await self._try_lock(conn):
                    self._lock_conn = conn
                    self.waiting_for_lock = False
                    self._resume()
                    return True
            except Exception as e:
                if not is_transient(e):
                    raise
                self._pause(DATABASE_UNAVAILABLE, e)
                await self._release(conn)
                await self._backoff(stop)
                continue
            await self._release(conn)
            self._resume()  # the database answers; another instance projects
            if not waited:
                log.warning("projector.waiting_for_lock", extra={"consumer": self.consumer})
                waited = self.waiting_for_lock = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
        return False

    async def _try_lock(self, conn: asyncpg.Connection) -> bool:
        """Take the projector lock on ``conn`` if no one holds it; then ``conn`` commits asynchronously
        and the symbols already projected are read (anew after an outage: a crash of Postgres may have
        lost the last commits, see ``_ASYNC_COMMIT``, new symbols with them)."""
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
            return False
        await conn.execute(_ASYNC_COMMIT)
        self._known_symbols = {r["symbol"] for r in await conn.fetch("SELECT symbol FROM symbols")}
        return True

    async def _retake_lock(self) -> None:
        """Take the lock again after its connection closed (a database outage or restart).

        Raises
        ------
        DatabaseUnavailable
            If the database is still unreachable (the batch is retried).
        LockLost
            If another instance took the lock meanwhile.
        """
        await self._drop_lock()
        conn = None
        try:
            conn = await self._pool.acquire()
            got = await self._try_lock(conn)
        except Exception as e:
            await self._release(conn)
            if is_transient(e):
                raise DatabaseUnavailable(f"projection database unavailable: {e!r}") from e
            raise
        if not got:
            await self._release(conn)
            raise LockLost(f"another instance holds the projector lock of {self.consumer!r}")
        self._lock_conn = conn
        log.info("projector.lock_retaken", extra={"consumer": self.consumer})

    async def _drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        if not _lost(conn):
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock($1)", self.lock_key)
        await self._release(conn)

    async def _release(self, conn: asyncpg.Connection | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=5)

    async def _backoff(self, stop: asyncio.Event) -> None:
        delay = _BACKOFF_S[min(self._attempt, len(_BACKOFF_S) - 1)]
        self._attempt += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    def _pause(self, reason: str, error: BaseException) -> None:
        """Report the projector paused for ``reason`` (logged once per outage, not per retry)."""
        if self.paused == reason:
            return
        self.paused = reason
        self._paused_at = time.monotonic()
        log.warning(
            "projector.paused",
            extra={"consumer": self.consumer, "reason": reason, "error": repr(error)[:300],
                   "stream_seq": self.stats.tracked_seq},
        )  # fmt: skip
        if self._metrics:
            self._metrics.paused.set(1)
            self._metrics.pauses.labels(reason=reason).inc()

    def _resume(self) -> None:
        self._attempt = 0
        if self.paused is None:
            return
        log.info(
            "projector.resumed",
            extra={"consumer": self.consumer, "reason": self.paused,
                   "paused_s": round(time.monotonic() - self._paused_at, 3), "stream_seq": self.stats.tracked_seq},
        )  # fmt: skip
        self.paused = None
        if self._metrics:
            self._metrics.paused.set(0)

    async def handle(self, deliveries: list[bus.Delivery]) -> None:
        """Project one fetched batch and advance the tracking row, in one transaction.

        Under :meth:`run` the batch is written on the connection holding the projector lock (the lock
        is taken again first if that connection was lost); called directly, on a pooled connection.

        Raises
        ------
        DatabaseUnavailable
            On a connection-level failure (database down, restarting, timeout): nothing was committed
            and the batch is retried.
        nertz_common.errors.TransientError
            If a dead-letter record could not be published, or a gap could not be read from the
            stream (the batch is retried).
        LockLost
            If the lock was lost in an outage and another instance holds it now.
        """
        t0 = time.perf_counter()
        try:
            if self._holding and (self._lock_conn is None or _lost(self._lock_conn)):
                await self._retake_lock()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if self._lock_conn is not None:
                        conn = self._lock_conn
                    else:
                        conn = await stack.enter_async_context(self._pool.acquire())
                    await stack.enter_async_context(conn.transaction())
                    done = await self._project(conn, deliveries, self._staged(conn))
            except BaseException:
                self._staged_tables.clear()  # not committed: the rollback took the staging tables made
                raise
        except DatabaseUnavailable as e:
            self._pause(DATABASE_UNAVAILABLE, e)
            raise
        except TransientError as e:
            self._pause(BUS_UNAVAILABLE, e)
            raise
        except LockLost:
            raise
        except Exception as e:
            if is_transient(e):
                if self._lock_conn is not None:
                    # never reused: the next batch takes the lock again (the pool may have taken a lost
                    # connection back already, and refuses to terminate it)
                    with contextlib.suppress(asyncpg.InterfaceError):
                        self._lock_conn.terminate()
                self._pause(DATABASE_UNAVAILABLE, e)
                raise DatabaseUnavailable(f"projection database unavailable: {e!r}") from e
            raise
        self._resume()
        items, skipped, rows, top, new_symbols = done
        self._known_symbols |= new_symbols
        self._account(items, skipped, rows, top, time.perf_counter() - t0)

    def _staged(self, conn: asyncpg.Connection) -> set[str] | None:
        """The staging tables known to exist on ``conn`` if it is the lock's (kept while it lives), else None."""
        if conn is not self._lock_conn:
            return None
        if self._staged_conn is not conn:
            self._staged_conn, self._staged_tables = conn, set()
        return self._staged_tables

    async def _project(
        self, conn: asyncpg.Connection, deliveries: list[bus.Delivery], staged: set[str] | None = None
    ) -> tuple[list[Item], int, int, int, set[str]]:
        """Write one batch's rows and its tracking row in the open transaction of ``conn``; return the
        items projected, the deliveries skipped, the rows sent, the top sequence and the new symbols
        (``staged``: the staging tables known to exist, see :meth:`Writes.flush`)."""
        tracked = int(await conn.fetchval(_TRACKING_GET, self.consumer) or 0)
        items, skipped = await self._pending(deliveries, tracked)
        if not items:
            return [], skipped, 0, tracked, set()
        w = Writes(self._known_symbols)
        for it in items:
            w.add(it.event, it.stream_seq)
        try:
            async with conn.transaction():  # a savepoint: a rejected row falls back below
                rows = await w.flush(conn, copy=True, staged=staged)
            new_symbols = w.new_symbols
        except Exception as e:
            if not is_rejected(e):
                raise
            if staged is not None:
                staged.clear()  # rolled back to the savepoint, with the staging tables made in it
            log.warning("projector.batch_rejected", extra={"error": repr(e)[:300], "size": len(items)})
            rows, new_symbols = await self._one_by_one(conn, items)
        top = items[-1].stream_seq
        await conn.execute(_TRACKING_SET, self.consumer, top)
        return items, skipped, rows, top, new_symbols

    async def _pending(self, deliveries: list[bus.Delivery], tracked: int) -> tuple[list[Item], int]:
        """The deliveries beyond ``tracked`` in sequence order, with any gap before them filled, and the
        number of deliveries skipped (already tracked, or the same sequence twice)."""
        fresh: dict[int, Item] = {}
        for d in deliveries:
            if d.stream_seq > tracked and d.stream_seq not in fresh:
                fresh[d.stream_seq] = Item(d.event, d.stream_seq, d.subject, d.msg.data)
        skipped = len(deliveries) - len(fresh)
        if not fresh:
            return [], skipped
        first = min(fresh)
        if first > tracked + 1:
            for it in await self._read_range(tracked + 1, first - 1):
                fresh.setdefault(it.stream_seq, it)
        return [fresh[s] for s in sorted(fresh)], skipped

    async def _read_range(self, lo: int, hi: int) -> list[Item]:
        """Read sequences ``lo..hi`` from the stream (gone or undecodable ones are left out)."""
        try:
            first = (await self._js.stream_info(self._stream)).state.first_seq
            out: list[Item] = []
            for seq in range(max(lo, first), hi + 1):
                try:
                    m = await self._js.get_msg(self._stream, seq, direct=True)
                except nats.js.errors.NotFoundError:
                    continue  # deleted or aged out
                try:
                    event = ev.decode(m.data or b"")
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # poison: dead-lettered and terminated by Consumer.fetch
                out.append(Item(event, seq, m.subject or "", m.data or b""))
        except (nats.errors.Error, TimeoutError) as e:
            raise TransientError(f"could not read sequences {lo}..{hi} from {self._stream}: {e!r}") from e
        if out:
            log.warning("projector.gap_filled", extra={"from_seq": lo, "to_seq": hi, "messages": len(out)})
        self.stats.gap_filled += len(out)
        if self._metrics:
            self._metrics.gap_filled.inc(len(out))
        return out

    async def _one_by_one(self, conn: asyncpg.Connection, items: list[Item]) -> tuple[int, set[str]]:
        """Project each message in its own savepoint; dead-letter those Postgres rejects."""
        rows = 0
        new_symbols: set[str] = set()
        rejected: list[tuple[Item, Exception]] = []
        for it in items:
            w = Writes(self._known_symbols | new_symbols)
            w.add(it.event, it.stream_seq)
            try:
                async with conn.transaction():
                    rows += await w.flush(conn)
                new_symbols |= w.new_symbols
            except Exception as e:
                if not is_rejected(e):
                    raise
                rejected.append((it, e))
        for it, error in rejected:
            await self._dead_letter(it, error)
        return rows, new_symbols

    async def _dead_letter(self, it: Item, e: Exception) -> None:
        self.stats.rejected += 1
        self.stats.rejected_seqs.append(it.stream_seq)
        if self._metrics:
            self._metrics.rejected.inc()
        if isinstance(it.event, ev.DeadLettered):  # never dead-letter a dead letter (no loops)
            log.critical(
                "projector.dead_letter_unprojectable",
                extra={"stream_seq": it.stream_seq, "event_id": it.event.event_id, "error": repr(e)[:300]},
            )
            return
        record = bus.dead_letter_record(
            self._service, f"rejected: {type(e).__name__}: {e}", it.subject, it.stream_seq, it.raw
        )
        try:
            await self._publisher.publish(record)
        except bus.PublishError as pe:
            raise TransientError(f"could not dead-letter sequence {it.stream_seq}: {pe}") from pe
        log.error(
            "message.dead_lettered",
            extra={"stream_seq": it.stream_seq, "event_id": it.event.event_id, "reason": record.reason[:200]},
        )
        if self._bus_metrics:
            self._bus_metrics.dead_letters.labels(reason="rejected").inc()

    def _agreement(self, e: ev.VerdictIssued | ev.ShadowVerdictIssued) -> None:
        """Count a shadow verdict as agreeing or not with the live one of its intent (whichever comes first)."""
        assert self._metrics is not None
        live, waiting = self._live, self._shadows_waiting
        if isinstance(e, ev.VerdictIssued):
            live[e.correlation_id] = e.decision
            if len(live) > 100_000:
                live.pop(next(iter(live)))
            pending = waiting.pop(e.correlation_id, ())
        else:
            if e.correlation_id not in live:
                waiting.setdefault(e.correlation_id, []).append((e.shadow, e.decision))
                if len(waiting) > 100_000:
                    waiting.pop(next(iter(waiting)))
                return
            pending = [(e.shadow, e.decision)]
        for shadow, decision in pending:
            agree = "agree" if decision == live[e.correlation_id] else "disagree"
            self._metrics.shadow.labels(shadow=shadow, agreement=agree).inc()

    def _account(self, items: list[Item], skipped: int, rows: int, top: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.projected += len(items)
        s.skipped += skipped
        s.rows += rows
        s.seconds += seconds
        s.tracked_seq = top
        if self._metrics:
            for name, n in Counter(type(it.event).__name__ for it in items).items():
                self._metrics.events.labels(type=name).inc(n)
            for it in items:
                if isinstance(it.event, ev.VerdictIssued | ev.ShadowVerdictIssued):
                    self._agreement(it.event)
            self._metrics.skipped.inc(skipped)
            self._metrics.rows.inc(rows)
            self._metrics.batch_seconds.observe(seconds)
            self._metrics.tracked_seq.set(top)
