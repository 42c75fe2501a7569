-- Exit management (issue 8): the open position's moved exits and its partial closes.
-- The conventions of 0001: *_ns are UNIX ns with a generated timestamptz next to them, amounts in USDT,
-- quantities in base currency, facts keyed by the event_id that stated them.

-- exec.order StopMoved: every move of a position's exchange-native exits, with what is in force after it
-- (phase 'entry': TP2 at its R-multiple of the filled entry; 'breakeven': the stop to entry plus fees;
-- 'trail': a trailing stop after TP1).
CREATE TABLE stop_moves (
    event_id          text PRIMARY KEY,
    position_id       text NOT NULL,
    symbol            text NOT NULL,
    correlation_id    text NOT NULL,
    causation_id      text NOT NULL,
    venue_name        text NOT NULL,
    phase             text NOT NULL CHECK (phase IN ('entry', 'breakeven', 'trail')),
    stop_loss         double precision NOT NULL,
    take_profit       double precision,
    trailing_distance double precision,
    active_price      double precision,
    reason            text NOT NULL,
    ts_event_ns       bigint NOT NULL,
    ts                timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq        bigint NOT NULL
);
CREATE INDEX stop_moves_position ON stop_moves (position_id, stream_seq);
CREATE INDEX stop_moves_symbol_seq ON stop_moves (symbol, stream_seq DESC);

-- exec.position PositionReduced: part of a position closed (the scaled plan's TP1), its realized P&L net
-- of its fees. A round trip (round_trips, positions) is the whole trade: its quantity, P&L and fees
-- include these parts (PositionClosed's reduced_* fields).
CREATE TABLE position_reductions (
    event_id          text PRIMARY KEY,
    position_id       text NOT NULL,
    symbol            text NOT NULL,
    correlation_id    text NOT NULL,
    causation_id      text NOT NULL,
    order_id          text NOT NULL,
    side              text NOT NULL CHECK (side IN ('long', 'short')),
    qty_closed        double precision NOT NULL,
    qty_left          double precision NOT NULL,
    entry_price       double precision NOT NULL,
    exit_price        double precision NOT NULL,
    exit_reason       text NOT NULL,
    realized_pnl_usdt double precision NOT NULL,
    fee_usdt          double precision NOT NULL,
    ts_event_ns       bigint NOT NULL,
    ts                timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq        bigint NOT NULL
);
CREATE INDEX position_reductions_position ON position_reductions (position_id, stream_seq);
CREATE INDEX position_reductions_symbol_ts ON position_reductions (symbol, ts_event_ns DESC);
