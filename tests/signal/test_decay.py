"""The signal decay tracker: calls scored h bars later, weights ∝ (2(accuracy − 0.5))², a factor right
40 % of the time retired and restored once it recovers, WeightsAdapted on the log, snapshots."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, NodeState, Pos
from nertz_common.testing import factories as f
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.decay import DecayConfig, DecayTracker
from nertz_signal.core.engine import SignalEngine

PIO = 3  # FACTOR_NAMES index


def feed_calls(t: DecayTracker, moves: str, close: float = 100.0) -> tuple[float, list[Any]]:
    """PIO calls "up" at every bar; ``moves`` says where the next close goes ('u' up, 'd' down)."""
    changes = []
    for m in moves:
        changes.append(t.step(close, (None, None, None, 0.5, None)))
        close += 1.0 if m == "u" else -1.0
    changes.append(t.step(close, (None, None, None, 0.5, None)))
    return close, changes


def test_a_factor_right_40_percent_of_the_time_is_retired_and_restored_when_it_recovers():
    t = DecayTracker(DecayConfig(enabled=True, horizon_bars=1, window=100, min_calls=50))
    close, changes = feed_calls(t, "uuddd" * 20)  # 100 calls, 40 right
    assert t.accuracy(PIO) == pytest.approx(0.40)
    assert t.retired[PIO] and t.multipliers[PIO] == 0.0 and t.weights((0.2, 0.3, 0.3, 0.1, 0.1))[PIO] == 0.0
    retired_at = next(i for i, c in enumerate(changes) if c.retired == ("pio",))
    assert retired_at == 50  # the first bar with min_calls scored calls: 20 of 50 right
    assert all(t.multipliers[i] == 1.0 for i in (0, 1, 2, 4))  # factors without calls keep their weight
    # it recovers: right 80 % of the time; restored once its window is back at 50 %
    _, later = feed_calls(t, "uuuud" * 20, close)
    assert not t.retired[PIO] and t.accuracy(PIO) == pytest.approx(0.8)
    back = next(i for i, c in enumerate(later) if c.restored == ("pio",))
    assert 0 < back < len(later) - 1 and all(c.publish for c in (changes[retired_at], later[back]))


def test_the_multiplier_is_the_squared_edge_scaled_to_the_reference_and_capped():
    cfg = DecayConfig(enabled=True, horizon_bars=1, window=20, min_calls=20, reference=0.55, max_multiplier=3.0)
    for right, multiplier in ((11, 1.0), (10, 0.0), (12, 3.0)):  # 55 %: its weight; 50 %: none; 60 %: 4, capped
        t = DecayTracker(cfg)
        feed_calls(t, "u" * right + "d" * (20 - right))
        assert t.accuracy(PIO) == pytest.approx(right / 20)
        assert t.multipliers[PIO] == pytest.approx(multiplier)


def test_a_flat_close_scores_nothing_and_a_weak_value_makes_no_call():
    t = DecayTracker(DecayConfig(enabled=True, horizon_bars=1, window=10, min_calls=2, min_call=0.1))
    t.step(100.0, (None, None, None, 0.5, None))
    t.step(100.0, (None, None, None, 0.05, None))  # flat: the first call is dropped; 0.05 makes none
    t.step(101.0, (None, None, None, 0.5, None))
    assert t.calls(PIO) == 0


def zigzag_then_trend(n_zig: int, n_trend: int) -> list[ev.Bar]:
    """EGM (a momentum factor) is wrong on a zigzag (every close above the mean is followed by a drop)
    and right on a steady trend."""
    bars, close = [], 100.0
    for i in range(n_zig + n_trend):
        close = 100.0 + (1.0 if i % 2 else -1.0) if i < n_zig else close + 0.5
        bars.append(f.bar(i, symbol="BTCUSDT", close=close, open=close))
    return bars


def run(node: Node, events: list[ev.Event], start: int = 1) -> list[ev.Event]:
    return [o for i, e in enumerate(events) for o, _ in node.feed(e, Pos(start + i, start + i))]


DECAY = {"enabled": True, "horizon_bars": 1, "window": 40, "min_calls": 20}


def test_the_engine_publishes_weights_adapted_before_the_snapshot_and_drops_a_retired_factor():
    bars = zigzag_then_trend(80, 80)
    out = run(Node(SignalEngine(SignalConfig(stop_timeframe="1", decay=DecayConfig(**DECAY)))), bars)
    adapted = [(i, e) for i, e in enumerate(out) if isinstance(e, ev.WeightsAdapted)]
    retired = next(e for _, e in adapted if e.retired == ["egm"])
    assert retired.reason.startswith("retired egm (accuracy 0.") and retired.weights["egm"] == 0.0
    assert retired.event_id == derive_id("WeightsAdapted", retired.bar_id)
    i = next(i for i, e in adapted if e is retired)
    snap = out[i + 1]
    assert isinstance(snap, ev.FactorSnapshot) and snap.bar_id == retired.bar_id and "egm" not in snap.used
    assert any(e.reason.startswith("restored egm") for _, e in adapted)
    assert ev.decode(ev.encode(retired)) == retired
    # off by default: the configured weights, no WeightsAdapted
    plain = run(Node(SignalEngine(SignalConfig(stop_timeframe="1"))), bars)
    assert not any(isinstance(e, ev.WeightsAdapted) for e in plain)


def test_the_tracker_survives_a_snapshot_round_trip():
    bars = zigzag_then_trend(80, 80)
    cfg = SignalConfig(stop_timeframe="1", decay=DecayConfig(**DECAY))
    whole = run(Node(SignalEngine(cfg)), bars)
    node = Node(SignalEngine(cfg))
    head = run(node, bars[:70])
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(node.get_state()), type=NodeState)
    again = Node(SignalEngine(cfg))
    again.set_state(state)
    assert head + run(again, bars[70:], 71) == whole


def test_decay_settings_need_a_restart():
    from nertz_common import live_config

    with pytest.raises(live_config.ConfigRejected, match="restart"):
        live_config.updated(SignalConfig(), {"decay.enabled": True})
