-- The signal decay tracker (issue 10): every WeightsAdapted, the weights in force per bar series from
-- its bar on (the latest per symbol and interval is in force). Conventions of 0001.
CREATE TABLE factor_weights (
    event_id    text PRIMARY KEY,
    symbol      text NOT NULL,
    interval    text NOT NULL,
    bar_id      text NOT NULL,
    weights     jsonb NOT NULL,
    multipliers jsonb NOT NULL,
    accuracy    jsonb NOT NULL,
    calls       jsonb NOT NULL,
    retired     jsonb NOT NULL,
    reason      text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX factor_weights_symbol_seq ON factor_weights (symbol, interval, stream_seq DESC);
