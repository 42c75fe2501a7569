"""The coin hunter: the universe chosen from Bybit's tickers, and the live feed following it.

Pure tests of the choice (filters, rank, cap, pinned symbols, reasons, what is recorded) and of its
determinism (a recorded change decides the same again); then the live feed with the real pybit
against the fake Bybit and a real JetStream: the fake's tickers make a new symbol qualify and an old
one fail, and the log shows each ``UniverseChanged`` before the added symbol's first market data and
after the removed one's last, on the same connection.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_common.testing.fake_bybit import FakeBybit, KlineStore, book_frame, kline_frame, load_instruments
from nertz_common.testing.fake_dashscope import Answer, FakeDashScope, Fault
from nertz_ingest.adapters.bybit_rest import BybitRest, RestError
from nertz_ingest.adapters.log_position import last_universe
from nertz_ingest.adapters.qwen import QwenSuggester
from nertz_ingest.core import universe as u
from nertz_ingest.live import live_topics
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.settings import IngestSettings, UniverseConfig
from nertz_ingest.universe import UniverseHunter

# the live feed's test kit (importlib mode: test modules share nothing, so it is loaded from its file)
_spec = importlib.util.spec_from_file_location("ingest_live_kit", Path(__file__).with_name("test_live.py"))
assert _spec and _spec.loader
kit = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

DATA = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m"
INSTRUMENTS = Path(__file__).parent / "data" / "bybit_instruments_linear.json"
T0 = 1_760_000_000_000_000_000


def _instrument(symbol: str, *, quote: str = "USDT", contract: str = "LinearPerpetual") -> dict[str, str]:
    return {"symbol": symbol, "status": "Trading", "contractType": contract, "quoteCoin": quote}


def _ticker(symbol: str, turnover: float | str, bid: str = "100.0", ask: str = "100.01") -> dict[str, Any]:
    return {"symbol": symbol, "turnover24h": str(turnover), "bid1Price": bid, "ask1Price": ask}


MARKET = [
    _ticker("BTCUSDT", "4936790807.65", "66666.6", "66666.7"),
    _ticker("ETHUSDT", 4_100_000),  # turnover too low
    _ticker("SOLUSDT", 90_000_000, "100", "100.5"),  # spread too wide
    _ticker("XRPUSDT", 50_000_000, "0.5", "0.5001"),
    _ticker("DOGEUSDT", 20_000_000, "0.1", "0.10001"),
    _ticker("ADAUSDT", 15_000_000, "0.3", "0.30003"),
    _ticker("BTCPERP", 900_000_000),  # a USDC perpetual
    _ticker("NEWUSDT", 800_000_000),  # not trading (absent from instruments-info)
    _ticker("BTC-26DEC25", 700_000_000),  # a dated future: not even a candidate
]
INSTRUMENTS_INFO = [
    *(_instrument(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")),
    _instrument("BTCPERP", quote="USDC"),
    _instrument("BTC-26DEC25", contract="LinearFutures"),
]


def _reasons(choice: u.Choice) -> dict[str, tuple[int | None, bool, str]]:
    return {c.symbol: (c.rank, c.selected, c.reason) for c in choice.candidates}


# --- the choice (pure) --------------------------------------------------------------------------------


def test_choose_filters_ranks_and_caps_with_a_reason_for_each_candidate() -> None:
    choice = u.choose(u.quotes(MARKET, INSTRUMENTS_INFO), [], u.Rules(max_symbols=3))
    assert choice.symbols == ["BTCUSDT", "XRPUSDT", "DOGEUSDT"]
    assert _reasons(choice) == {
        "BTCUSDT": (1, True, "rank 1: turnover 4.9B >= 10M, spread 0.00015 % <= 0.2 %"),
        "XRPUSDT": (2, True, "rank 2: turnover 50M >= 10M, spread 0.02 % <= 0.2 %"),
        "DOGEUSDT": (3, True, "rank 3: turnover 20M >= 10M, spread 0.01 % <= 0.2 %"),
        "ADAUSDT": (4, False, "rank 4 > max 3"),
        "BTCPERP": (None, False, "quote USDC, not USDT"),
        "ETHUSDT": (None, False, "turnover 4.1M < 10M"),
        "NEWUSDT": (None, False, "not a trading instrument on Bybit (absent from instruments-info or the tickers)"),
        "SOLUSDT": (None, False, "spread 0.499 % > 0.2 %"),
    }
    assert [c.symbol for c in choice.candidates][:4] == ["BTCUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]
    btc = choice.candidates[0]
    assert btc.turnover_24h == 4936790807.65 and btc.bid1_price == 66666.6 and btc.ask1_price == 66666.7
    assert btc.spread == pytest.approx(0.1 / 66666.65) and btc.status == "Trading" and btc.source == "tickers"


def test_choose_pinned_symbols_stay_whatever_their_figures_and_count_in_the_cap() -> None:
    rules = u.Rules(max_symbols=3, pinned=("ETHUSDT", "LUNAUSDT"))
    choice = u.choose(u.quotes(MARKET, INSTRUMENTS_INFO), ["BTCUSDT"], rules)
    assert choice.symbols == ["BTCUSDT", "XRPUSDT", "ETHUSDT"]  # by turnover; the unlisted pin is out
    reasons = _reasons(choice)
    assert reasons["ETHUSDT"] == (None, True, "pinned; turnover 4.1M < 10M (waived)")
    assert reasons["LUNAUSDT"][1:] == (
        False,
        "pinned, but not a trading instrument on Bybit (absent from instruments-info or the tickers)",
    )
    assert reasons["DOGEUSDT"] == (3, False, "rank 3 > 2 (max 3, 1 pinned)")
    assert next(c for c in choice.candidates if c.symbol == "ETHUSDT").pinned


def test_change_is_published_only_when_the_set_changes_and_never_to_an_empty_universe() -> None:
    rules = u.Rules(max_symbols=2)
    quotes = u.quotes(MARKET, INSTRUMENTS_INFO)
    assert u.change(u.choose(quotes, ["XRPUSDT", "BTCUSDT"], rules), ["XRPUSDT", "BTCUSDT"], rules, T0) is None
    dead = [_ticker("BTCUSDT", 0), _ticker("XRPUSDT", "NaN")]
    nothing = u.choose(u.quotes(dead, INSTRUMENTS_INFO), ["BTCUSDT"], rules)
    assert nothing.symbols == [] and u.change(nothing, ["BTCUSDT"], rules, T0) is None
    assert _reasons(nothing)["XRPUSDT"][2] == "no 24h turnover"


def test_change_records_the_rules_and_the_candidates_that_can_matter() -> None:
    rules = u.Rules(max_symbols=2)
    previous = ["SOLUSDT", "BTCUSDT", "LUNAUSDT"]
    event = u.change(u.choose(u.quotes(MARKET, INSTRUMENTS_INFO), previous, rules), previous, rules, T0)
    assert event is not None
    assert (event.symbols, event.added, event.removed) == (["BTCUSDT", "XRPUSDT"], ["XRPUSDT"], ["LUNAUSDT", "SOLUSDT"])
    assert [c.symbol for c in event.candidates] == ["BTCUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LUNAUSDT", "SOLUSDT"]
    assert (event.min_turnover_usdt, event.max_spread, event.max_symbols) == (10_000_000.0, 0.002, 2)
    assert event.ts_event == event.ts_init == T0 and event.scope == "all" and event.source == "tickers"
    assert ev.decode(ev.encode(event)) == event
    assert sorted(u.previous_of(event)) == sorted(previous)
    assert u.decide_again(event, previous) == event
    assert u.change(u.choose(u.quotes(MARKET, INSTRUMENTS_INFO), previous, rules), previous, rules, T0) == event


def test_quotes_figures_that_are_missing_bad_or_crossed_become_none() -> None:
    rows = [
        {"symbol": "AUSDT", "turnover24h": "", "bid1Price": "-1", "ask1Price": "2"},
        {"symbol": "BUSDT", "turnover24h": "inf", "bid1Price": "2", "ask1Price": "1"},  # crossed
        {"symbol": "CUSDT", "turnover24h": "-5", "bid1Price": "x", "ask1Price": None},
        {"symbol": "AUSDT", "turnover24h": "1e9"},  # a repeat: the first row wins
    ]
    got = {q.symbol: (q.turnover_24h, q.bid1_price, q.ask1_price, q.spread) for q in u.quotes(rows, [])}
    assert got == {"AUSDT": (None, None, 2.0, None), "BUSDT": (None, 2.0, 1.0, None), "CUSDT": (None,) * 4}


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"max_symbols": 0}, "max_symbols >= 1"), ({"max_spread": -0.1}, "max_spread"),
     ({"min_turnover_usdt": math.nan}, "min_turnover_usdt")],
)  # fmt: skip
def test_rules_refuse_bad_values(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        u.Rules(**kw)


_SYMBOLS = st.sampled_from([f"S{i}USDT" for i in range(12)])
_ROW = st.fixed_dictionaries(
    {
        "symbol": _SYMBOLS,
        "turnover24h": st.one_of(st.floats(0, 1e9), st.just("")),
        "bid1Price": st.floats(0.9, 1.0).map(str),
        "ask1Price": st.floats(1.0, 1.01).map(str),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(_ROW, max_size=12),
    previous=st.lists(_SYMBOLS, max_size=4, unique=True),
    pinned=st.lists(_SYMBOLS, max_size=2, unique=True),
    cap=st.integers(1, 5),
)
def test_decide_again_reproduces_every_change_from_its_own_record(
    rows: list[dict[str, Any]], previous: list[str], pinned: list[str], cap: int
) -> None:
    rules = u.Rules(min_turnover_usdt=1e8, max_spread=0.05, max_symbols=cap, pinned=tuple(pinned))
    listed = [_instrument(f"S{i}USDT") for i in range(0, 12, 2)] + [_instrument("S1USDT", quote="USDC")]
    choice = u.choose(u.quotes(rows, listed), previous, rules)
    event = u.change(choice, previous, rules, T0)
    if event is None:
        assert not choice.symbols or set(choice.symbols) == set(previous)
        return
    assert len(event.symbols) <= max(cap, len(pinned)) and set(event.added).isdisjoint(previous)
    assert u.decide_again(event, previous) == event


# --- the hunter against the fake Bybit ------------------------------------------------------------


@pytest.fixture
async def market() -> AsyncIterator[FakeBybit]:
    """A fake Bybit with BTCUSDT and ETHUSDT klines; BTCUSDT qualifies, ETHUSDT's turnover is too low
    and SOLUSDT's spread too wide."""
    store = KlineStore()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        store.add_csv(DATA / f"{symbol}_1m.csv.xz", limit=200)
    async with FakeBybit(instruments=load_instruments(INSTRUMENTS), klines=store) as fake:
        fake.public.set_ticker("BTCUSDT", turnover24h=4.9e9, bid1Price="100.0", ask1Price="100.1")
        fake.public.set_ticker("ETHUSDT", turnover24h=4.1e6, bid1Price="20.0", ask1Price="20.01")
        fake.public.set_ticker("SOLUSDT", turnover24h=9e7, bid1Price="10.0", ask1Price="10.1")
        yield fake


