"""The signal's reading of the news: the critical-event veto, the news raising the regime, and the
DIGESTING and PANIC regimes' stops, leverage and size."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_signal.core import stops
from nertz_signal.core.config import NewsRules, SignalConfig
from nertz_signal.core.engine import SignalEngine, SignalState

MINUTE_NS = f.MINUTE_NS
H4_NS = 240 * MINUTE_NS
COSTS = 2 * (0.00055 + 0.0001)


def cfg(**kw: Any) -> SignalConfig:
    return SignalConfig(**{"stop_timeframe": "1", **kw})


def run(engine: SignalEngine, events: list[ev.Event]) -> list[ev.Event]:
    node = Node(engine)
    return [o for i, e in enumerate(events) for o, _ in node.feed(e, Pos(i + 1, i + 1))]


def with_news(bars: list[ev.Bar], *events: tuple[str, float, bool, float], **kw: Any) -> list[ev.Event]:
    """The bars with an assessment of their symbol just before the last bar (its key events' ages in hours)."""
    last = bars[-1]
    return [*bars[:-1], f.news(last.ts_event - 1, last.symbol, events, **kw), last]


def last_snapshot(out: list[ev.Event]) -> ev.FactorSnapshot:
    return [e for e in out if isinstance(e, ev.FactorSnapshot)][-1]


def intents(out: list[ev.Event]) -> list[ev.IntentProposed]:
    return [e for e in out if isinstance(e, ev.IntentProposed)]


# --- the veto ---------------------------------------------------------------------------------------


def test_news_critical_event_vetoes_an_entry_that_would_otherwise_be_proposed(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    assert len(intents(run(SignalEngine(cfg()), bars))) == 1
    out = run(SignalEngine(cfg()), with_news(bars, ("Exchange hack", -2.0, True, 3.0)))
    snap = last_snapshot(out)
    assert intents(out) == [] and snap.intent_id is None
    assert snap.veto == "news_critical: Exchange hack (2025-05-30, impact -2), critical within 24 h"


def test_news_critical_positive_event_vetoes_too_and_a_short_as_well(trend_then_jump):
    bars = trend_then_jump("ETHUSDT", direction=-1)
    out = run(SignalEngine(cfg()), with_news(bars, ("ETF approved", 2.0, True, 1.0)))
    assert intents(out) == [] and (last_snapshot(out).veto or "").startswith("news_critical: ETF approved")


@pytest.mark.parametrize(
    ("news", "why"),
    [
        ({"events": (("Exchange hack", -2.0, True, 30.0),)}, "older than veto_h"),
        ({"events": (("Exchange hack", -0.5, False, 1.0),)}, "not critical"),
        ({"events": (), "failure": "schema", "failure_detail": "broken"}, "a failed assessment"),
    ],
)
def test_news_that_is_old_not_critical_or_failed_vetoes_nothing(trend_then_jump, news, why):
    bars = trend_then_jump("ETHUSDT")
    events = news.pop("events")
    out = run(SignalEngine(cfg()), with_news(bars, *events, **news))
    assert len(intents(out)) == 1, why


def test_news_veto_off_and_its_window_are_settings(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    hack = ("Exchange hack", -2.0, True, 30.0)
    assert intents(run(SignalEngine(cfg(news=NewsRules(veto_h=48))), with_news(bars, hack))) == []
    recent = ("Exchange hack", -2.0, True, 1.0)
    assert len(intents(run(SignalEngine(cfg(news=NewsRules(veto=False))), with_news(bars, recent)))) == 1


def test_a_failed_assessment_keeps_the_previous_news_in_force(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    last = bars[-1]
    hack = f.news(last.ts_event - 10, "ETHUSDT", (("Exchange hack", -2.0, True, 1.0),))
    failed = f.news(last.ts_event - 5, "ETHUSDT", (), failure="timeout", event_id="failed")
    newer = f.news(last.ts_event - 5, "ETHUSDT", (("All clear", 0.5, False, 0.0),), event_id="newer")
    assert intents(run(SignalEngine(cfg()), [*bars[:-1], hack, failed, last])) == []
    assert len(intents(run(SignalEngine(cfg()), [*bars[:-1], hack, newer, last]))) == 1  # superseded


# --- the regime ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("impacts", "regime"), [((0.5,), "unknown"), ((1.2,), "digesting"), ((-1.2,), "digesting"),
                                                  ((2.0, 0.5), "panic"), ((-2.0, -1.0), "panic")])  # fmt: skip
def test_news_decayed_impact_raises_the_regime_and_the_stops_follow(trend_then_jump, impacts, regime):
    bars = trend_then_jump("ETHUSDT")
    (plain,) = intents(run(SignalEngine(cfg()), bars))
    news = [(f"Fund flows {i}", x, False, 0.0) for i, x in enumerate(impacts)]
    (intent,) = intents(run(SignalEngine(cfg()), with_news(bars, *news)))
    assert intent.regime == regime
    stop_m, size_m, lev_m = {"unknown": (1, 1, 1), "digesting": (1.2, 0.8, 0.8), "panic": (1.5, 0.5, 0.5)}[regime]
    assert intent.sl_distance == pytest.approx(plain.sl_distance * stop_m)
    assert intent.leverage == pytest.approx(max(1.0, plain.leverage * lev_m))
    sized = 100.0 / (intent.sl_distance + COSTS) * size_m  # 1 % of 10,000 USDT at the stop, costs included
    assert intent.notional_usdt == pytest.approx(min(sized, intent.leverage * 10_000 * size_m))


def test_news_decays_with_its_half_life(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    # impact 1.2 of an event 12 h old: 1.2 × 0.5^(12/24) = 0.85 < 1: no regime of its own any more
    flows = ("Fund flows", 1.2, False, 12.0)
    (intent,) = intents(run(SignalEngine(cfg()), with_news(bars, flows)))
    assert intent.regime == "unknown"
    (intent,) = intents(run(SignalEngine(cfg(news=NewsRules(half_life_h=96))), with_news(bars, flows)))
    assert intent.regime == "digesting"


def test_engine_news_survive_a_snapshot(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    events = with_news(bars, ("Exchange hack", -2.0, True, 1.0))
    engine = SignalEngine(cfg())
    run(engine, events[:-1])
    state = msgspec.json.decode(msgspec.json.encode(engine.get_state()), type=SignalState)
    again = SignalEngine(cfg())
    again.set_state(state)
    at = bars[-1].ts_event
    assert engine.news_impact("ETHUSDT", at) == again.news_impact("ETHUSDT", at) == pytest.approx(-2 * 0.5 ** (1 / 24))
    assert last_snapshot(run(again, events[-1:])).veto == last_snapshot(run(SignalEngine(cfg()), events)).veto


# --- the regimes' stops, leverage and size --------------------------------------------------------------


def test_plan_digesting_widens_the_stop_by_a_fifth_and_scales_leverage_and_size_by_four_fifths():
    cfg_ = SignalConfig()
    normal = stops.plan("long", 100.0, 1.0, "normal", cfg_, H4_NS)
    digesting = stops.plan("long", 100.0, 1.0, "digesting", cfg_, H4_NS)
    assert normal is not None and digesting is not None
    assert digesting.sl_distance == pytest.approx(0.015 * 1.2) and digesting.tp_distance == pytest.approx(3.5 * 0.018)
    assert digesting.leverage == pytest.approx(normal.leverage * 0.8)
    assert digesting.notional_usdt == pytest.approx(100 / (0.018 + COSTS) * 0.8)


def test_plan_panic_widens_the_stop_half_and_halves_leverage_and_size():
    cfg_ = SignalConfig()
    normal = stops.plan("long", 100.0, 1.0, "normal", cfg_, H4_NS)
    panic = stops.plan("long", 100.0, 1.0, "panic", cfg_, H4_NS)
    assert normal is not None and panic is not None
    assert panic.sl_distance == pytest.approx(0.0225) and panic.leverage == pytest.approx(normal.leverage / 2)
    assert panic.notional_usdt == pytest.approx(100 / (0.0225 + COSTS) * 0.5)


def test_plan_regime_leverage_never_below_one():
    low = SignalConfig(max_leverage=1.5)
    p = stops.plan("long", 100.0, 1.0, "panic", low, H4_NS)
    assert p is not None and p.leverage == 1.0


def test_regime_thresholds_are_validated():
    with pytest.raises(ValueError, match="digesting_atr_multiple < panic_atr_multiple"):
        SignalConfig(digesting_atr_multiple=3.0)
    with pytest.raises(ValueError, match="panic_impact >= digesting_impact"):
        NewsRules(digesting_impact=2.5)
