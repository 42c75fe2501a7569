-- The coin hunter: every UniverseChanged, the symbols market-ingest serves from it on (the
-- latest by stream_seq is in force), with the rules and each candidate's figures and reason. Conventions
-- of 0001.
CREATE TABLE universe_changes (
    event_id          text PRIMARY KEY,
    symbols           jsonb NOT NULL,
    added             jsonb NOT NULL,
    removed           jsonb NOT NULL,
    candidates        jsonb NOT NULL,
    min_turnover_usdt double precision NOT NULL,
    max_spread        double precision NOT NULL,
    max_symbols       integer NOT NULL,
    source            text NOT NULL,
    ts_event_ns       bigint NOT NULL,
    ts                timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq        bigint NOT NULL
);
CREATE INDEX universe_changes_seq ON universe_changes (stream_seq DESC);