def _changes(events: list[ev.Event]) -> list[ev.UniverseChanged]:
    return [e for e in events if isinstance(e, ev.UniverseChanged)]


def _of(events: list[ev.Event], symbol: str) -> list[int]:
    return [i for i, e in enumerate(events) if getattr(e, "symbol", None) == symbol]


def _book(live: Any, symbol: str, update_id: int) -> bool:
    return any(
        isinstance(e, ev.BookSnapshot) and e.symbol == symbol and e.update_id == update_id for e in live.pub.events
    )


async def test_universe_change_adds_a_symbol_live_and_removes_one_on_the_same_connection(
    market: FakeBybit, js_fresh: Any
) -> None:
    fake = market
    eth_book = "orderbook.50.ETHUSDT"
    btc_topics, eth_topics = (live_topics([s], 50, ["1"]) for s in ("BTCUSDT", "ETHUSDT"))
    universe = UniverseConfig(enabled=True, refresh_s=0.3, max_symbols=2)
    async with kit.live_feed(fake, js_fresh, ("BTCUSDT", "SOLUSDT"), universe=universe, backfill_bars=3) as live:
        await fake.public.wait_subscribed(btc_topics, timeout_s=30)
        fake.public.set_book(kit.BOOK, kit.BIDS, kit.ASKS, u=1000)
        await live.wait_for(lambda es: _book(live, "BTCUSDT", 1000))

        fake.public.set_ticker("ETHUSDT", turnover24h=5.2e7)  # ETHUSDT qualifies now
        await fake.public.wait_subscribed(eth_topics, timeout_s=30)
        fake.public.set_book(eth_book, [("20.0", "5")], [("20.01", "4")], u=500)
        start = int(fake.klines.series("ETHUSDT", "1")[0][-1]) + 60_000
        row = [str(start), "20.0", "20.02", "19.99", "20.01", "10", "200.1"]
        fake.public.publish(kline_frame("ETHUSDT", "1", row, confirm=False, ts=fake.public.next_ts()))
        fake.public.book_delta(kit.BOOK, bids=[("100.0", "1.5")])  # u=1001: BTCUSDT goes on undisturbed
        await live.wait_for(
            lambda es: (
                _book(live, "ETHUSDT", 500)
                and _book(live, "BTCUSDT", 1001)
                and any(isinstance(e, ev.Bar) and e.symbol == "ETHUSDT" and not e.warmup for e in es)
            )
        )

        fake.public.set_ticker("BTCUSDT", turnover24h=3e6)  # BTCUSDT fails now
        await live.wait_for(lambda es: len(_changes(es)) == 3)
        for topic in btc_topics:
            await fake.public.wait_requests("unsubscribe", topic, 1)
        late = book_frame(kit.BOOK, "delta", [("99.9", "9")], [], u=1002, seq=1002, ts=fake.public.next_ts())
        fake.public.send_raw(late)  # a frame still under way on the socket: dropped
        fake.public.book_delta(eth_book, bids=[("19.99", "2")])  # u=501
        await live.wait_for(lambda es: _book(live, "ETHUSDT", 501))
        assert live.feed.symbols == ["ETHUSDT"]

    log = [r.event for r in await read_log(js_fresh, filters=["md.>", "sys.>"])]
    assert [e for e in live.pub.events if not isinstance(e, ev.DeadLettered)] == log
    first, added, removed = _changes(log)
    assert log[0] == first and (first.symbols, first.added, first.removed) == (["BTCUSDT"], [], ["SOLUSDT"])
    assert next(c.reason for c in first.candidates if c.symbol == "SOLUSDT") == "spread 0.995 % > 0.2 %"
    assert (added.symbols, added.added, added.removed) == (["BTCUSDT", "ETHUSDT"], ["ETHUSDT"], [])
    eth_reason = next(c.reason for c in added.candidates if c.symbol == "ETHUSDT")
    assert eth_reason == "rank 2: turnover 52M >= 10M, spread 0.05 % <= 0.2 %"
    assert (removed.symbols, removed.added, removed.removed) == (["ETHUSDT"], [], ["BTCUSDT"])

    # the added symbol: nothing before its UniverseChanged, then its spec, its warm-up, its live data
    eth = _of(log, "ETHUSDT")
    assert eth[0] > log.index(added)
    kinds = [type(log[i]).__name__ for i in eth]
    assert kinds[:4] == ["InstrumentSpec", "Bar", "Bar", "Bar"] and {"BookSnapshot", "Ticker"} <= set(kinds[4:])
    assert all(log[i].warmup for i in eth[1:4])  # type: ignore[attr-defined]
    # the removed one: nothing after its UniverseChanged; the one never served: nothing at all
    assert _of(log, "BTCUSDT")[-1] < log.index(removed) and _of(log, "SOLUSDT") == []
    assert fake.public.count_requests("subscribe", "orderbook.50.SOLUSDT") == 0
    # the others were never disturbed: one connection, each topic subscribed once, no resync
    assert fake.public.connections_total == 1
    assert all(fake.public.count_requests("subscribe", t) == 1 for t in btc_topics + eth_topics)
    stats = live.feed.stats
    assert stats.reconnects == stats.resubscribes == stats.gaps == 0
    assert live.metric("universe_refreshes_total", outcome="changed") == 3 and live.metric("universe_symbols") == 1

    # determinism: each change decided again from its record and the universe before it
    previous = ["BTCUSDT", "SOLUSDT"]
    for change in (first, added, removed):
        assert sorted(u.previous_of(change)) == sorted(previous)
        assert u.decide_again(change, previous) == change
        previous = change.symbols
    assert await last_universe(js_fresh) == removed  # where a restart resumes


