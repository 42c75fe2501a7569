-- Projections of the NERTZ log (ARCHITECTURE.md §3 "api").
--
-- Conventions: times are UNIX nanoseconds (bigint, UTC) in *_ns columns, with a generated timestamptz
-- next to them where a human or Grafana reads them; prices and amounts are double precision in USDT,
-- quantities in base currency, fractions are plain fractions (0.01 = 1 %). Every row that is a fact is
-- keyed by the event_id that stated it, so a replay inserts nothing (ON CONFLICT DO NOTHING). "Latest"
-- tables keep the stream_seq of the event that wrote them and only move forward.

-- Where the projector is: the highest stream sequence whose effect is committed, per consumer.
CREATE TABLE projector_tracking (
    consumer   text PRIMARY KEY,
    stream_seq bigint NOT NULL CHECK (stream_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every symbol seen on the log (with the configured ones, the set the API knows).
CREATE TABLE symbols (
    symbol          text PRIMARY KEY,
    venue           text NOT NULL,
    market          text NOT NULL,
    first_seen_ns   bigint NOT NULL,
    first_stream_seq bigint NOT NULL
);

-- md.bar: one row per (symbol, interval, open time); a later update of the open bar overwrites it,
-- a closed bar wins over an open one.
CREATE TABLE candles (
    symbol       text NOT NULL,
    interval     text NOT NULL,
    open_time_ns bigint NOT NULL,
    open_time    timestamptz GENERATED ALWAYS AS (to_timestamp(open_time_ns::float8 / 1e9)) STORED,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    turnover     double precision,
    closed       boolean NOT NULL,
    ts_event_ns  bigint NOT NULL,
    event_id     text NOT NULL,
    stream_seq   bigint NOT NULL,
    PRIMARY KEY (symbol, interval, open_time_ns)
);

-- md.bar: the latest bar event per symbol in log order (what /status shows without scanning candles).
CREATE TABLE last_bars (
    symbol       text PRIMARY KEY,
    interval     text NOT NULL,
    open_time_ns bigint NOT NULL,
    open_time    timestamptz GENERATED ALWAYS AS (to_timestamp(open_time_ns::float8 / 1e9)) STORED,
    close        double precision NOT NULL,
    closed       boolean NOT NULL,
    ts_event_ns  bigint NOT NULL,
    event_id     text NOT NULL,
    stream_seq   bigint NOT NULL
);

-- md.ticker: the latest merged ticker per symbol.
CREATE TABLE tickers (
    symbol               text PRIMARY KEY,
    last_price           double precision,
    mark_price           double precision,
    index_price          double precision,
    bid1_price           double precision,
    ask1_price           double precision,
    funding_rate         double precision,
    funding_interval_h   integer,
    next_funding_time_ns bigint,
    open_interest        double precision,
    turnover_24h         double precision,
    volume_24h           double precision,
    ts_event_ns          bigint NOT NULL,
    ts                   timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    event_id             text NOT NULL,
    stream_seq           bigint NOT NULL
);

-- md.book: the latest top of book per symbol, with its levels ([[price, qty], ...], JSON).
CREATE TABLE book_tops (
    symbol       text PRIMARY KEY,
    best_bid     double precision,
    best_bid_qty double precision,
    best_ask     double precision,
    best_ask_qty double precision,
    mid          double precision,
    spread       double precision,
    spread_bps   double precision,
    bids         jsonb NOT NULL,
    asks         jsonb NOT NULL,
    depth        integer NOT NULL,
    update_id    bigint NOT NULL,
    seq          bigint NOT NULL,
    ts_event_ns  bigint NOT NULL,
    ts           timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    event_id     text NOT NULL,
    stream_seq   bigint NOT NULL
);

-- md.trade: public trades (one row per trade of a TradeBatch).
CREATE TABLE trades (
    symbol      text NOT NULL,
    trade_id    text NOT NULL,
    ts_event_ns bigint NOT NULL,
    price       double precision NOT NULL,
    qty         double precision NOT NULL,
    side        text NOT NULL,
    event_id    text NOT NULL,
    stream_seq  bigint NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX trades_symbol_ts ON trades (symbol, ts_event_ns DESC);

-- md.instrument: the latest trading rules per symbol.
CREATE TABLE instruments (
    symbol        text PRIMARY KEY,
    tick_size     double precision NOT NULL,
    qty_step      double precision NOT NULL,
    min_order_qty double precision NOT NULL,
    max_leverage  double precision,
    ts_event_ns   bigint NOT NULL,
    event_id      text NOT NULL,
    stream_seq    bigint NOT NULL
);

-- md.status: feed gaps, resyncs and staleness (history; the latest row per symbol is the feed's state).
CREATE TABLE feed_status (
    event_id    text PRIMARY KEY,
    symbol      text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('gap', 'resynced', 'stale')),
    topic       text NOT NULL,
    reason      text,
    stale_s     double precision,
    update_id   bigint,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX feed_status_symbol_seq ON feed_status (symbol, stream_seq DESC);

-- sig.factor: one snapshot per closed bar.
CREATE TABLE factor_snapshots (
    event_id    text PRIMARY KEY,
    symbol      text NOT NULL,
    bar_id      text NOT NULL,
    interval    text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    close       double precision NOT NULL,
    egm         double precision,
    ild         double precision,
    rol         double precision,
    pio         double precision,
    ogm         double precision,
    combined    double precision NOT NULL,
    used        text[] NOT NULL,
    ema_fast    double precision,
    ema_mid     double precision,
    ema_slow    double precision,
    trend       text NOT NULL,
    atr         double precision,
    regime      text NOT NULL,
    intent_id   text,
    veto        text,
    stream_seq  bigint NOT NULL
);
CREATE INDEX factor_snapshots_symbol_ts ON factor_snapshots (symbol, ts_event_ns DESC);

-- sig.intent
CREATE TABLE intents (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    side           text NOT NULL,
    entry_price    double precision NOT NULL,
    take_profit    double precision NOT NULL,
    stop_loss      double precision NOT NULL,
    qty            double precision NOT NULL,
    notional_usdt  double precision NOT NULL,
    leverage       double precision NOT NULL,
    sl_distance    double precision NOT NULL,
    tp_distance    double precision NOT NULL,
    combined       double precision NOT NULL,
    trend          text NOT NULL,
    regime         text NOT NULL,
    reasons        text[] NOT NULL,
    stream_seq     bigint NOT NULL
);
CREATE INDEX intents_symbol_ts ON intents (symbol, ts_event_ns DESC);
CREATE INDEX intents_correlation ON intents (correlation_id);

-- llm.verdict
CREATE TABLE verdicts (
    event_id        text PRIMARY KEY,
    symbol          text NOT NULL,
    correlation_id  text NOT NULL,
    causation_id    text NOT NULL,
    ts_event_ns     bigint NOT NULL,
    ts              timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    decision        text NOT NULL CHECK (decision IN ('approve', 'reject')),
    confidence      double precision NOT NULL,
    size_multiplier double precision NOT NULL,
    policy          text NOT NULL,
    reasons         text[] NOT NULL,
    risk_flags      text[] NOT NULL,
    model           text,
    prompt_hash     text,
    raw_text        text,
    latency_ms      double precision,
    tokens_in       integer,
    tokens_out      integer,
    stream_seq      bigint NOT NULL
);
CREATE INDEX verdicts_correlation ON verdicts (correlation_id);
CREATE INDEX verdicts_symbol_ts ON verdicts (symbol, ts_event_ns DESC);

-- exec.awaited: the executor reached an intent's bar (docs/decisions.md D1).
CREATE TABLE verdicts_awaited (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    lock_state     text NOT NULL,
    stream_seq     bigint NOT NULL
);
CREATE INDEX verdicts_awaited_correlation ON verdicts_awaited (correlation_id);

-- exec.suppressed: the "why didn't it trade" ledger (SignalSuppressed and RiskDenied).
CREATE TABLE suppressed (
    event_id       text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('signal_suppressed', 'risk_denied')),
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    reason         text NOT NULL,
    rule           text,
    lock_state     text,
    decision       text,
    stream_seq     bigint NOT NULL
);
CREATE INDEX suppressed_correlation ON suppressed (correlation_id);
CREATE INDEX suppressed_symbol_ts ON suppressed (symbol, ts_event_ns DESC);

-- exec.order: OrderSubmitted, OrderRejected, EntryExpired (one row per event).
CREATE TABLE orders (
    event_id       text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('submitted', 'rejected', 'expired')),
    order_id       text NOT NULL,
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    side           text,
    order_type     text,
    qty            double precision,
    price_ref      double precision,
    take_profit    double precision,
    stop_loss      double precision,
    reduce_only    boolean,
    venue_name     text,
    reason         text,
    stream_seq     bigint NOT NULL
);
CREATE INDEX orders_correlation ON orders (correlation_id);
CREATE INDEX orders_order_id ON orders (order_id);
CREATE INDEX orders_symbol_ts ON orders (symbol, ts_event_ns DESC);

-- venue.fill
CREATE TABLE fills (
    event_id       text PRIMARY KEY,
    order_id       text NOT NULL,
    fill_id        text NOT NULL,
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    side           text NOT NULL,
    qty            double precision NOT NULL,
    price          double precision NOT NULL,
    fee_usdt       double precision NOT NULL,
    liquidity      text NOT NULL,
    reduce_only    boolean NOT NULL,
    venue_name     text NOT NULL,
    stream_seq     bigint NOT NULL
);
CREATE INDEX fills_correlation ON fills (correlation_id);
CREATE INDEX fills_order_id ON fills (order_id);
CREATE INDEX fills_symbol_ts ON fills (symbol, ts_event_ns DESC);

-- exec.position: one row per position, opened by PositionOpened and closed by PositionClosed.
CREATE TABLE positions (
    position_id       text PRIMARY KEY,
    symbol            text NOT NULL,
    correlation_id    text NOT NULL,
    side              text NOT NULL,
    qty               double precision NOT NULL,
    entry_price       double precision NOT NULL,
    take_profit       double precision,
    stop_loss         double precision,
    entry_fee_usdt    double precision,
    opened_ns         bigint NOT NULL,
    opened_at         timestamptz GENERATED ALWAYS AS (to_timestamp(opened_ns::float8 / 1e9)) STORED,
    open_event_id     text,
    status            text NOT NULL CHECK (status IN ('open', 'closed')),
    exit_price        double precision,
    exit_reason       text,
    realized_pnl_usdt double precision,
    closed_ns         bigint,
    closed_at         timestamptz GENERATED ALWAYS AS (to_timestamp(closed_ns::float8 / 1e9)) STORED,
    close_event_id    text,
    stream_seq        bigint NOT NULL
);
CREATE INDEX positions_symbol_status ON positions (symbol, status);
CREATE INDEX positions_correlation ON positions (correlation_id);

-- exec.position PositionClosed: the round trips with their realized P&L (net of fees).
CREATE TABLE round_trips (
    event_id          text PRIMARY KEY,
    position_id       text NOT NULL,
    symbol            text NOT NULL,
    correlation_id    text NOT NULL,
    side              text NOT NULL,
    qty               double precision NOT NULL,
    entry_price       double precision NOT NULL,
    exit_price        double precision NOT NULL,
    exit_reason       text NOT NULL,
    realized_pnl_usdt double precision NOT NULL,
    fee_usdt          double precision NOT NULL,
    return_fraction   double precision NOT NULL,
    holding_ns        bigint NOT NULL,
    opened_ns         bigint NOT NULL,
    closed_ns         bigint NOT NULL,
    opened_at         timestamptz GENERATED ALWAYS AS (to_timestamp(opened_ns::float8 / 1e9)) STORED,
    closed_at         timestamptz GENERATED ALWAYS AS (to_timestamp(closed_ns::float8 / 1e9)) STORED,
    stream_seq        bigint NOT NULL
);
CREATE INDEX round_trips_symbol_closed ON round_trips (symbol, closed_ns);
CREATE INDEX round_trips_correlation ON round_trips (correlation_id);

-- The Hard Lock: the current state per symbol, and every transition.
CREATE TABLE locks (
    symbol         text PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('FLAT', 'ENTRY_PENDING', 'LOCKED', 'COOLDOWN')),
    reason         text NOT NULL,
    event_type     text NOT NULL,
    correlation_id text,
    since_ns       bigint NOT NULL,
    since          timestamptz GENERATED ALWAYS AS (to_timestamp(since_ns::float8 / 1e9)) STORED,
    event_id       text NOT NULL,
    stream_seq     bigint NOT NULL
);

CREATE TABLE lock_history (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    state          text NOT NULL CHECK (state IN ('FLAT', 'ENTRY_PENDING', 'LOCKED', 'COOLDOWN')),
    reason         text NOT NULL,
    event_type     text NOT NULL,
    correlation_id text,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq     bigint NOT NULL
);
CREATE INDEX lock_history_symbol_seq ON lock_history (symbol, stream_seq DESC);

-- sys.control: TradingStarted / TradingStopped (history; the latest per scope is in force).
CREATE TABLE control (
    event_id    text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('started', 'stopped')),
    scope       text NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX control_scope_seq ON control (scope, stream_seq DESC);

-- sys.dlq: messages a service could not use.
CREATE TABLE dead_letters (
    event_id          text PRIMARY KEY,
    service           text NOT NULL,
    reason            text NOT NULL,
    subject           text NOT NULL,
    failed_stream_seq bigint,
    raw               text NOT NULL,
    ts_event_ns       bigint NOT NULL,
    ts                timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq        bigint NOT NULL
);
CREATE INDEX dead_letters_service_ts ON dead_letters (service, ts_event_ns DESC);
