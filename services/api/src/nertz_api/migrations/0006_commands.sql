-- Operator commands beyond start/stop (issue 9), and the notifier's posts.
-- The conventions of 0001: *_ns are UNIX ns with a generated timestamptz next to them, facts keyed by
-- the event_id that stated them.

-- sys.config ConfigChanged: settings changed while running, by dotted key ("signal.entry_threshold"),
-- applied by every service where the event sits in the log (the latest per key is in force).
CREATE TABLE config_changes (
    event_id    text PRIMARY KEY,
    changes     jsonb NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX config_changes_seq ON config_changes (stream_seq DESC);

-- sys.manual ManualTradeRequested: an operator's request for a trade on one symbol (its intent, if
-- any, is in intents with the same causation).
CREATE TABLE manual_trades (
    event_id    text PRIMARY KEY,
    symbol      text NOT NULL,
    side        text CHECK (side IN ('Buy', 'Sell')),
    actor       text NOT NULL,
    reason      text NOT NULL,
    ts_event_ns bigint NOT NULL,
    ts          timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq  bigint NOT NULL
);
CREATE INDEX manual_trades_symbol_seq ON manual_trades (symbol, stream_seq DESC);

-- sys.notify NotificationPosted: what the notifier posted, about which event, with the channel's id.
CREATE TABLE notifications (
    event_id            text PRIMARY KEY,
    channel             text NOT NULL,
    source_event_id     text NOT NULL,
    kind                text NOT NULL,
    chat_id             text NOT NULL,
    message_id          bigint NOT NULL,
    reply_to_message_id bigint,
    ts_event_ns         bigint NOT NULL,
    ts                  timestamptz GENERATED ALWAYS AS (to_timestamp(ts_event_ns::float8 / 1e9)) STORED,
    stream_seq          bigint NOT NULL
);
CREATE INDEX notifications_source ON notifications (source_event_id);