async def test_hunter_refresh_failure_or_nothing_qualifying_keeps_the_universe(market: FakeBybit) -> None:
    rest = BybitRest(market.base_url, attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02)
    try:
        hunter = UniverseHunter(rest, UniverseConfig(enabled=True), ["SOLUSDT"])
        market.fault("/v5/market/tickers", "http_status", times=2, status=502)
        with pytest.raises(RestError, match="after 2 attempts"):
            await hunter.refresh()
        assert hunter.symbols == ["SOLUSDT"]
        market.public.set_ticker("BTCUSDT", turnover24h=1e6)
        assert await hunter.refresh() is None and hunter.symbols == ["SOLUSDT"]  # nothing qualifies
        market.public.set_ticker("ETHUSDT", turnover24h=2e7)
        change = await hunter.refresh()
        assert change is not None and hunter.symbols == change.symbols == ["ETHUSDT"]
        assert change.ts_event == market.calls_to("/v5/market/tickers")[-1].time_ms * 1_000_000
        assert [c.query for c in market.calls_to("/v5/market/instruments-info")][-1] == {
            "category": "linear",
            "limit": "1000",
        }
    finally:
        rest.close()


# --- Qwen's suggestions ----------------------------------------------------------------------------


def _call(text: str | None, outcome: str = "ok", finish: str = "stop") -> ev.ModelCall:
    return ev.ModelCall(
        role="universe", model="qwen-plus", prompt_id="universe.v1", prompt_sha256="0" * 64, outcome=outcome,
        raw_text=text, finish_reason=finish, status_code=200, error_code=None, error_message=None, request_id="r",
        latency_ms=1.0, attempts=1, tokens_in=1, tokens_out=1, cost_usd=0.0, key_index=0,
    )  # fmt: skip


