"""The decay tracker's WeightsAdapted projected (migration 0007) and served in /metrics/{symbol}."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from nertz_api.web import ApiContext, create_app
from nertz_common import events as ev
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.decay import DecayConfig
from nertz_signal.core.engine import SignalEngine

pytestmark = pytest.mark.integration


def zigzag_then_trend() -> list[ev.Bar]:
    bars, close = [], 100.0
    for i in range(160):
        close = 100.0 + (1.0 if i % 2 else -1.0) if i < 80 else close + 0.5
        bars.append(f.bar(i, symbol="BTCUSDT", close=close, open=close))
    return bars


async def test_weights_adapted_are_projected_and_the_latest_is_served(pool, publisher, project):
    cfg = SignalConfig(stop_timeframe="1", decay=DecayConfig(enabled=True, horizon_bars=1, window=40, min_calls=20))
    node = Node(SignalEngine(cfg))
    bars = zigzag_then_trend()
    out = [o for i, b in enumerate(bars) for o, _ in node.feed(b, Pos(i + 1, i + 1))]
    adapted = [e for e in out if isinstance(e, ev.WeightsAdapted)]
    assert len(adapted) >= 2
    await publisher.publish_many([*bars, *out])
    p = await project()
    assert p.stats.rejected == 0
    rows = await pool.fetch("SELECT * FROM factor_weights ORDER BY stream_seq")
    assert [r["event_id"] for r in rows] == [e.event_id for e in adapted]
    app = create_app(ApiContext(pool, ("BTCUSDT",), CollectorRegistry()))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        body = (await c.get("/metrics/BTCUSDT")).json()
    (latest,) = body["weights"]
    last = adapted[-1]
    assert latest["interval"] == "1" and latest["bar_id"] == last.bar_id
    assert (latest["weights"], latest["retired"], latest["reason"]) == (last.weights, last.retired, last.reason)
