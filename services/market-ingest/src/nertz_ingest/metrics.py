"""Prometheus metrics of market-ingest (names ``nertz_market_ingest_<noun>_<unit>``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics:
    """Counters the replayer (and later the live feed) updates; events out are counted by the bus.

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