def _picks(*symbols: str) -> str:
    return '{"symbols": [' + ", ".join(f'{{"symbol": "{s}", "reason": "{s} trends"}}' for s in symbols) + "]}"


def test_suggested_qualifiers_rank_first_and_failing_suggestions_are_recorded_with_their_filter() -> None:
    quotes = u.quotes(MARKET, INSTRUMENTS_INFO)
    read = u.suggestions_of(_call(_picks("ADAUSDT", "ETHUSDT", "NOPEUSDT", "BTCPERP")))
    assert list(read.symbols) == ["ADAUSDT", "ETHUSDT", "NOPEUSDT"] and read.detail == "left out: BTCPERP"
    rules = u.Rules(max_symbols=2)
    choice = u.choose(quotes, [], rules, read.symbols)
    assert choice.symbols == ["BTCUSDT", "ADAUSDT"]  # ADAUSDT, suggested, beats XRPUSDT's higher turnover
    why = {c.symbol: (c.rank, c.source, c.reason) for c in choice.candidates}
    assert why["ADAUSDT"][:2] == (1, "qwen") and why["ADAUSDT"][2].startswith(
        "suggested by qwen (ADAUSDT trends); rank 1"
    )
    assert why["BTCUSDT"][:2] == (2, "tickers")
    assert why["ETHUSDT"] == (None, "qwen", "suggested by qwen (ETHUSDT trends); turnover 4.1M < 10M")
    assert why["NOPEUSDT"][2].startswith("suggested by qwen (NOPEUSDT trends); not a trading instrument")
    call = _call(_picks("ADAUSDT", "ETHUSDT", "NOPEUSDT", "BTCPERP"))
    event = u.change(choice, [], rules, T0, call=call)
    assert event is not None and event.source == "qwen" and event.call == call
    assert {"ETHUSDT", "NOPEUSDT"} <= {c.symbol for c in event.candidates}  # refused suggestions are recorded
    assert u.decide_again(event, []) == event
    without = u.choose(quotes, [], rules)
    assert without.symbols == ["BTCUSDT", "XRPUSDT"]  # the same market without the model


