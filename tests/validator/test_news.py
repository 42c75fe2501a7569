"""The news analyst: its schedule and its requests, what an answer means (fail closed), the decay, the
real dashscope SDK against the fake DashScope (``enable_search`` on the wire), and the done-when: news
assessments changing the regime and vetoing an entry, replayed identically from the recorded answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nertz_cli import tools
from nertz_cli.config import PipelineSettings, news_node, nodes
from nertz_common import events as ev
from nertz_common import news as news_
from nertz_common import subjects, topology
from nertz_common.ids import derive_id
from nertz_common.node.component import Call, Node, Pos
from nertz_common.node.log import Record
from nertz_common.node.log_runner import LogRunner, replay
from nertz_common.testing import factories as f
from nertz_common.testing.fake_dashscope import Answer, FakeDashScope
from nertz_signal.core.config import SignalConfig
from nertz_validator.adapters.qwen import QwenClient, fresh_only
from nertz_validator.core import prompt
from nertz_validator.core.component import Ask
from nertz_validator.core.news import NewsAnalyst, NewsPolicy, assessment_of, event_time, news_key
from nertz_validator.settings import NewsSettings, QwenSettings, ValidatorGroup

HOUR_NS = f.HOUR_NS
DAY_NS = 24 * HOUR_NS
T0 = f.T0_NS  # 2025-05-30 16:39 UTC: bar i closes at T0 + (i + 1) min


@pytest.fixture(autouse=True)
def _loopback(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def reply(call: Ask, text: str, outcome: str = "ok", **kw: Any) -> ev.ModelCall:
    """The model's answer to ``call``, as the Qwen client records it."""
    fields: dict[str, Any] = dict(
        role=call.role, model=call.model, prompt_id=call.prompt_id, prompt_sha256=call.prompt_sha256,
        outcome=outcome, raw_text=text, finish_reason="stop", latency_ms=8400.0, attempts=1, tokens_in=2100,
        tokens_out=160,
    )  # fmt: skip
    fields.update(kw)
    return ev.ModelCall(**fields)


def model_call(text: str | None, **kw: Any) -> ev.ModelCall:
    base: dict[str, Any] = dict(model="qwen3-max", prompt_id="news.v1", prompt_sha256="ab" * 32, outcome="ok",
                                raw_text=text, finish_reason="stop")  # fmt: skip
    return ev.ModelCall(**{**base, **kw})


def doc(impact: float = 0.0, *events: tuple[str, str, float, bool], summary: str = "") -> str:
    """A news answer: ``events`` are ``(date, title, impact, critical)``."""
    return json.dumps({"impact": impact, "summary": summary, "key_events": [
        {"date": d, "title": t, "impact": i, "critical": c} for d, t, i, c in events]})  # fmt: skip


def feed_all(node: Node, events: list[ev.Event], answer: Any) -> list[ev.Event]:
    """Feed ``events`` in order, answering every call at once with ``answer(call)``; return the outputs."""
    out: list[ev.Event] = []
    for i, e in enumerate(events):
        out += [o for o, _ in node.feed(e, Pos(i + 1, i + 1))]
        while node.asked:
            asked, node.asked = node.asked, []
            for call, _ in asked:
                out += [o for o, _ in node.answer(call.key, answer(call))]
    return out


# --- the schedule and the requests ------------------------------------------------------------------


