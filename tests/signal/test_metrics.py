"""The signal's gauges and counters after a flush equal those of counting every output in order."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry

from nertz_common import events as ev
from nertz_common import ids
from nertz_common.testing import factories as f
from nertz_signal.core import filters
from nertz_signal.core.factors import FACTOR_NAMES
from nertz_signal.metrics import SignalMetrics


def _snapshot(bar: ev.Bar, combined: float, **kw: Any) -> ev.FactorSnapshot:
    return ev.FactorSnapshot(
        event_id=ids.derive_id("FactorSnapshot", bar.event_id), ts_event=bar.ts_event, ts_init=bar.ts_event,
        symbol=bar.symbol, bar_id=bar.event_id, interval=bar.interval, close=bar.close, combined=combined, **kw,
    )  # fmt: skip


def _one_by_one(m: SignalMetrics, events: list[ev.Event]) -> None:
    """What the signal counted before: every labelled child looked up and set at every output."""
    for e in events:
        if isinstance(e, ev.FactorSnapshot):
            m.snapshots.labels(symbol=e.symbol).inc()
            for name in FACTOR_NAMES:
                v = getattr(e, name)
                m.factor_value.labels(symbol=e.symbol, factor=name).set(math.nan if v is None else v)
            m.factor_value.labels(symbol=e.symbol, factor="combined").set(e.combined)
            if e.veto:
                m.vetoes.labels(symbol=e.symbol, reason=filters.veto_name(e.veto)).inc()
        elif isinstance(e, ev.IntentProposed):
            m.intents.labels(symbol=e.symbol, side=e.side).inc()


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | str]:
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = "nan" if math.isnan(s.value) else s.value
    return out


def test_a_flush_counts_and_sets_what_counting_each_output_did():
    bars = [f.bar(i, symbol=sym, close=100.0 + i) for i in range(6) for sym in ("BTCUSDT", "ETHUSDT")]
    events: list[ev.Event] = []
    for i, b in enumerate(bars):
        if i == 3:
            events.append(f.intent(b))
        veto = "warmup: backfilled" if i == 5 else None
        events.append(_snapshot(b, combined=0.5 * i, egm=0.1 * i if i % 2 else None, pio=-0.2, veto=veto))
    flushed, reference = CollectorRegistry(), CollectorRegistry()
    m = SignalMetrics(flushed)
    last = m.observe(events[:7]) | m.observe(events[7:])
    m.set_news_impact("BTCUSDT", None)
    r = SignalMetrics(reference)
    _one_by_one(r, events)
    r.news_impact.labels(symbol="BTCUSDT").set(math.nan)
    assert _samples(flushed) == _samples(reference)
    assert {s: e.bar_id for s, e in last.items()} == {"BTCUSDT": bars[-2].event_id, "ETHUSDT": bars[-1].event_id}