@pytest.mark.parametrize(
    ("text", "outcome", "finish", "failure"),
    [("not json", "ok", "stop", "invalid_json"), ('{"symbols": "SOLUSDT"}', "ok", "stop", "schema"),
     ("", "ok", "stop", "empty"), (None, "timeout", "stop", "timeout"), (_picks("SOLUSDT"), "ok", "length", "length")],
)  # fmt: skip
def test_an_answer_that_cannot_be_read_suggests_nothing(text: str | None, outcome: str, finish: str, failure: str):
    read = u.suggestions_of(_call(text, outcome, finish))
    assert read.symbols == {} and read.failure == failure and read.detail


def test_a_fenced_answer_is_read_and_the_picks_are_capped() -> None:
    many = _picks(*(f"C{i}USDT" for i in range(30)))
    read = u.suggestions_of(_call(f"```json\n{many}\n```"))
    assert len(read.symbols) == u.MAX_SUGGESTIONS and read.failure is None and "C20USDT" in read.detail


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_ROW, max_size=12),
    previous=st.lists(_SYMBOLS, max_size=4, unique=True),
    picks=st.lists(st.one_of(_SYMBOLS, st.just("ZZZUSDT")), max_size=5, unique=True),
    cap=st.integers(1, 5),
)
def test_decide_again_reproduces_every_change_with_suggestions_from_its_recorded_answer(
    rows: list[dict[str, Any]], previous: list[str], picks: list[str], cap: int
) -> None:
    rules = u.Rules(min_turnover_usdt=1e8, max_spread=0.05, max_symbols=cap)
    listed = [_instrument(f"S{i}USDT") for i in range(0, 12, 2)]
    call = _call(_picks(*picks))
    choice = u.choose(u.quotes(rows, listed), previous, rules, u.suggestions_of(call).symbols)
    event = u.change(choice, previous, rules, T0, call=call)
    if event is not None:
        assert u.decide_again(event, previous) == event


