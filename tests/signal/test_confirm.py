"""Multi-timeframe confirmation: the series' bars aggregated into 1 h, 4 h and 1 d trends; a candidate
against the daily is vetoed, one without enough weight of the known timeframes is unconfirmed, and the
state survives a snapshot at every bar."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nertz_common import events as ev
from nertz_common import live_config
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, NodeState, Pos
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.confirm import Confirmation, ConfirmConfig, TimeframeTrend
from nertz_signal.core.engine import SignalEngine

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
MINUTE_NS = 60_000_000_000
T0 = 1_748_563_200_000_000_000  # 2025-05-30 00:00 UTC: a day's open


def ema(xs: list[float], period: int) -> float:
    """The reference EMA, seeded with the first value, alpha = 2 / (period + 1)."""
    a, v = 2.0 / (period + 1.0), xs[0]
    for x in xs[1:]:
        v += a * (x - v)
    return v


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=30, max_size=400),
    gaps=st.sets(st.integers(1, 399), max_size=6),
    start=st.integers(0, 23),
)
def test_a_timeframe_trend_is_the_emas_of_its_finished_bars_closes(steps: list[float], gaps: set[int], start: int):
    """1 m bars (with gaps, starting mid-hour) give the EMAs of each finished hour's last close."""
    t = TimeframeTrend(HOUR_NS // 4, fast=3, slow=5)  # 15-minute bars
    close, minute, finished, bucket, last = 100.0, start, [], None, 0.0
    for i, s in enumerate(steps):
        minute += 7 if i in gaps else 1
        open_ns = T0 + minute * MINUTE_NS
        close += s
        t.update(open_ns, open_ns + MINUTE_NS, close)
        b = minute // 15
        if bucket is not None and b != bucket:
            finished.append(last)  # a gap ended it
        bucket, last = b, close
        if (minute + 1) % 15 == 0:
            finished.append(close)
            bucket = None
    assert t.count == len(finished)
    if len(finished) >= 5:
        f, s_ = ema(finished, 3), ema(finished, 5)
        assert t.fast.value == pytest.approx(f) and t.slow.value == pytest.approx(s_)
        want = "up" if f > s_ else "down" if f < s_ else "flat"
        assert t.direction == want or f == pytest.approx(s_)
    else:
        assert t.direction == "unknown"


def hour_bars(closes: list[float], symbol: str = "ETHUSDT") -> list[ev.Bar]:
    """Closed 1 h bars from ``T0`` with these closes (open = previous close)."""
    out, prev = [], closes[0]
    for i, c in enumerate(closes):
        open_ns = T0 + i * HOUR_NS
        bar = ev.Bar(
            event_id=derive_id("Bar", symbol, "60", open_ns, True), ts_event=open_ns + HOUR_NS,
            ts_init=open_ns + HOUR_NS, symbol=symbol, interval="60", open_time_ns=open_ns, open=prev,
            high=max(prev, c) * 1.001, low=min(prev, c) * 0.999, close=c, volume=10.0 + (i % 5),
        )  # fmt: skip
        out.append(bar)
        prev = c
    return out


def fall_then_rise(days_down: int, hours_up: int) -> list[float]:
    """A slow fall of ``days_down`` days (each day lower), then a rise of ``hours_up`` hours."""
    closes, c = [], 3000.0
    for h in range(days_down * 24):
        c *= 0.9985 if h % 6 else 1.002
        closes.append(c)
    for _ in range(hours_up):
        c *= 1.004
        closes.append(c)
    return closes


def signal_cfg(**confirm: Any) -> SignalConfig:
    return SignalConfig(
        entry_threshold=2.0, stop_timeframe="60", stop_atr_min_bars=3, timeframe="60",
        confirm=ConfirmConfig(**confirm) if confirm else ConfirmConfig(),
    )  # fmt: skip


def run(node: Node, events: list[ev.Event], start: int = 1) -> list[ev.Event]:
    return [o for i, e in enumerate(events) for o, _ in node.feed(e, Pos(start + i, start + i))]


def candidates(out: list[ev.Event]) -> list[ev.FactorSnapshot]:
    """Snapshots of long candidates: an intent, or a veto (the rise makes only longs)."""
    return [e for e in out if isinstance(e, ev.FactorSnapshot) and (e.intent_id or e.veto)]


def test_a_long_against_the_daily_downtrend_is_vetoed_and_proposed_without_confirmation():
    bars = hour_bars(fall_then_rise(days_down=26, hours_up=30))
    plain = run(Node(SignalEngine(signal_cfg())), bars)
    longs = [e.causation_id for e in plain if isinstance(e, ev.IntentProposed) and e.side == "long"]
    assert longs  # the rise proposes longs without confirmation
    out = run(Node(SignalEngine(signal_cfg(enabled=True))), bars)
    assert not any(isinstance(e, ev.IntentProposed) and e.side == "long" for e in out)
    vetoed = {s.bar_id: s.veto for s in candidates(out)}
    for bar_id in longs:  # every one of them is vetoed by the daily
        veto = vetoed[bar_id]
        assert veto is not None and veto.startswith("mtf_veto: the D trend is down against a long"), veto
    # without the daily's veto, 1 h up (0.3) against 4 h down (0.5) is 38 % of the known weight
    out = run(Node(SignalEngine(signal_cfg(enabled=True, veto_timeframe=None))), bars)
    vetoed = {s.bar_id: s.veto for s in candidates(out)}
    assert any((vetoed[b] or "").startswith("mtf_unconfirmed: expected >= 50%") for b in longs), vetoed
    # 1 h alone agrees: confirmed, and the intent says so
    out = run(Node(SignalEngine(signal_cfg(enabled=True, weights={"60": 1.0}, veto_timeframe=None))), bars)
    confirmed = [e for e in out if isinstance(e, ev.IntentProposed) and e.side == "long"]
    assert [i.causation_id for i in confirmed] == longs
    assert all("timeframes 60 up 1: 100% of the known weight with the long" in i.reasons for i in confirmed)


def test_a_candidate_before_any_confirmation_timeframe_is_warm_is_unavailable():
    bars = hour_bars(fall_then_rise(days_down=0, hours_up=80))
    plain = [e for e in run(Node(SignalEngine(signal_cfg())), bars) if isinstance(e, ev.IntentProposed)]
    assert plain  # 80 h of rise: 4 h bars are not warm until 84 h
    out = run(Node(SignalEngine(signal_cfg(enabled=True, weights={"240": 1.0}, veto_timeframe=None))), bars)
    vetoes = [s.veto for s in candidates(out)]
    assert vetoes and all(v and v.startswith("mtf_unavailable: expected 21 finished bars") for v in vetoes)


def test_the_confirmation_survives_a_snapshot_at_every_bar():
    bars = hour_bars(fall_then_rise(days_down=24, hours_up=30))
    cfg = signal_cfg(enabled=True, veto_timeframe=None)
    whole = run(Node(SignalEngine(cfg)), bars)
    assert any(isinstance(e, ev.FactorSnapshot) and e.veto and e.veto.startswith("mtf_") for e in whole)
    node = Node(SignalEngine(cfg))
    head: list[ev.Event] = []
    for k, bar in enumerate(bars, 1):
        head += run(node, [bar], k)
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(node.get_state()), type=NodeState)
        node = Node(SignalEngine(cfg))
        node.set_state(state)
    assert head == whole


