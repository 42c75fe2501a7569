"""Prometheus metrics of market-ingest (names ``nertz_market_ingest_<noun>_<unit>``).

Events out, by type and ack outcome, are counted by the bus (``nertz_market_ingest_events_out_total``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: receive-to-ack latency of the live feed: ms to seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """Counters the replayer and the live feed update; events out are counted by the bus.

    Parameters
    ----------
    registry : CollectorRegistry
        The service's registry (``Runtime.registry``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "nertz_market_ingest"
        self.records = Counter(
            f"{p}_records_total", "Records read (raw frames, CSV rows), by source kind", ["kind"], registry=registry
        )
        self.rejected = Counter(
            f"{p}_rejected_total",
            "Frames or rows rejected (and dead-lettered), by reason",
            ["reason"],
            registry=registry,
        )
        self.book_gaps = Counter(
            f"{p}_book_gaps_total", "Order book gaps (FeedGap), by symbol", ["symbol"], registry=registry
        )
        self.book_resyncs = Counter(
            f"{p}_book_resyncs_total", "Order book resyncs (FeedResynced), by symbol", ["symbol"], registry=registry
        )
        # --- the bus ---
        self.bus_degraded = Gauge(
            f"{p}_bus_degraded",
            "1 while the stream does not acknowledge publishes (health: 'degraded: bus'); 0 otherwise",
            registry=registry,
        )
        self.bus_errors = Counter(
            f"{p}_bus_errors_total",
            "Publishes that failed on a bus outage and were retried, by error (PublishError, TimeoutError...)",
            ["error"],
            registry=registry,
        )
        self.bus_outage_seconds = Counter(
            f"{p}_bus_outage_seconds_total",
            "Seconds spent waiting for the bus to acknowledge publishes again",
            registry=registry,
        )
        # --- live feed ---
        self.frames = Counter(
            f"{p}_frames_total",
            "Live WebSocket frames received, by Bybit topic ('control' = acks and pongs, 'invalid' = no topic "
            "could be read)",
            ["topic"],
            registry=registry,
        )
        self.stale = Counter(
            f"{p}_stale_total", "Feeds found stale (FeedStale), by symbol", ["symbol"], registry=registry
        )
        self.resubscribes = Counter(
            f"{p}_resubscribes_total",
            "Topics resubscribed for a fresh snapshot, by reason (gap, stale, resync_timeout, overflow)",
            ["reason"],
            registry=registry,
        )
        self.reconnects = Counter(
            f"{p}_reconnects_total",
            "WebSocket reconnects, by kind (pybit = pybit's own, rebuild = a new connection of ours)",
            ["kind"],
            registry=registry,
        )
        self.frames_dropped = Counter(
            f"{p}_frames_dropped_total",
            "Live frames dropped because the queue to the parser was full",
            registry=registry,
        )
        self.publish_latency = Histogram(
            f"{p}_publish_latency_seconds",
            "Live feed: from a frame's receipt to the stream's ack of its events",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.last_update_age = Gauge(
            f"{p}_last_update_age_seconds",
            "Live feed: seconds since the last data frame of a symbol",
            ["symbol"],
            registry=registry,
        )
        self.queue_depth = Gauge(f"{p}_queue_depth_frames", "Live frames waiting for the parser", registry=registry)
        self.bars_filled = Counter(
            f"{p}_bars_filled_total",
            "Closed bars the WebSocket skipped (lost frames, reconnects), fetched by REST, by symbol",
            ["symbol"],
            registry=registry,
        )
        self.universe_refreshes = Counter(
            f"{p}_universe_refreshes_total",
            "Coin hunter refreshes, by outcome (changed, unchanged, nothing_qualified, failed)",
            ["outcome"],
            registry=registry,
        )
        self.universe_suggestions = Counter(
            f"{p}_universe_suggestions_total",
            "Qwen's answers to the coin hunter, by outcome (ok, or the failure: timeout, http_429, schema...)",
            ["outcome"],
            registry=registry,
        )
        self.universe_size = Gauge(
            f"{p}_universe_symbols", "Symbols the live feed serves (the universe)", registry=registry
        )
        self.rest_calls = Counter(
            f"{p}_rest_calls_total",
            "Bybit REST calls, by pybit method and outcome (ok, rate_limited, http_5xx, timeout...)",
            ["endpoint", "outcome"],
            registry=registry,
        )
