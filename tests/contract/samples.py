"""One sample of every event type; ``python tests/contract/samples.py`` (re)writes the golden files.

Golden payloads are written once when a type is added and then never edited: the contract test
checks that today's code still decodes every payload ever written (msgspec schema evolution).
"""

from __future__ import annotations

import sys
from pathlib import Path

from nertz_common import events as ev
from nertz_common.testing import factories as f

GOLDEN = Path(__file__).parent / "golden"


def samples() -> dict[str, ev.Event]:
    bar = f.bar(0)
    intent = f.intent(bar)
    verdict = f.verdict(intent)
    c = dict(symbol="BTCUSDT", correlation_id=intent.correlation_id, causation_id=verdict.event_id)
    t = dict(ts_event=bar.ts_event, ts_init=bar.ts_event)
    u = dict(status="Trading", contract_type="LinearPerpetual", quote_coin="USDT")
    out: list[ev.Event] = [
        bar,
        f.book(),
        ev.TradeBatch(event_id="tb1", **t, symbol="BTCUSDT",
                      trades=[ev.Trade(ts_event=bar.ts_event, price=100.0, qty=0.5, side="Buy", trade_id="t1")]),
        ev.Ticker(event_id="tk1", **t, symbol="BTCUSDT", last_price=100.0, mark_price=100.1, funding_rate=0.0001,
                  funding_interval_h=8, open_interest=1000.0, turnover_24h=1e9),
        ev.InstrumentSpec(event_id="is1", **t, symbol="BTCUSDT", tick_size=0.1, qty_step=0.001, min_order_qty=0.001),
        ev.FeedGap(event_id="fg1", **t, symbol="BTCUSDT", reason="u gap: expected 11, was 13",
                   topic="orderbook.200.BTCUSDT"),
        ev.FeedResynced(event_id="fr1", **t, symbol="BTCUSDT", topic="orderbook.200.BTCUSDT", update_id=20),
        ev.FeedStale(event_id="fs1", **t, symbol="BTCUSDT", topic="orderbook.200.BTCUSDT", stale_s=12.5),
        ev.FactorSnapshot(event_id="fsn1", **t, symbol="BTCUSDT", bar_id=bar.event_id, interval="1", close=100.0,
                          egm=0.5, pio=-0.25, combined=2.5, used=["egm", "pio"], trend="up", atr=0.3,
                          intent_id=intent.event_id),
        intent,
        verdict,
        ev.ShadowVerdictIssued(event_id="sv1", **t, **c, shadow="max", decision="reject", confidence=0.6,
                               size_multiplier=0.0, policy="qwen", reasons=["weak trend"], model="qwen-max",
                               prompt_id="verdict.v1", prompt_hash="ab" * 32,
                               calls=[ev.ModelCall(model="qwen-max", prompt_id="verdict.v1", prompt_sha256="ab" * 32,
                                                   outcome="ok", raw_text='{"decision":"reject"}', finish_reason="stop",
                                                   status_code=200, request_id="r1", latency_ms=812.5, attempts=1,
                                                   tokens_in=900, tokens_out=40, cost_usd=0.0017, key_index=0)]),
        ev.RiskOverrideIssued(event_id="ro1", **t, **c, trigger="5 losses in a row (limit 5)", policy="rules",
                              overrides=[ev.RiskOverride(override_id="o1", kind="disable_symbol", symbol="BTCUSDT",
                                                         until_ns=bar.ts_event + 6 * 3_600_000_000_000,
                                                         reason="rules breaker: 5 losses in a row")],
                              refused=["disable_everything: not in the palette"]),
        ev.VerdictAwaited(event_id="va1", **t, **c, lock_state="FLAT"),
        ev.SignalSuppressed(event_id="ss1", **t, **c, reason="locked", lock_state="LOCKED", decision="approve"),
        ev.RiskDenied(event_id="rd1", **t, **c, rule="max_positions", reason="3 open positions, max 3"),
        ev.OrderSubmitted(event_id="os1", **t, **c, order_id="o1", side="Buy", qty=1.0, price_ref=100.0,
                          take_profit=103.0, stop_loss=99.0),
        ev.OrderRejected(event_id="or1", **t, **c, order_id="o1", reason="insufficient margin"),
        ev.PositionOpened(event_id="po1", **t, **c, position_id="p1", side="long", qty=1.0, entry_price=100.0,
                          take_profit=103.0, stop_loss=99.0, fee_usdt=0.055),
        ev.LockEngaged(event_id="le1", **t, **c, reason="position open"),
        ev.PositionClosed(event_id="pc1", **t, **c, position_id="p1", side="long", qty=1.0, entry_price=100.0,
                          exit_price=103.0, exit_reason="take_profit", realized_pnl_usdt=2.89, fee_usdt=0.11,
                          return_fraction=0.0289, holding_ns=3_600_000_000_000),
        ev.EntryExpired(event_id="ee1", **t, **c, order_id="o1", reason="not filled in 300 s"),
        ev.LockReleased(event_id="lr1", **t, **c, reason="cooldown elapsed"),
        ev.OrderFilled(event_id="of1", **t, **c, order_id="o1", fill_id="f1", side="Buy", qty=1.0, price=100.0,
                       fee_usdt=0.055),
        ev.VenueMismatch(event_id="vm1", **t, **c, action="halted",
                         reason="the venue holds long 0.3 where the lock holds long 0.5"),
        ev.OrderAccepted(event_id="oa1", **t, **c, order_id="o1", venue_order_id="1321003749386327552"),
        ev.OrderRefused(event_id="orf1", **t, **c, order_id="o1", ret_code=110007,
                        ret_msg="ab not enough for new order"),
        ev.OrderCanceled(event_id="oc1", **t, **c, order_id="o1", venue_order_id="v1",
                         reason="PartiallyFilledCanceled (CancelByUser)", filled_qty=0.2),
        ev.PositionSnapshot(event_id="ps1", **t, symbol="BTCUSDT", source="reconcile", side="long", qty=0.5,
                            entry_price=100.0, mark_price=100.5, take_profit=103.0, stop_loss=99.0, leverage=5.0,
                            unrealized_pnl_usdt=0.25),
        ev.WalletSnapshot(event_id="ws1", **t, equity_usdt=10_012.5, wallet_balance_usdt=10_000.0,
                          available_usdt=9_500.0, unrealized_pnl_usdt=12.5),
        ev.FundingSettled(event_id="fu1", **t, **c, fill_id="e-fund-1", fee_usdt=0.01, rate=0.0001,
                          position_value_usdt=100.0),
        ev.TradingStarted(event_id="ts1", **t),
        ev.TradingStopped(event_id="tp1", **t, reason="operator"),
        ev.DeadLettered(event_id="dl1", **t, service="signal", reason="undecodable: bad JSON", raw="{"),
        ev.PositionReduced(event_id="pr1", **t, **c, position_id="p1", side="long", qty_closed=0.5, qty_left=0.5,
                           entry_price=100.0, exit_price=101.5, realized_pnl_usdt=0.71725, fee_usdt=0.03275,
                           exit_reason="take_profit", order_id="o-tp1"),
        ev.StopMoved(event_id="sm1", **t, **c, position_id="p1", stop_loss=100.2, take_profit=102.5,
                     trailing_distance=2.0, active_price=101.5, phase="trail",
                     reason="TP1 filled: trail 2.00% behind the best price", venue_name="bybit"),
        ev.WeightsAdapted(event_id="wa1", **t, symbol="BTCUSDT", bar_id="b1", interval="1",
                          weights={"egm": 0.2, "ild": 0.3, "rol": 0.3, "pio": 0.0, "ogm": 0.1},
                          multipliers={"egm": 1.0, "ild": 1.0, "rol": 1.0, "pio": 0.0, "ogm": 1.0},
                          accuracy={"egm": 0.56, "ild": None, "rol": None, "pio": 0.4, "ogm": None},
                          calls={"egm": 200, "ild": 0, "rol": 0, "pio": 200, "ogm": 0}, retired=["pio"],
                          reason="retired pio (accuracy 0.40 over 200 calls)"),
        ev.ConfigChanged(event_id="cc1", **t, changes={"signal.entry_threshold": 9.0, "signal.weights.ild": 0.35},
                         reason="calmer market"),
        ev.ManualTradeRequested(event_id="mt1", **t, scope="BTCUSDT", side="Buy", reason="operator"),
        ev.NotificationPosted(event_id="np1", **t, scope="telegram", source_event_id="pc1", kind="exit",
                              chat_id="-100123", message_id=42, reply_to_message_id=41, correlation_id="i1"),
        ev.UniverseChanged(event_id="uc1", **t, symbols=["BTCUSDT", "ETHUSDT"], added=["ETHUSDT"],
                           removed=["SOLUSDT"], min_turnover_usdt=1e7, max_spread=0.002, max_symbols=2,
                           candidates=[
                               ev.UniverseCandidate(symbol="BTCUSDT", turnover_24h=4.9e9, bid1_price=100.0,
                                                    ask1_price=100.1, spread=0.0009995, **u, rank=1, selected=True,
                                                    pinned=True, reason="pinned; rank 1: turnover 4.9B >= 10M, "
                                                    "spread 0.1 % <= 0.2 %"),
                               ev.UniverseCandidate(symbol="ETHUSDT", turnover_24h=5e7, bid1_price=20.0,
                                                    ask1_price=20.01, spread=0.0004999, **u, rank=2, selected=True,
                                                    reason="rank 2: turnover 50M >= 10M, spread 0.05 % <= 0.2 %"),
                               ev.UniverseCandidate(symbol="SOLUSDT", turnover_24h=4.1e6, bid1_price=10.0,
                                                    ask1_price=10.01, spread=0.0009995, **u,
                                                    reason="turnover 4.1M < 10M"),
                           ]),
        ev.NewsAssessed(event_id="na1", **t, symbol="BTCUSDT", trigger="schedule",
                        slot_ns=bar.ts_event - bar.ts_event % (6 * 3_600_000_000_000), window_days=7, impact=-1.5,
                        key_events=[ev.NewsItem(date="2025-05-30", ts_ns=bar.ts_event, title="Exchange hack drains "
                                                "hot wallets", impact=-2.0, critical=True),
                                    ev.NewsItem(date="2025-05-28T14:00Z", ts_ns=bar.ts_event - 2 * 86_400_000_000_000,
                                                title="ETF inflows slow", impact=-0.5)],
                        summary="A large exchange was hacked; inflows slowed.",
                        call=ev.ModelCall(role="news", model="qwen3-max", prompt_id="news.v1",
                                          prompt_sha256="cd" * 32, outcome="ok", raw_text='{"impact": -1.5}',
                                          finish_reason="stop", status_code=200, request_id="r2", latency_ms=9120.0,
                                          attempts=1, tokens_in=2400, tokens_out=180, cost_usd=0.0039,
                                          key_index=0)),
        ev.NewsRequested(event_id="nr1", **t, scope="BTCUSDT", reason="before the FOMC"),
    ]  # fmt: skip
    return {type(e).__name__: e for e in out}


if __name__ == "__main__":
    only_missing = "--all" not in sys.argv
    for name, event in samples().items():
        path = GOLDEN / f"{name}.json"
        if only_missing and path.exists():
            continue
        path.write_bytes(ev.encode(event) + b"\n")
        print("wrote", path)