def test_confirmation_settings_are_checked_and_need_a_restart():
    with pytest.raises(ValidationError) as err:
        ConfirmConfig(weights={"7": 0.5, "60": 0}, veto_timeframe="D", ema_fast=21, ema_slow=21)
    text = str(err.value)
    for part in ("Bybit intervals", "weight of '60' > 0", "veto_timeframe among", "ema_fast < ema_slow"):
        assert part in text
    assert ConfirmConfig(weights={60: 1.0}, veto_timeframe=60).veto_timeframe == "60"  # ints as env JSON gives them
    with pytest.raises(live_config.ConfigRejected, match="restart"):
        live_config.updated(SignalConfig(), {"confirm.enabled": True})


def test_confirmation_directions_and_agreement_weigh_only_the_known_timeframes():
    c = Confirmation(ConfirmConfig())
    closes = np.linspace(100.0, 130.0, 30 * 24)  # 30 days of a steady rise, hourly
    for i, x in enumerate(closes):
        open_ns = T0 + i * HOUR_NS
        c.update(open_ns, open_ns + HOUR_NS, float(x))
    assert c.directions() == {"60": "up", "240": "up", "D": "up"}
    assert c.agreement("long") == 1.0 and c.agreement("short") == 0.0 and c.veto("long") is None
    assert c.veto("short") == "mtf_veto: the D trend is up against a short (ema9 > ema21 of D bars)"
    early = Confirmation(ConfirmConfig())
    for i, x in enumerate(closes[:100]):  # 100 h: 1 h and 4 h known, the daily not yet
        open_ns = T0 + i * HOUR_NS
        early.update(open_ns, open_ns + HOUR_NS, float(x))
    assert early.directions()["D"] == "unknown" and early.agreement("long") == 1.0
