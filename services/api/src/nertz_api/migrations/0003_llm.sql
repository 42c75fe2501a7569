-- Qwen in the loop: what each verdict cost and why it failed, every model call, the circuit breaker's
-- reviews and overrides, and the shadow validators' verdicts (joined to the live ones by intent).

ALTER TABLE verdicts
    ADD COLUMN prompt_id  text,
    ADD COLUMN request_id text,
    ADD COLUMN cost_usd   double precision,
    ADD COLUMN failure    text,
    ADD COLUMN overrides  text[] NOT NULL DEFAULT '{}';

-- one row per model call (a council verdict has three; a breaker review one)
CREATE TABLE model_calls (
    event_id       text NOT NULL,          -- the verdict, shadow verdict or review that recorded it
    ordinal        integer NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('verdict', 'shadow', 'review')),
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    role           text NOT NULL,
    model          text NOT NULL,
    prompt_id      text NOT NULL,
    prompt_sha256  text NOT NULL,
    outcome        text NOT NULL,
    finish_reason  text,
    status_code    integer,
    error_code     text,
    request_id     text,
    latency_ms     double precision NOT NULL,
    attempts       integer NOT NULL,
    tokens_in      integer NOT NULL,
    tokens_out     integer NOT NULL,
    cost_usd       double precision NOT NULL,
    stream_seq     bigint NOT NULL,
    PRIMARY KEY (event_id, ordinal)
);
CREATE INDEX model_calls_ts ON model_calls (ts_event_ns DESC);

-- llm.override: one row per circuit-breaker review, one per override it issued
CREATE TABLE risk_reviews (
    event_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL,
    ts_event_ns    bigint NOT NULL,
    ts             timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    trigger        text NOT NULL,
    policy         text NOT NULL,
    refused        text[] NOT NULL,
    note           text NOT NULL,
    stream_seq     bigint NOT NULL
);
CREATE TABLE risk_overrides (
    override_id    text PRIMARY KEY,
    review_id      text NOT NULL REFERENCES risk_reviews (event_id),
    symbol         text NOT NULL,
    kind           text NOT NULL,
    value          double precision,
    side           text,
    from_ns        bigint NOT NULL,
    until_ns       bigint NOT NULL,
    reason         text NOT NULL,
    stream_seq     bigint NOT NULL
);
CREATE INDEX risk_overrides_symbol ON risk_overrides (symbol, until_ns DESC);

-- llm.shadow.<name>: what a shadow validator would have decided
CREATE TABLE shadow_verdicts (
    event_id        text PRIMARY KEY,
    shadow          text NOT NULL,
    symbol          text NOT NULL,
    correlation_id  text NOT NULL,
    ts_event_ns     bigint NOT NULL,
    decision        text NOT NULL CHECK (decision IN ('approve', 'reject')),
    confidence      double precision NOT NULL,
    size_multiplier double precision NOT NULL,
    policy          text NOT NULL,
    reasons         text[] NOT NULL,
    model           text,
    prompt_id       text,
    failure         text,
    stream_seq      bigint NOT NULL
);
CREATE INDEX shadow_verdicts_correlation ON shadow_verdicts (correlation_id);

-- per shadow: how often it agreed with the live validator, and what the trades it would have taken
-- (and those it would have refused) earned; a trade the shadow approves and the live validator
-- rejected was never made, so its P&L is unknown (counted apart)
CREATE VIEW shadow_agreement AS
SELECT s.shadow,
       count(*) AS judged,
       count(*) FILTER (WHERE s.decision = v.decision) AS agreed,
       count(*) FILTER (WHERE s.decision = 'approve' AND v.decision = 'reject') AS would_have_traded,
       count(*) FILTER (WHERE s.decision = 'reject' AND v.decision = 'approve') AS would_have_refused,
       coalesce(sum(rt.realized_pnl_usdt) FILTER (WHERE s.decision = 'approve'), 0) AS pnl_kept_usdt,
       coalesce(sum(rt.realized_pnl_usdt) FILTER (WHERE s.decision = 'reject'), 0) AS pnl_avoided_usdt
FROM shadow_verdicts s
JOIN verdicts v ON v.correlation_id = s.correlation_id
LEFT JOIN round_trips rt ON rt.correlation_id = s.correlation_id
GROUP BY s.shadow;
