"""Prometheus metrics: one registry per service, names ``nertz_<service>_<noun>_<unit>``.

Labels are of low cardinality (type, outcome, reason, consumer, symbol), never ids.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: bus latencies are µs to ms: the default buckets (5 ms .. 10 s) are too coarse
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class BusMetrics:
    """The bus metrics every service exposes."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"nertz_{service.replace('-', '_')}"
        self.registry = registry
        self.prefix = p
        self.events_in = Counter(f"{p}_events_in_total", "Events consumed, by type", ["type"], registry=registry)
        self.events_out = Counter(
            f"{p}_events_out_total",
            "Events published, by type and ack outcome",
            ["type", "outcome"],
            registry=registry,
        )
        self.publish_seconds = Histogram(
            f"{p}_publish_seconds",
            "Publish-to-ack latency",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.publish_retries = Counter(
            f"{p}_publish_retries_total",
            "Publish retries, by reason",
            ["reason"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            f"{p}_handler_seconds",
            "Handler latency per message or batch",
            ["consumer"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{p}_dead_letters_total",
            "Messages dead-lettered, by reason",
            ["reason"],
            registry=registry,
        )
        self.naks = Counter(f"{p}_naks_total", "Messages nak'd for redelivery", ["consumer"], registry=registry)
        self.consumer_pending = Gauge(
            f"{p}_consumer_pending_messages",
            "Messages not yet delivered (consumer lag)",
            ["consumer"],
            registry=registry,
        )


def serve(port: int, registry: CollectorRegistry, addr: str = "127.0.0.1") -> WSGIServer | None:
    """Serve ``/metrics`` for ``registry`` on ``addr``:``port`` (port 0 disables it) in a daemon thread.

    Parameters
    ----------
    port : int
        TCP port; 0 serves nothing.
    registry : CollectorRegistry
        The service's registry.
    addr : str
        Interface to bind: loopback by default, so that metrics are not published to every network the host
        is on; a container sets ``NERTZ_METRICS_ADDR=0.0.0.0`` for Prometheus to reach it.

    Returns
    -------
    WSGIServer or None
        The running server (``shutdown()`` stops it), None when ``port`` is 0.

    Raises
    ------
    OSError
        If ``addr``:``port`` cannot be bound.
    """
    if not port:
        return None
    server, _ = start_http_server(port, addr=addr, registry=registry)
    return server
