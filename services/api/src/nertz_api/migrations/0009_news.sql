-- The news analyst (llm.news): every NewsAssessed, failures included (failure set, no content), with
-- the model call's figures; and the operators' NewsRequested (sys.news). The latest NewsAssessed
-- without a failure is a symbol's news in force. Conventions of 0001.
CREATE TABLE news_assessments (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    trigger        text NOT NULL CHECK (trigger IN ('schedule', 'request')),
    request_id     text,
    window_days    integer NOT NULL,
    impact         double precision NOT NULL,
    key_events     jsonb NOT NULL,
    critical       integer NOT NULL,          -- how many key events are critical
    summary        text NOT NULL,
    failure        text,
    failure_detail text NOT NULL,
    model          text,
    prompt_id      text,
    prompt_sha256  text,
    raw_text       text,
    latency_ms     double precision,
    tokens_in      integer,
    tokens_out     integer,
    cost_usd       double precision,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq     bigint NOT NULL
);
CREATE INDEX news_assessments_symbol_seq ON news_assessments (symbol, stream_seq DESC);

CREATE TABLE news_requests (
    event_id    text PRIMARY KEY,
    symbol      text NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX news_requests_symbol_seq ON news_requests (symbol, stream_seq DESC);
