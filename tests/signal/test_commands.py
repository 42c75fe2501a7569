"""The signal's operator commands: ConfigChanged from its log position on, ManualTradeRequested on the
latest closed bar; both survive a snapshot round trip."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, NodeState, Pos
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine


def cfg(**kw: Any) -> SignalConfig:
    return SignalConfig(**{"stop_timeframe": "1", **kw})  # the stop's ATR from these minutes of 1m bars


def feed(node: Node, events: list[ev.Event], start: int = 1) -> list[ev.Event]:
    return [o for i, e in enumerate(events) for o, _ in node.feed(e, Pos(start + i, start + i))]


def changed(ts: int, **changes: Any) -> ev.ConfigChanged:
    return ev.ConfigChanged(event_id=derive_id("cc", ts, *changes), ts_event=ts, ts_init=ts, changes=changes)


def manual(ts: int, symbol: str = "ETHUSDT", side: ev.OrderSide | None = None) -> ev.ManualTradeRequested:
    return ev.ManualTradeRequested(
        event_id=derive_id("mt", ts, symbol), ts_event=ts, ts_init=ts, scope=symbol, side=side, reason="test"
    )


def test_a_threshold_change_applies_from_its_position_on(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    high = cfg(entry_threshold=9.99)
    assert not any(isinstance(e, ev.IntentProposed) for e in feed(Node(SignalEngine(high)), bars))
    # the same bars with the threshold lowered before the last one: its intent appears
    node = Node(SignalEngine(high))
    out = feed(node, [*bars[:-1], changed(bars[-2].ts_event, **{"signal.entry_threshold": 9.0}), bars[-1]])
    assert [type(e).__name__ for e in out[-2:]] == ["IntentProposed", "FactorSnapshot"]
    # ... and lowered after it: nothing (a change never reaches back)
    node = Node(SignalEngine(high))
    out = feed(node, [*bars, changed(bars[-1].ts_event, **{"signal.entry_threshold": 9.0})])
    assert not any(isinstance(e, ev.IntentProposed) for e in out)


def test_other_services_keys_are_ignored_and_a_bad_change_is_refused_whole(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    engine = SignalEngine(cfg(entry_threshold=9.99))
    node = Node(engine)
    feed(node, [changed(1, **{"executor.max_positions": 1, "validator.rules.min_win_rate": 0.3})])
    assert engine.overrides == {} and engine.config_rejected == 0
    feed(node, [changed(2, **{"signal.entry_threshold": 9.0, "signal.ema_fast": 3})])
    assert engine.overrides == {} and engine.config_rejected == 1 and engine.cfg.entry_threshold == 9.99
    assert not any(isinstance(e, ev.IntentProposed) for e in feed(node, bars, 10))


def test_overrides_survive_a_snapshot_round_trip(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    node = Node(SignalEngine(cfg(entry_threshold=9.99)))
    feed(node, [changed(1, **{"signal.entry_threshold": 9.0}), *bars[:-1]])
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(node.get_state()), type=NodeState)
    again = Node(SignalEngine(cfg(entry_threshold=9.99)))
    again.set_state(state)
    assert again.component.cfg.entry_threshold == 9.0  # type: ignore[attr-defined]
    assert feed(again, bars[-1:], 99) == feed(node, bars[-1:], 99)
    assert any(isinstance(e, ev.IntentProposed) for e in feed(Node(SignalEngine(cfg())), bars))


@pytest.mark.parametrize("side", ["Buy", "Sell", None])
def test_a_manual_request_proposes_on_the_latest_closed_bar_past_the_threshold(trend_then_jump, side):
    bars = trend_then_jump("ETHUSDT")[:-1]  # no bar here reaches the threshold
    node = Node(SignalEngine(cfg()))
    assert not any(isinstance(e, ev.IntentProposed) for e in feed(node, bars))
    req = manual(bars[-1].ts_event + 5_000_000_000, side=side)
    out = feed(node, [req], 1000)
    intent, snap = out
    assert isinstance(intent, ev.IntentProposed) and isinstance(snap, ev.FactorSnapshot)
    assert intent.event_id == derive_id("IntentProposed", req.event_id) == snap.intent_id
    assert intent.causation_id == req.event_id == snap.bar_id and snap.veto is None
    assert intent.ts_event == snap.ts_event == req.ts_event
    assert intent.entry_price == bars[-1].close == snap.close
    want = {"Buy": "long", "Sell": "short", None: "long" if snap.combined > 0 else "short"}[side]
    assert intent.side == want
    assert intent.reasons[0] == "manual trade requested by api: test"
    assert ev.decode(ev.encode(intent)) == intent


def test_a_manual_request_keeps_the_filters_and_needs_a_closed_bar(trend_then_jump):
    node = Node(SignalEngine(cfg()))
    assert feed(node, [manual(1)]) == []  # no bar of the symbol yet: nothing (the executor does not wait)
    bars = trend_then_jump("ETHUSDT")
    warm = [msgspec.structs.replace(b, warmup=True) for b in bars]
    feed(node, warm, 10)
    (snap,) = feed(node, [manual(bars[-1].ts_event + 1)], 1000)
    assert isinstance(snap, ev.FactorSnapshot) and snap.intent_id is None
    assert snap.veto is not None and snap.veto.startswith("warmup")


def test_timeframe_limits_intents_to_its_interval(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")  # 1m bars
    assert any(isinstance(e, ev.IntentProposed) for e in feed(Node(SignalEngine(cfg(timeframe="1"))), bars))
    out = feed(Node(SignalEngine(cfg(timeframe="60"))), bars)
    assert not any(isinstance(e, ev.IntentProposed) for e in out)
    assert sum(isinstance(e, ev.FactorSnapshot) for e in out) == sum(b.closed for b in bars)