def test_news_analyst_asks_at_each_new_slot_but_not_at_the_first_bar_nor_a_backfilled_one():
    node = Node(NewsAnalyst(NewsPolicy(refresh_h=1.0)))
    asked: list[Ask] = []

    def answer(call: Call) -> ev.ModelCall:
        assert isinstance(call, Ask)
        asked.append(call)
        return reply(call, doc())

    # bars close 16:40 .. 18:49; 17:00 starts a slot; the bar of 18:00 is a backfill's (sets the slot only)
    bars = [f.bar(i, warmup=(i == 80)) for i in range(130)]
    out = feed_all(node, list(bars), answer)
    slot_17 = (T0 // HOUR_NS + 1) * HOUR_NS
    assert [c.key for c in asked] == [news_key("BTCUSDT", slot_ns=slot_17)]
    (c,) = asked
    assert c.enable_search and c.search_options == {"forced_search": True} and not c.json_mode
    assert (c.role, c.model, c.prompt_id, c.as_of_ns) == ("news", "qwen3-max", "news.v1", bars[20].ts_event)
    user = json.loads(c.messages[1]["content"])
    assert user == {"task": "news", "symbol": "BTCUSDT", "coin": "BTC", "from": "2025-05-23T17:00Z",
                    "as_of": "2025-05-30T17:00Z", "window_days": 7}  # fmt: skip
    assert c.prompt_sha256 == prompt.render("news.v1", user).sha256
    (na,) = out
    assert isinstance(na, ev.NewsAssessed) and na.trigger == "schedule" and na.slot_ns == slot_17
    assert na.ts_event == na.ts_init == bars[20].ts_event and na.event_id == derive_id("NewsAssessed", c.key)
    assert subjects.for_event(na) == "llm.news.bybit.linear.BTCUSDT"


def test_news_analyst_asks_on_request_at_once_and_records_which_request():
    node = Node(NewsAnalyst())
    request = ev.NewsRequested(event_id="nr1", ts_event=T0 + 5 * f.MINUTE_NS, ts_init=T0 + 5 * f.MINUTE_NS,
                               scope="ETHUSDT", reason="before the FOMC")  # fmt: skip
    out = feed_all(node, [f.bar(0, "ETHUSDT"), request], lambda c: reply(c, doc(0.5, ("2025-05-30", "upgrade", 0.5,
                                                                                     False))))  # fmt: skip
    (na,) = out
    assert isinstance(na, ev.NewsAssessed)
    assert (na.trigger, na.request_id, na.slot_ns, na.symbol, na.ts_event) == (
        "request", "nr1", None, "ETHUSDT", request.ts_event)  # fmt: skip
    assert na.impact == 0.5 and na.key_events[0].title == "upgrade" and na.failure is None
    assert na.call is not None and na.call.raw_text and na.call.tokens_in == 2100
    assert NewsAnalyst().recorded(na) == [(news_key("ETHUSDT", request_id="nr1"), na.call)]


def test_news_analyst_state_is_the_slots_and_a_restored_analyst_asks_the_same():
    bars = [f.bar(i) for i in range(90)]
    whole = feed_all(Node(NewsAnalyst(NewsPolicy(refresh_h=0.5))), bars, lambda c: reply(c, doc()))
    first = Node(NewsAnalyst(NewsPolicy(refresh_h=0.5)))
    head = feed_all(first, bars[:30], lambda c: reply(c, doc()))
    again = Node(NewsAnalyst(NewsPolicy(refresh_h=0.5)))
    again.set_state(first.get_state())
    tail = [o for i, e in enumerate(bars[30:], start=31) for o, _ in _fed(again, e, i)]
    assert head + tail == whole and len(whole) == 3  # 17:00, 17:30, 18:00


def _fed(node: Node, e: ev.Event, i: int) -> list[tuple[ev.Event, Pos]]:
    out = node.feed(e, Pos(i, i))
    for call, _ in list(node.asked):
        node.asked = []
        out += node.answer(call.key, reply(call, doc()))  # type: ignore[arg-type]
    return out


# --- what an answer means ---------------------------------------------------------------------------


def test_assessment_of_a_good_answer_dates_and_clamps_each_event():
    as_of = T0 + 21 * f.MINUTE_NS  # 2025-05-30 17:00
    text = doc(-1.5, ("2025-05-30", "Exchange hack", -2, True), ("2025-05-28T14:00Z", "ETF outflows", -1, False),
               ("2025-06-02", "Scheduled unlock", -0.5, False), summary="Bad week.")  # fmt: skip
    a = assessment_of(model_call(text), as_of)
    assert a.failure is None and a.impact == -1.5 and a.summary == "Bad week."
    hack, etf, unlock = a.key_events
    assert hack.ts_ns == as_of  # the day's end, clamped to the question's time
    assert etf.ts_ns == as_of - 2 * DAY_NS - 3 * HOUR_NS and (etf.impact, etf.critical) == (-1.0, False)
    assert unlock.ts_ns == as_of and unlock.date == "2025-06-02"  # a later date: now
    assert event_time("2025-05-29", as_of) == as_of - 17 * HOUR_NS - 1  # 2025-05-29 23:59:59.999999999


def test_assessment_of_a_fenced_answer_with_prose_around_it_reads_the_json():
    text = "Here is what I found:\n```json\n" + doc(1.0, ("2025-05-30", "ETF approved", 2, True)) + "\n```"
    a = assessment_of(model_call(text), T0)
    assert a.failure is None and a.key_events[0].critical and a.key_events[0].impact == 2.0


@pytest.mark.parametrize(
    ("call", "failure", "words"),
    [
        (model_call("the news are mixed"), "invalid_json", "not JSON"),
        (model_call('{"impact": 3, "key_events": []}'), "schema", "news schema"),
        (model_call('{"impact": -1, "key_events": [{"date": "2025-05-30", "title": "x", "impact": -2.5}]}'),
         "schema", "news schema"),
        (model_call('{"key_events": []}'), "schema", "news schema"),
        (model_call('{"impact": -1, "key_events": [{"date": "last week", "title": "x", "impact": -1}]}'),
         "schema", "key_events[0].date"),
        (model_call(""), "empty", "nothing"),
        (model_call('{"impact": -1', finish_reason="length"), "length", "cut short"),
        (model_call(None, outcome="timeout"), "timeout", "model call failed (timeout)"),
        (model_call(None, outcome="http_429", error_code="Throttling.RateQuota"), "http_429", "Throttling"),
        (model_call(None, outcome="stale", error_message="asked 9000 s after its time"), "stale", "not searched"),
    ],
)  # fmt: skip
def test_assessment_of_garbage_fails_closed_naming_the_failure(call, failure, words):
    a = assessment_of(call, T0)
    assert a.failure == failure and words in a.detail
    assert (a.impact, a.key_events, a.summary) == (0.0, (), "")


def test_a_failed_answer_is_a_news_assessed_with_the_failure_and_no_content():
    node = Node(NewsAnalyst(NewsPolicy(refresh_h=0.5)))
    out = feed_all(node, [f.bar(i) for i in range(30)], lambda c: reply(c, "no idea, sorry"))
    (na,) = out
    assert isinstance(na, ev.NewsAssessed) and na.failure == "invalid_json" and "not JSON" in na.failure_detail
    assert na.key_events == [] and na.impact == 0.0 and na.call is not None and na.call.raw_text == "no idea, sorry"
    assert ev.decode(ev.encode(na)) == na


# --- the decay and the critical events ---------------------------------------------------------------


def test_decayed_impact_halves_every_half_life_and_counts_each_event_by_its_age():
    na = f.news(T0, events=(("hack", -2.0, True, 0.0), ("outflows", -2.0, False, 24.0)))
    hl = 24 * HOUR_NS
    assert news_.decayed_impact(na.key_events, T0, hl) == pytest.approx(-3.0)  # -2 + -2 / 2
    assert news_.decayed_impact(na.key_events, T0 + 24 * HOUR_NS, hl) == pytest.approx(-1.5)
    assert news_.decayed_impact(na.key_events, T0 - HOUR_NS, hl) == pytest.approx(-2 - 2 * 0.5 ** (23 / 24))
    with pytest.raises(ValueError, match="half_life_ns > 0"):
        news_.decayed_impact(na.key_events, T0, 0)


def test_critical_events_within_the_window_by_sign():
    na = f.news(T0, events=(("hack", -2.0, True, 2.0), ("approval", 2.0, True, 30.0), ("rumour", -1.0, False, 1.0)))
    day = 24 * HOUR_NS
    assert [i.title for i in news_.critical(na.key_events, T0, day)] == ["hack"]
    assert [i.title for i in news_.critical(na.key_events, T0, 2 * day)] == ["hack", "approval"]
    assert [i.title for i in news_.critical(na.key_events, T0, 2 * day, sign=1)] == ["approval"]
    assert news_.critical(na.key_events, T0 + day, day) == []


# --- the real SDK against the fake DashScope ---------------------------------------------------------


async def test_news_question_goes_to_dashscope_with_enable_search_and_its_answer_is_recorded():
    node = Node(NewsAnalyst(NewsPolicy(refresh_h=0.5)))
    for i in range(21):
        node.feed(f.bar(i), Pos(i + 1, i + 1))
    ((call, _),) = node.asked
    text = doc(-2.0, ("2025-05-30", "Protocol exploit", -2, True), summary="An exploit drained the bridge.")
    async with FakeDashScope(thinking_models={"qwen3-max"}) as fake:
        fake.script(Answer(text))
        client = QwenClient(QwenSettings(request_timeout_s=5.0, budget_s=10.0), ["sk-1"], base_url=fake.base_url)
        try:
            recorded = await fresh_only(client, 1e12)(call)
        finally:
            await client.close()
    [req] = fake.requests
    p = req.parameters
    assert p["enable_search"] is True and p["search_options"] == {"forced_search": True}
    assert "response_format" not in p and p["enable_thinking"] is False and req.model == "qwen3-max"
    assert recorded.outcome == "ok" and recorded.raw_text == text and recorded.role == "news"
    (na,) = [o for o, _ in node.answer(call.key, recorded)]
    assert isinstance(na, ev.NewsAssessed) and na.failure is None and na.key_events[0].critical


async def test_a_question_about_the_past_is_stale_without_asking_the_model():
    call = Ask(key="k", role="news", symbol="BTCUSDT", model="qwen3-max", prompt_id="news.v1",
               prompt_sha256="ab" * 32, messages=[], enable_search=True, as_of_ns=T0)  # fmt: skip
    asked: list[Any] = []

    async def client(c: Any) -> ev.ModelCall:
        asked.append(c)
        return reply(c, doc())

    got = await fresh_only(client, 3600.0, clock=lambda: T0 / 1e9 + 7200)(call)
    assert got.outcome == "stale" and "7200 s" in (got.error_message or "") and asked == []
    assert (await fresh_only(client, 3600.0, clock=lambda: T0 / 1e9 + 60)(call)).outcome == "ok" and asked


# --- done when: news changing the regime and vetoing an entry, replayed identically ---------------


def trend_then_jump(symbol: str, n: int = 80) -> list[ev.Bar]:
    """``n`` bars drifting up 0.1 % a bar, then a 2 % jump on 4× volume: a LONG at the default threshold."""
    bars, close = [], 100.0
    for i in range(n):
        prev, close = close, close * 1.001
        bars.append(f.bar(i, symbol=symbol, open=prev, close=close, volume=10.0))
    bars.append(f.bar(n, symbol=symbol, open=close, close=close * 1.02, volume=40.0))
    return bars


def _settings() -> PipelineSettings:
    return PipelineSettings(
        signal=SignalConfig(stop_timeframe="1"), validator=ValidatorGroup(news=NewsSettings(refresh_h=0.5))
    )


def _recorded_answers(call: Call) -> ev.ModelCall:
    """What Qwen answered: at 17:30 a hack of ETH (critical) and an ETF filing for SOL; else no news."""
    assert isinstance(call, Ask) and call.as_of_ns is not None
    if call.as_of_ns == T0 + 51 * f.MINUTE_NS:  # the bar closing 17:30
        if call.symbol == "ETHUSDT":
            return reply(call, doc(-2, ("2025-05-30", "Bridge hack drains ETH", -2, True),
                                   ("2025-05-29", "Staking outflows", -1, False)))  # fmt: skip
        return reply(call, doc(1.5, ("2025-05-30", "ETF filing", 1.5, False)))
    return reply(call, doc(0, summary="no relevant news"))


def _run(with_news: bool) -> tuple[list[Record], dict[str, list[ev.Event]]]:
    """The pipeline over ETH's and SOL's bars through the log runner; the log as the services publish it."""
    settings = _settings()
    ns = [*nodes(settings), *([news_node(settings)] if with_news else [])]
    log: list[Record] = []

    def on_output(_name: str, e: ev.Event, p: Pos) -> None:
        log.append(Record(len(log) + 1, subjects.for_event(e), e, p.seq, p.origin))  # type: ignore[arg-type]

    runner = LogRunner(ns, on_output=on_output, answer=lambda _c, call: _recorded_answers(call))
    market = [b for pair in zip(trend_then_jump("ETHUSDT"), trend_then_jump("SOLUSDT"), strict=True) for b in pair]
    market += [f.bar(81 + i, symbol=s, close=c) for i in range(3) for s, c in (("ETHUSDT", 110.0), ("SOLUSDT", 110.0))]
    for e in market:
        seq = len(log) + 1
        log.append(Record(seq, subjects.for_event(e), e, None, seq))
        runner.feed(e, Pos(seq, seq))
    return log, {name: [e for e, _ in outs] for name, outs in runner.outputs.items()}


def test_news_changes_the_regime_and_vetoes_an_entry_and_a_replay_from_the_recorded_answers_is_identical():
    _, plain = _run(with_news=False)
    log, out = _run(with_news=True)
    last_bar = {s: trend_then_jump(s)[-1].event_id for s in ("ETHUSDT", "SOLUSDT")}

    def snap(o: dict[str, list[ev.Event]], symbol: str) -> ev.FactorSnapshot:
        return next(e for e in o["signal"] if isinstance(e, ev.FactorSnapshot) and e.bar_id == last_bar[symbol])

    def intent(o: dict[str, list[ev.Event]], symbol: str) -> ev.IntentProposed | None:
        return next((e for e in o["signal"] if isinstance(e, ev.IntentProposed) and e.symbol == symbol), None)

    # without news: both jumps propose a long in the unknown regime (the ATR median is not warm yet)
    assert snap(plain, "ETHUSDT").regime == snap(plain, "SOLUSDT").regime == "unknown"
    before_eth, before_sol = intent(plain, "ETHUSDT"), intent(plain, "SOLUSDT")
    assert before_eth is not None and before_sol is not None
    # with news: ETH's hack is critical (vetoed) and its decayed impact -2.96 makes it PANIC; SOL's +1.48
    # makes it DIGESTING: its stop x1.2, leverage x0.8, size x0.8 (x1.2 wider stop shrinks it again)
    eth = snap(out, "ETHUSDT")
    assert eth.intent_id is None and eth.veto is not None and eth.veto.startswith("news_critical: Bridge hack")
    assert eth.regime == "panic" and intent(out, "ETHUSDT") is None
    sol = intent(out, "SOLUSDT")
    assert sol is not None and sol.regime == snap(out, "SOLUSDT").regime == "digesting"
    assert sol.sl_distance == pytest.approx(before_sol.sl_distance * 1.2)
    assert sol.leverage == pytest.approx(before_sol.leverage * 0.8)
    assert sol.notional_usdt < before_sol.notional_usdt * 0.8
    assert any(r.startswith("news impact +1.48") for r in sol.reasons)
    news = [e for e in out["news-analyst"] if isinstance(e, ev.NewsAssessed)]
    assert len(news) == 6 and all(n.failure is None for n in news)  # 17:00, 17:30, 18:00 for each symbol
    assert any(isinstance(e, ev.PositionOpened) and e.symbol == "SOLUSDT" for e in out["executor"])

    # the recorded log replays identically: news read as recorded, then the analyst from its answers
    sl = tools.Slice(log, start=1, until=log[-1].seq)
    result = tools.rerun(sl, _settings())
    assert result.ok, result.divergence and result.divergence.fields()
    assert result.compared["news-analyst"] == 6 and result.answers_served == 6 and result.answers_asked == 0
    assert result.compared["signal"] > 0 and result.compared["executor"] > 0
    # a log from the log runner has each assessment where a single pass puts it: one pass replays it too
    one = replay(log, [*nodes(_settings()), news_node(_settings())], topology.producer_of)
    assert one.ok and one.identical == result.identical


def test_a_replay_of_a_log_read_before_the_analyst_answered_its_last_question_is_identical():
    log, _ = _run(with_news=True)
    last = max(i for i, r in enumerate(log) if isinstance(r.event, ev.NewsAssessed))
    cut = log[:last]  # read live while the search of the last assessment was in flight
    result = tools.rerun(tools.Slice(cut, start=1, until=cut[-1].seq), _settings())
    assert result.ok and result.compared["news-analyst"] == 5 and result.beyond == {"news-analyst": 1}
    assert result.answers_asked == 0  # never asked: answered not_recorded
    (beyond,) = [e for e, _ in result.derived["news-analyst"] if e.event_id == log[last].event.event_id]
    assert isinstance(beyond, ev.NewsAssessed) and beyond.failure == "not_recorded"
