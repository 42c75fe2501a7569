"""Prometheus metrics of the signal service (``nertz_signal_*``), labelled by symbol, factor, side, reason."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge

from nertz_common import events as ev
from nertz_signal.core import filters
from nertz_signal.core.factors import FACTOR_NAMES


class SignalMetrics:
    """Factor values, snapshots, intents and vetoes.

    Parameters
    ----------
    registry : CollectorRegistry
        The service's registry (``Runtime.registry``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.factor_value = Gauge(
            "nertz_signal_factor_value",
            "Latest factor score ([-1, 1]; combined in [-10, 10]); NaN when unavailable",
            ["symbol", "factor"],
            registry=registry,
        )
        self.snapshots = Counter(
            "nertz_signal_snapshots_total",
            "Factor snapshots published (one per closed bar)",
            ["symbol"],
            registry=registry,
        )
        self.intents = Counter(
            "nertz_signal_intents_total", "Intents proposed, by symbol and side", ["symbol", "side"], registry=registry
        )
        self.vetoes = Counter(
            "nertz_signal_vetoes_total", "Candidate intents vetoed, by filter", ["symbol", "reason"], registry=registry
        )
        self.resets = Counter(
            "nertz_signal_warmup_resets_total", "Bar series reset by a time gap", ["symbol"], registry=registry
        )
        self.weight = Gauge(
            "nertz_signal_factor_weight",
            "Combined-score weight in force (decay tracker; 0 = retired), by bar series",
            ["symbol", "interval", "factor"],
            registry=registry,
        )
        self.accuracy = Gauge(
            "nertz_signal_factor_accuracy",
            "Rolling directional accuracy of a factor's calls (fraction); NaN before enough calls",
            ["symbol", "interval", "factor"],
            registry=registry,
        )
        self.adapted = Counter(
            "nertz_signal_weights_adapted_total", "WeightsAdapted published", ["symbol"], registry=registry
        )
        self.news_impact = Gauge(
            "nertz_signal_news_impact",
            "The symbol's decayed news impact at its latest closed bar (sum of key events' -2..+2 impacts, "
            "24 h half-life); NaN without news",
            ["symbol"],
            registry=registry,
        )

    def observe(self, events: list[ev.Event]) -> None:
        """Count what one input produced."""
        for e in events:
            if isinstance(e, ev.FactorSnapshot):
                self.snapshots.labels(symbol=e.symbol).inc()
                for name in FACTOR_NAMES:
                    v = getattr(e, name)
                    self.factor_value.labels(symbol=e.symbol, factor=name).set(math.nan if v is None else v)
                self.factor_value.labels(symbol=e.symbol, factor="combined").set(e.combined)
                if e.veto:
                    self.vetoes.labels(symbol=e.symbol, reason=filters.veto_name(e.veto)).inc()
            elif isinstance(e, ev.IntentProposed):
                self.intents.labels(symbol=e.symbol, side=e.side).inc()
            elif isinstance(e, ev.WeightsAdapted):
                self.adapted.labels(symbol=e.symbol).inc()
                for name, w in e.weights.items():
                    acc = e.accuracy.get(name)
                    self.weight.labels(symbol=e.symbol, interval=e.interval, factor=name).set(w)
                    self.accuracy.labels(symbol=e.symbol, interval=e.interval, factor=name).set(
                        math.nan if acc is None else acc
                    )
