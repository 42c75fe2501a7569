"""Qwen in the loop, end to end: the services as processes on a slice of the bundled data, the
validator (and a shadow) asking a fake DashScope on 127.0.0.1 through the real dashscope SDK.

- every intent in a FLAT symbol is judged by Qwen, every answer recorded, each question asked once;
- a replay of the log reproduces every verdict without calling the model (the fake counts no call);
- a counterfactual with another prompt asks the model and reports the decisions that changed;
- a shadow validator records its own verdicts for the same intents, and no order follows from them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nats
import pytest

from nertz_cli import config, demo, tools
from nertz_common import aio, topology
from nertz_common import events as ev
from nertz_common.node.log import Record, read_log
from nertz_common.testing.fake_dashscope import FakeDashScope

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

ROWS = 4500  # bars per symbol: the stops need a day of 4 h bars (~1,600 bars), then 10+ intents are judged
SHADOW = "max"


@pytest.fixture(scope="module")
def fake():
    with FakeDashScope(latency_s=0.02).in_thread() as f:
        yield f


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    return demo.slice_input(tmp_path_factory.mktemp("qslice"), ROWS)


async def _read(nats_url: str) -> list[Record]:
    nc = await nats.connect(nats_url)
    try:
        return await read_log(nc.jetstream(timeout=10))
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def qwen_run(nats_url: str, fake: FakeDashScope, slice_files, tmp_path_factory) -> list[Record]:
    asyncio.run(demo.apply_topology(nats_url, fresh=True))
    env = {"DASHSCOPE_API_KEY": "sk-e2e", "DASHSCOPE_HTTP_BASE_URL": fake.base_url, "NO_PROXY": "127.0.0.1,localhost",
           "NERTZ_KERNEL__SNAPSHOT_EVERY": "2000"}  # fmt: skip
    stack = demo.Stack(tmp_path_factory.mktemp("qrun"), nats_url, "", env=env)
    demo.start_services(stack, ("signal", "llm-validator", "executor"))
    demo.start_service(stack, topology.shadow_name(SHADOW), module="nertz_validator", args=("--shadow", SHADOW),
                       NERTZ_VALIDATOR__QWEN__MODEL="qwen-max")  # fmt: skip
    try:
        for group in slice_files:
            demo.replay(stack, group, stdout=subprocess.DEVNULL)
        demo.wait_caught_up(stack, timeout_s=300)
    finally:
        stack.stop_services()
    return aio.run(_read(nats_url))


def _events(records: list[Record], t: type) -> list:  # type: ignore[type-arg]
    return [r.event for r in records if isinstance(r.event, t)]


def test_every_flat_intent_is_judged_by_qwen_and_each_question_asked_once(qwen_run, fake):
    verdicts = _events(qwen_run, ev.VerdictIssued)
    intents = _events(qwen_run, ev.IntentProposed)
    assert len(verdicts) == len(intents) > 10
    policies = Counter(v.policy for v in verdicts)
    # 10 of 24 on this slice since the regime (in the prompt) can be digesting: the fake's answers follow it
    assert policies["qwen"] >= 10 and set(policies) <= {"qwen", "skipped", "override"}, policies
    for v in verdicts:
        if v.policy == "qwen":
            [c] = v.calls
            assert c.outcome == "ok" and c.model == "qwen-plus" and c.prompt_id == "verdict.v1"
            assert v.prompt_hash == c.prompt_sha256 and c.raw_text and c.latency_ms > 0
    reviews = _events(qwen_run, ev.RiskOverrideIssued)
    recorded = sum(len(v.calls) for v in verdicts) + sum(1 for r in reviews if r.call is not None)
    recorded += sum(len(s.calls) for s in _events(qwen_run, ev.ShadowVerdictIssued))
    assert fake.calls == recorded  # nothing asked twice, nothing asked and not recorded


def test_replay_reproduces_every_verdict_without_calling_the_model(nats_url, qwen_run, fake):
    before = fake.calls
    sl = aio.run(_slice(nats_url))
    settings = tools.as_recorded(config.load(), sl.records, {})
    assert settings.validator.policy == "qwen" and settings.validator.qwen.model == "qwen-plus"
    result = tools.rerun(sl, settings)
    assert result.ok, result.divergence
    calls = sum(len(v.calls) for v in _events(qwen_run, ev.VerdictIssued))
    calls += sum(1 for r in _events(qwen_run, ev.RiskOverrideIssued) if r.call is not None)
    # the news analyst ran too (a key is set): its questions about these 2025 bars were answered stale
    news = _events(qwen_run, ev.NewsAssessed)
    assert news and {n.failure for n in news} == {"stale"} and result.compared["news-analyst"] == len(news)
    calls += len(news)
    assert result.answers_served == calls and result.answers_asked == 0
    assert fake.calls == before  # the model was not asked


def test_counterfactual_with_another_prompt_asks_the_model_and_reports_what_changed(
    nats_url, qwen_run, fake, monkeypatch
):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-e2e")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    sl = aio.run(_slice(nats_url))
    sets = ["validator.qwen.prompt=verdict.v2"]
    settings = tools.as_recorded(config.load(sets), sl.records, config.parse_sets(sets))
    assert settings.validator.qwen.prompt == "verdict.v2"
    before = fake.calls
    with tools.model_client(settings) as client:
        result = tools.rerun(sl, settings, ask=client.answer)
    cf = tools.counterfactual(result)
    assert result.answers_asked > 0 and fake.calls - before == result.answers_asked
    assert cf.changed, "another prompt, another deterministic fake answer: some decision must change"
    changed_verdicts = [(a, b) for _, a, b in cf.changed if a and b and a.verdict and b.verdict]
    assert any(a.verdict.decision != b.verdict.decision for a, b in changed_verdicts)
    assert {b.verdict.prompt_id for _, _, b in cf.changed if b and b.verdict and b.verdict.calls} == {"verdict.v2"}


def test_a_shadow_records_its_own_verdicts_and_nothing_executes_them(qwen_run):
    live = {v.correlation_id: v for v in _events(qwen_run, ev.VerdictIssued)}
    shadow = {s.correlation_id: s for s in _events(qwen_run, ev.ShadowVerdictIssued)}
    assert shadow.keys() == live.keys()
    assert all(s.shadow == SHADOW for s in shadow.values())
    assert {c.model for s in shadow.values() for c in s.calls} == {"qwen-max"}
    assert any(shadow[k].decision != live[k].decision for k in live), "a different model decides differently"
    subjects = {r.subject for r in qwen_run if isinstance(r.event, ev.ShadowVerdictIssued)}
    assert subjects == {f"llm.shadow.{SHADOW}"}
    # every executor decision follows a live verdict, never a shadow one
    shadow_ids = {s.event_id for s in shadow.values()}
    causes = {e.causation_id for e in _events(qwen_run, ev.OrderSubmitted) + _events(qwen_run, ev.RiskDenied)
              + _events(qwen_run, ev.SignalSuppressed)}  # fmt: skip
    assert causes and not causes & shadow_ids
    assert causes <= {v.event_id for v in live.values()} | {
        e.event_id for e in _events(qwen_run, ev.Bar) + _events(qwen_run, ev.BookSnapshot)
    }


def test_nertz_replay_says_how_many_answers_it_served(nats_url, qwen_run, fake):
    before = fake.calls
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE")}
    p = subprocess.run([str(Path(sys.executable).parent / "nertz"), "replay", "--nats-url", nats_url],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "identical" in p.stdout and "served from the recording, 0 asked anew" in p.stderr
    assert fake.calls == before


async def _slice(nats_url: str) -> tools.Slice:
    nc = await nats.connect(nats_url)
    try:
        return await tools.read_slice(nc.jetstream(timeout=10))
    finally:
        await nc.close()
