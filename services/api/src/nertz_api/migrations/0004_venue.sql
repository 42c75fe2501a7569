-- What a real venue (Bybit) reports: orders it accepted, refused or canceled, positions and the wallet
-- as it sees them, funding payments, and what reconciliation found the log does not explain.
-- The conventions of 0001: *_ns are UNIX ns with a generated timestamptz next to them, amounts in USDT,
-- facts keyed by the event_id that stated them, "latest" rows moving forward by stream_seq only.

-- venue.order: OrderAccepted, OrderRefused (reason "<retCode> <retMsg>"), OrderCanceled join the orders.
ALTER TABLE orders DROP CONSTRAINT orders_kind_check;
ALTER TABLE orders ADD CONSTRAINT orders_kind_check
    CHECK (kind IN ('submitted', 'rejected', 'expired', 'accepted', 'refused', 'canceled'));
ALTER TABLE orders
    ADD COLUMN venue_order_id text,              -- Bybit's orderId (accepted, canceled)
    ADD COLUMN ret_code       integer,           -- Bybit's retCode (refused)
    ADD COLUMN filled_qty     double precision;  -- what did fill of a canceled order, base currency
CREATE INDEX orders_venue_order_id ON orders (venue_order_id) WHERE venue_order_id IS NOT NULL;

-- venue.fill: Bybit's orderId, what the order leaves unfilled, and what triggered an exit fill.
ALTER TABLE fills
    ADD COLUMN venue_order_id text,
    ADD COLUMN leaves_qty     double precision NOT NULL DEFAULT 0,
    ADD COLUMN exit_reason    text;

-- venue.position: the latest position each venue reported per symbol (stream pushes and reconcile
-- look-ups alike; side NULL and qty 0 for no position) ...
CREATE TABLE venue_positions (
    venue_name          text NOT NULL,
    symbol              text NOT NULL,
    source              text NOT NULL CHECK (source IN ('stream', 'reconcile')),
    side                text CHECK (side IN ('long', 'short')),
    qty                 double precision NOT NULL,
    entry_price         double precision,
    mark_price          double precision,
    take_profit         double precision,
    stop_loss           double precision,
    trailing_stop       double precision,
    leverage            double precision,
    unrealized_pnl_usdt double precision NOT NULL,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    event_id            text NOT NULL,
    stream_seq          bigint NOT NULL,
    PRIMARY KEY (venue_name, symbol)
);

-- ... and every position a reconciliation read (source 'reconcile'), the executor's evidence.
CREATE TABLE reconciled_positions (
    event_id            text PRIMARY KEY,
    venue_name          text NOT NULL,
    symbol              text NOT NULL,
    side                text CHECK (side IN ('long', 'short')),
    qty                 double precision NOT NULL,
    entry_price         double precision,
    mark_price          double precision,
    take_profit         double precision,
    stop_loss           double precision,
    trailing_stop       double precision,
    leverage            double precision,
    unrealized_pnl_usdt double precision NOT NULL,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq          bigint NOT NULL
);
CREATE INDEX reconciled_positions_symbol_seq ON reconciled_positions (symbol, stream_seq DESC);

-- venue.wallet.<venue>: the latest account per venue, and every report (the equity curve the venue saw).
CREATE TABLE venue_wallet (
    venue_name          text PRIMARY KEY,
    equity_usdt         double precision NOT NULL,
    wallet_balance_usdt double precision NOT NULL,
    available_usdt      double precision,
    unrealized_pnl_usdt double precision NOT NULL,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    event_id            text NOT NULL,
    stream_seq          bigint NOT NULL
);

CREATE TABLE venue_wallet_history (
    event_id            text PRIMARY KEY,
    venue_name          text NOT NULL,
    equity_usdt         double precision NOT NULL,
    wallet_balance_usdt double precision NOT NULL,
    available_usdt      double precision,
    unrealized_pnl_usdt double precision NOT NULL,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq          bigint NOT NULL
);
CREATE INDEX venue_wallet_history_venue_ts ON venue_wallet_history (venue_name, ts_event_ns DESC);

-- venue.funding: funding payments on open positions (fee_usdt > 0 paid by the account, < 0 received).
CREATE TABLE funding (
    event_id            text PRIMARY KEY,
    fill_id             text NOT NULL,
    symbol              text NOT NULL,
    venue_name          text NOT NULL,
    correlation_id      text NOT NULL,
    causation_id        text NOT NULL,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    fee_usdt            double precision NOT NULL,
    rate                double precision,
    position_value_usdt double precision,
    stream_seq          bigint NOT NULL
);
CREATE INDEX funding_symbol_ts ON funding (symbol, ts_event_ns DESC);
CREATE INDEX funding_correlation ON funding (correlation_id);

-- exec.reconcile: what reconciliation found and did (adopted a position, halted the symbol, closed a
-- position the venue no longer holds).
CREATE TABLE venue_mismatches (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    venue_name     text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    action         text NOT NULL CHECK (action IN ('adopted', 'halted', 'closed')),
    reason         text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq     bigint NOT NULL
);
CREATE INDEX venue_mismatches_symbol_seq ON venue_mismatches (symbol, stream_seq DESC);
CREATE INDEX venue_mismatches_seq ON venue_mismatches (stream_seq DESC);

-- The symbols reconciliation halts now, each with its latest halt: a halt holds until a later
-- TradingStarted (in log order) for the symbol or for all, as the executor lifts it.
CREATE VIEW venue_halts AS
SELECT DISTINCT ON (m.symbol)
       m.symbol, m.venue_name, m.reason, m.correlation_id, m.ts_event_ns, m.ts, m.event_id, m.stream_seq
FROM venue_mismatches m
WHERE m.action = 'halted'
  AND NOT EXISTS (
      SELECT 1 FROM control c
      WHERE c.kind = 'started' AND c.scope IN ('all', m.symbol) AND c.stream_seq > m.stream_seq
  )
ORDER BY m.symbol, m.stream_seq DESC;
