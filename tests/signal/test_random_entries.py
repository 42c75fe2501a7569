"""Random entries, the evaluation's baseline: a draw hashed from the seed and the bar's id at the
configured rate, long and short at even odds, through the strategy's own vetoes and stops; the service
refuses them."""

from __future__ import annotations

import math

import pytest

from nertz_common import events as ev
from nertz_common.errors import ConfigurationError
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_signal.core.config import RandomEntries, SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_signal.settings import SignalSettings


def test_the_draw_has_the_configured_rate_even_sides_and_depends_only_on_seed_and_bar():
    rnd = RandomEntries(enabled=True, rate=0.05, seed=3)
    ids = [f"bar-{i}" for i in range(40_000)]
    sides = [rnd.side(i) for i in ids]
    n = len(ids)
    drawn = [s for s in sides if s is not None]
    sigma = math.sqrt(n * 0.05 * 0.95)
    assert abs(len(drawn) - n * 0.05) < 5 * sigma, len(drawn)
    longs = sum(s == "long" for s in drawn)
    assert abs(longs - len(drawn) / 2) < 5 * math.sqrt(len(drawn) / 4), (longs, len(drawn))
    assert [rnd.side(i) for i in ids] == sides  # a function of (seed, bar id)
    other = [RandomEntries(enabled=True, rate=0.05, seed=4).side(i) for i in ids]
    assert other != sides and sum(a is not None and a == b for a, b in zip(sides, other, strict=True)) < len(drawn) / 4


def run(node: Node, events: list[ev.Event]) -> list[ev.Event]:
    return [o for i, e in enumerate(events, 1) for o, _ in node.feed(e, Pos(i, i))]


def test_random_entries_replace_the_threshold_and_trend_but_keep_the_vetoes():
    bars = [f.bar(i, close=100.0 + 0.01 * (i % 7)) for i in range(600)]  # no trend: the strategy never enters
    rnd = RandomEntries(enabled=True, rate=0.2, seed=1)
    cfg = SignalConfig(stop_timeframe="1", stop_atr_min_bars=3)
    assert not any(isinstance(e, ev.IntentProposed) for e in run(Node(SignalEngine(cfg)), bars))
    out = run(Node(SignalEngine(cfg.model_copy(update={"random_entries": rnd}))), bars)
    intents = {e.causation_id: e for e in out if isinstance(e, ev.IntentProposed)}
    drawn = {b.event_id: s for b in bars if (s := rnd.side(b.event_id)) is not None}
    snaps = {e.bar_id: e for e in out if isinstance(e, ev.FactorSnapshot)}
    assert intents and set(intents) <= set(drawn)
    for bar_id, side in drawn.items():  # every draw is an intent of its side, or vetoed with a reason
        if bar_id in intents:
            i = intents[bar_id]
            assert i.side == side and i.reasons[0].startswith("random entry: the baseline's draw (seed 1")
            assert "(not used: a random entry)" in i.reasons[1] and i.net_risk_reward >= cfg.min_risk_reward
        else:
            assert snaps[bar_id].veto, bar_id
    # backfilled bars build state and never trade, random or not
    warm = [f.bar(i, close=100.0, warmup=True) for i in range(600)]
    out = run(Node(SignalEngine(cfg.model_copy(update={"random_entries": rnd}))), warm)
    assert not any(isinstance(e, ev.IntentProposed) for e in out)
    assert any((e.veto or "").startswith("warmup") for e in out if isinstance(e, ev.FactorSnapshot))


def test_the_signal_service_refuses_random_entries(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NERTZ_SIGNAL__RANDOM_ENTRIES__ENABLED", "true")
    with pytest.raises((ValueError, ConfigurationError), match="random entries are the backtest's baseline"):
        SignalSettings()
