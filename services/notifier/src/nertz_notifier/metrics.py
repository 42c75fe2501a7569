"""The notifier's metrics (``nertz_notifier_*``), in the runtime's registry; labels of low cardinality."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Bot API latencies: tens of ms to seconds
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class NotifierMetrics:
    """Posts by kind and outcome, retries, the waits Telegram asked for, and whether posting is on.

    Parameters
    ----------
    registry : CollectorRegistry
        The service's registry (served on ``/metrics``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.posts = Counter(
            "nertz_notifier_posts_total",
            "Posts by kind (entry, exit, reduce, daily, lock, mismatch, override, halt, resume, dead_letter) and "
            "outcome (ok: posted; refused: Telegram refused it for good; stale: older than max_age_s, not posted)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "nertz_notifier_retries_total",
            "Bot API calls sent again, by reason (rate_limited, network, chat_migrated)",
            ["reason"],
            registry=registry,
        )
        self.retry_after_seconds = Counter(
            "nertz_notifier_retry_after_seconds_total",
            "Seconds waited because Telegram answered 429 with retry_after",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "nertz_notifier_send_seconds",
            "sendMessage until Telegram's answer, retries and their waits included, s",
            buckets=SEND_BUCKETS,
            registry=registry,
        )
        self.enabled = Gauge(
            "nertz_notifier_enabled", "1 when a bot token is configured (posting), 0 when off", registry=registry
        )
