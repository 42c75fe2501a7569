"""Qwen in the loop, with the real dashscope SDK against the fake DashScope on 127.0.0.1.

- approve, reject, and each failure mode giving a fail-closed reject whose reason names it;
- key rotation on 429 (and 401), retries bounded by the call's time budget;
- the component: the prompt rendered and hashed, the answer recorded in the verdict, the council;
- the circuit breaker's tool calls becoming overrides that change later verdicts, and a bad tool call
  refused with its reason.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_common.testing.fake_dashscope import (
    EMPTY,
    MALFORMED_JSON,
    TRUNCATED,
    Answer,
    FakeDashScope,
    Fault,
    ToolCalls,
    verdict,
)
from nertz_validator.adapters.qwen import KeyPool, QwenClient
from nertz_validator.core import answer as answers
from nertz_validator.core import prompt
from nertz_validator.core.component import Ask, ModelPolicy, Validator
from nertz_validator.settings import QwenSettings


@pytest.fixture(autouse=True)
def _loopback(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def qwen(**kw) -> QwenSettings:
    base = dict(request_timeout_s=2.0, budget_s=5.0, backoff_s=0.01, max_attempts=4)
    return QwenSettings(**{**base, **kw})


def ask(text: str = "hello", model: str = "qwen-plus") -> Ask:
    r = prompt.render("verdict.v1", {"symbol": "BTCUSDT", "text": text})
    return Ask(key=f"k-{text}", role="verdict", symbol="BTCUSDT", model=model, prompt_id=r.prompt_id,
               prompt_sha256=r.sha256, messages=list(r.messages))  # fmt: skip


async def call(fake: FakeDashScope, *replies, keys=("sk-1",), **kw) -> tuple[ev.ModelCall, QwenClient]:
    fake.script(*replies)
    client = QwenClient(qwen(**kw), list(keys), base_url=fake.base_url)
    try:
        return await client(ask()), client
    finally:
        await client.close()


async def test_approve_is_recorded_verbatim_with_usage_cost_and_request_id():
    async with FakeDashScope() as fake:
        c, client = await call(fake, verdict("approve", confidence=0.9, size_multiplier=0.5))
    assert c.outcome == "ok" and c.finish_reason == "stop" and c.attempts == 1 and c.key_index == 0
    assert c.request_id and c.tokens_in > 0 and c.tokens_out > 0
    price_in, price_out = client.settings.prices["qwen-plus"]
    assert c.cost_usd == pytest.approx(c.tokens_in / 1000 * price_in + c.tokens_out / 1000 * price_out, rel=1e-6)
    o = answers.opinion_of(c, "qwen")
    assert (o.decision, o.confidence, o.size_multiplier, o.failure) == ("approve", 0.9, 0.5, None)
    # what went on the wire: JSON mode, temperature 0, the seed, thinking off, the pinned model
    [req] = fake.requests
    p = req.parameters
    assert p["result_format"] == "message" and p["response_format"] == {"type": "json_object"}
    assert (p["temperature"], p["seed"], p["enable_thinking"]) == (0.0, 7, False)
    assert req.model == "qwen-plus" and req.api_key == "sk-1"
    assert client.metrics.calls.labels(model="qwen-plus", role="verdict", outcome="ok")._value.get() == 1


async def test_reject_is_a_reject_with_the_models_reasons():
    async with FakeDashScope() as fake:
        c, _ = await call(fake, verdict("reject", reasons=["trend against the side"], risk_flags=["weak_trend"]))
    o = answers.opinion_of(c, "qwen")
    assert (o.decision, o.reasons, o.risk_flags) == ("reject", ("trend against the side",), ("weak_trend",))


@pytest.mark.parametrize(
    ("reply", "failure", "words"),
    [
        (MALFORMED_JSON, "invalid_json", "not JSON"),
        (Answer('{"decision": "approve", "confidence": 2, "size_multiplier": 1, "reasons": []}'), "schema",
         "breaks the verdict schema"),
        (Answer('{"decision": "maybe", "confidence": 0.5, "size_multiplier": 1, "reasons": []}'), "schema",
         "breaks the verdict schema"),
        (TRUNCATED, "length", "finish_reason=length"),
        (EMPTY, "empty", "answered nothing"),
        (Fault("400"), "http_400", "http_400"),
    ],
)  # fmt: skip
async def test_each_bad_answer_fails_closed_naming_the_failure(reply, failure, words):
    async with FakeDashScope() as fake:
        c, _ = await call(fake, reply)
    o = answers.opinion_of(c, "qwen")
    assert o.decision == "reject" and o.size_multiplier == 0 and o.failure == failure
    assert words in o.reasons[0] and o.risk_flags == ("fail_closed",)
    assert c.attempts == 1  # not retried: the same question gets the same answer


async def test_thinking_model_without_thinking_off_would_be_a_400_but_the_client_turns_it_off():
    async with FakeDashScope(thinking_models={"qwen3-max"}) as fake:
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        c = await client(ask(model="qwen3-max"))
        await client.close()
    assert c.outcome == "ok"


async def test_timeout_fails_closed_within_the_budget():
    async with FakeDashScope() as fake:
        t0 = time.monotonic()
        c, _ = await call(fake, *[Fault("slow", delay_s=3.0)] * 4, request_timeout_s=0.3, budget_s=1.0)
        took = time.monotonic() - t0
    assert c.outcome == "timeout" and took < 1.6
    assert answers.opinion_of(c, "qwen").failure == "timeout"


async def test_server_errors_are_retried_with_backoff_until_the_budget_runs_out():
    async with FakeDashScope() as fake:
        fake.responder = lambda req: Fault("503")
        client = QwenClient(qwen(budget_s=1.0, backoff_s=0.1, max_attempts=20), ["sk-1"], base_url=fake.base_url)
        t0 = time.monotonic()
        c = await client(ask())
        took = time.monotonic() - t0
        await client.close()
    assert c.outcome == "http_5xx" and c.status_code == 503 and c.error_code == "ServiceUnavailable"
    assert 2 <= c.attempts < 20 and took < 1.5  # several attempts, stopped by the budget, not the count
    assert fake.calls == c.attempts


async def test_a_transient_500_then_an_answer_succeeds_on_the_retry():
    async with FakeDashScope() as fake:
        c, _ = await call(fake, Fault("500"), verdict("approve"))
    assert c.outcome == "ok" and c.attempts == 2


async def test_429_rotates_to_the_next_key_and_the_refused_key_rests():
    async with FakeDashScope() as fake:
        fake.fail_key("sk-1", Fault("429", code="Throttling.AllocationQuota"))
        client = QwenClient(qwen(), ["sk-1", "sk-2"], base_url=fake.base_url)
        c1 = await client(ask("a"))
        c2 = await client(ask("b"))  # sk-1 rests: straight to sk-2
        await client.close()
    assert c1.outcome == "ok" and c1.attempts == 2 and c1.key_index == 1
    assert c2.attempts == 1 and c2.key_index == 1
    assert [r.api_key for r in fake.requests] == ["sk-1", "sk-2", "sk-2"]
    assert client.metrics.rotations.labels(reason="429")._value.get() == 1


async def test_401_on_every_key_fails_closed_as_no_key():
    async with FakeDashScope(keys={"sk-good"}) as fake:
        c, client = await call(fake, keys=("sk-bad1", "sk-bad2"))
    assert c.outcome == "no_key" and client.metrics.rotations.labels(reason="401")._value.get() == 2
    assert answers.opinion_of(c, "qwen").reasons[0].startswith("fail-closed: model call failed (no_key")


async def test_connection_refused_fails_closed():
    async with FakeDashScope() as fake:
        url = fake.base_url
    client = QwenClient(qwen(budget_s=0.5, backoff_s=0.05), ["sk-1"], base_url=url)
    c = await client(ask())
    await client.close()
    assert c.outcome == "connection" and answers.opinion_of(c, "qwen").failure == "connection"


def test_key_pool_takes_keys_in_turn_and_skips_resting_ones():
    now = [0.0]
    pool = KeyPool(["a", "b", "c"], clock=lambda: now[0])
    assert [pool.take() for _ in range(4)] == [(0, "a"), (1, "b"), (2, "c"), (0, "a")]
    pool.rest(1, 10)
    assert [pool.take()[1] for _ in range(3)] == ["c", "a", "c"]
    pool.rest(0, 10)
    pool.rest(2, 10)
    assert pool.take() is None
    now[0] = 11
    assert pool.take() is not None


# --- the component ---------------------------------------------------------------------------------


def closed(pnl: float, i: int, symbol: str = "BTCUSDT") -> ev.PositionClosed:
    return ev.PositionClosed(
        event_id=derive_id("PositionClosed", symbol, i), ts_event=f.T0_NS + i * f.MINUTE_NS, ts_init=f.T0_NS,
        symbol=symbol, correlation_id=f"c{i}", causation_id="x", position_id=f"p{i}", side="long", qty=1.0,
        entry_price=100.0, exit_price=100.0 + pnl, exit_reason="take_profit" if pnl > 0 else "stop_loss",
        realized_pnl_usdt=pnl, fee_usdt=0.1, return_fraction=pnl / 100.0, holding_ns=60,
    )  # fmt: skip


def awaited(intent: ev.IntentProposed, lock: ev.LockState = "FLAT") -> ev.VerdictAwaited:
    return ev.VerdictAwaited(
        event_id=derive_id("VerdictAwaited", intent.event_id), ts_event=intent.ts_event, ts_init=intent.ts_event,
        symbol=intent.symbol, correlation_id=intent.correlation_id, causation_id=intent.event_id, lock_state=lock,
    )  # fmt: skip


class Driven:
    """A validator node whose calls are answered by a real QwenClient (the fake behind it)."""

    def __init__(self, client: QwenClient, **policy) -> None:
        self.node = Node(Validator(model=ModelPolicy(**policy)))
        self.client = client
        self.seq = 0
        self.asked: list[Ask] = []

    async def feed(self, e: ev.Event) -> list[ev.Event]:
        self.seq += 1
        outs = [o for o, _ in self.node.feed(e, Pos(self.seq, self.seq))]
        while self.node.asked:
            asked, self.node.asked = self.node.asked, []
            for c, _ in asked:
                assert isinstance(c, Ask)
                self.asked.append(c)
                outs += [o for o, _ in self.node.answer(c.key, await self.client(c))]
        return outs


async def test_a_verdict_records_the_prompt_and_the_answer_and_replays_from_it():
    async with FakeDashScope() as fake:
        fake.script(verdict("approve", size_multiplier=0.5))
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        d = Driven(client)
        intent = f.intent(f.bar(0))
        await d.feed(intent)
        [v] = await d.feed(awaited(intent))
        await client.close()
    [a] = d.asked
    assert isinstance(v, ev.VerdictIssued) and v.policy == "qwen" and v.decision == "approve"
    assert v.size_multiplier == 0.5 and v.model == "qwen-plus" and v.prompt_id == "verdict.v1"
    assert v.prompt_hash == a.prompt_sha256 == v.calls[0].prompt_sha256
    assert v.raw_text == v.calls[0].raw_text and v.request_id == v.calls[0].request_id
    # the user message carries the intent, its factors, the regime and the memory
    doc = fake.requests[0].messages[1]["content"]
    for word in ('"combined_score"', '"factors"', '"regime"', '"memory"', '"same_side"'):
        assert word in doc
    # served back from the verdict: the same verdict, and the model is not asked
    again = Node(Validator(model=ModelPolicy()))
    again.feed(intent, Pos(1, 1))
    again.feed(awaited(intent), Pos(2, 2))
    [(call_, _)] = again.asked
    [(key, recorded)] = again.component.recorded(v)
    assert key == call_.key and again.component.same_question(call_, recorded)
    [(v2, _)] = again.answer(call_.key, recorded)
    assert v2 == v


async def test_council_asks_quant_then_strategist_then_a_judge_that_sees_both():
    async with FakeDashScope() as fake:
        fake.script(verdict("approve", reasons=["edge"]), verdict("reject", reasons=["bad moment"]),
                    verdict("reject", reasons=["strategist is right"]))  # fmt: skip
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        d = Driven(client, mode="council")
        intent = f.intent(f.bar(0))
        await d.feed(intent)
        [v] = await d.feed(awaited(intent))
        await client.close()
    assert [a.role for a in d.asked] == ["quant", "strategist", "judge"]
    assert [r.messages[0]["content"][:40] for r in fake.requests] == [
        prompt.template(p)[:40] for p in ("quant.v1", "strategist.v1", "judge.v1")
    ]
    assert '"opinions"' in fake.requests[2].messages[1]["content"]
    assert v.policy == "council" and v.decision == "reject"
    assert [c.role for c in v.calls] == ["quant", "strategist", "judge"] and v.reasons == ["strategist is right"]


async def test_council_judge_failing_fails_closed():
    async with FakeDashScope() as fake:
        fake.script(verdict("approve"), verdict("approve"), MALFORMED_JSON)
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        d = Driven(client, mode="council")
        intent = f.intent(f.bar(0))
        await d.feed(intent)
        [v] = await d.feed(awaited(intent))
        await client.close()
    assert v.decision == "reject" and v.failure == "invalid_json"


async def test_breaker_tool_call_becomes_an_override_that_changes_later_verdicts():
    async with FakeDashScope() as fake:
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        d = Driven(client)
        for i in range(4):
            assert await d.feed(closed(-1, i)) == []
        fake.script(ToolCalls([("adjust_position_size", {"symbol": "BTCUSDT", "multiplier": 0.25, "hours": 24})]))
        [review] = await d.feed(closed(-1, 4))  # fifth loss: the model reviews through the palette
        fake.script(verdict("approve", size_multiplier=1.0))
        intent = f.intent(f.bar(10))
        await d.feed(intent)
        [v] = await d.feed(awaited(intent))
        await client.close()
    tools = fake.requests[0].parameters["tools"]
    assert sorted(t["function"]["name"] for t in tools) == sorted(
        ["adjust_position_size", "adjust_entry_threshold", "disable_side", "disable_symbol", "no_action"]
    )
    assert isinstance(review, ev.RiskOverrideIssued) and review.policy == "qwen" and review.call is not None
    [o] = review.overrides
    assert (o.kind, o.value, o.symbol) == ("position_size", 0.25, "BTCUSDT")
    assert o.until_ns == review.ts_event + 24 * 3_600_000_000_000
    assert "5 losses in a row" in review.trigger
    # the later approval is sized by the override, and names it
    assert v.decision == "approve" and v.size_multiplier == 0.25 and v.overrides == [o.override_id]
    assert '"overrides"' in fake.requests[1].messages[1]["content"]


@pytest.mark.parametrize(
    ("tool", "args", "why"),
    [
        ("disable_everything", {"symbol": "BTCUSDT"}, "not in the palette"),
        ("adjust_position_size", {"symbol": "BTCUSDT", "multiplier": 5}, "arguments refused"),
        ("disable_side", {"symbol": "BTCUSDT", "side": "up", "hours": 2}, "arguments refused"),
        ("disable_symbol", {"symbol": "BTCUSDT", "hours": 1000}, "arguments refused"),
        ("disable_symbol", {"symbol": "ETHUSDT"}, "but the review is of BTCUSDT"),
        ("adjust_position_size", '{"symbol": "BTCUSDT", "multiplier": 0.5', "arguments refused"),
    ],
)
async def test_a_bad_tool_call_is_refused_with_its_reason_and_the_rules_breaker_decides(tool, args, why):
    async with FakeDashScope() as fake:
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        d = Driven(client)
        for i in range(4):
            await d.feed(closed(-1, i))
        fake.script(ToolCalls([(tool, args)]))
        [review] = await d.feed(closed(-1, 4))
        await client.close()
    assert why in review.refused[0]
    assert review.policy == "rules" and [o.kind for o in review.overrides] == ["disable_symbol"]
    assert "rules breaker applied" in review.note


async def test_calls_of_different_symbols_run_concurrently():
    async with FakeDashScope(latency_s=0.4) as fake:
        client = QwenClient(qwen(), ["sk-1"], base_url=fake.base_url)
        t0 = time.monotonic()
        got = await asyncio.gather(*(client(ask(f"s{i}")) for i in range(10)))
        took = time.monotonic() - t0
        await client.close()
    assert all(c.outcome == "ok" for c in got) and took < 1.0