SUGGESTIONS = "nertz_market_ingest_universe_suggestions_total"


async def test_hunter_asks_qwen_through_the_sdk_and_records_its_answer_in_the_change(market: FakeBybit) -> None:
    market.public.set_ticker("ETHUSDT", turnover24h=2e7, bid1Price="20.0", ask1Price="20.01")  # qualifies
    rest = BybitRest(market.base_url, attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02)
    async with FakeDashScope(keys=["sk-test"]) as qwen:
        suggester = QwenSuggester("sk-test", base_url=qwen.base_url, attempts=3, backoff_s=0.01)
        registry = CollectorRegistry()
        metrics = IngestMetrics(registry)
        config = UniverseConfig(enabled=True, max_symbols=1, qwen=True)
        try:
            hunter = UniverseHunter(rest, config, ["SOLUSDT"], suggester=suggester, metrics=metrics)
            qwen.script(Fault("429"), Answer(_picks("ETHUSDT")))  # throttled once, then it answers
            change = await hunter.refresh()
            assert change is not None and change.symbols == ["ETHUSDT"]  # BTCUSDT has more turnover
            assert change.source == "qwen" and change.call is not None and change.call.attempts == 2
            assert change.call.raw_text == _picks("ETHUSDT") and change.call.outcome == "ok"
            asked = qwen.requests[-1]
            shown = json.loads(asked.messages[-1]["content"])["candidates"]
            assert [c["symbol"] for c in shown] == ["BTCUSDT", "ETHUSDT"]  # the qualifiers, by turnover
            assert "sk-test" not in repr(change)  # the key is never recorded
            assert u.decide_again(change, ["SOLUSDT"]) == change
            # garbage: the universe by turnover alone, the failed call recorded
            qwen.script(Answer("the best coins are BTC and ETH"))
            hunter.symbols = ["SOLUSDT"]
            change = await hunter.refresh()
            assert change is not None and change.symbols == ["BTCUSDT"] and change.call is not None
            assert u.suggestions_of(change.call).failure == "invalid_json"
            counted = {o: registry.get_sample_value(SUGGESTIONS, {"outcome": o}) for o in ("ok", "invalid_json")}
            assert counted == {"ok": 1.0, "invalid_json": 1.0}
            assert asked.parameters["enable_thinking"] is False and asked.parameters["temperature"] == 0.0
        finally:
            rest.close()
            await suggester.close()


def test_qwen_suggestions_need_a_dashscope_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setenv("NERTZ_UNIVERSE__QWEN", "true")
    with pytest.raises(ValueError, match="expected DASHSCOPE_API_KEY with NERTZ_UNIVERSE__QWEN=true"):
        IngestSettings()
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    assert IngestSettings().universe.qwen
