"""The fake DashScope server, driven by the real dashscope SDK (AioGeneration and Generation) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
import dashscope
import pytest
import requests
from dashscope import AioGeneration, Generation

from nertz_common.testing.fake_bybit import loopback_only
from nertz_common.testing.fake_dashscope import (
    EMPTY,
    MALFORMED_JSON,
    TRUNCATED,
    Answer,
    FakeDashScope,
    FakeRequest,
    Fault,
    ToolCalls,
    default_reply,
    verdict,
)

KEY = "sk-test"
VERDICT_KEYS = {"decision", "confidence", "size_multiplier", "reasons", "risk_flags"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "no_action",
            "description": "Change nothing",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "adjust_position_size",
            "description": "Scale the size",
            "parameters": {
                "type": "object",
                "properties": {"symbol": {"type": "string"}, "multiplier": {"type": "number"}},
            },
        },
    },
]


def msgs(i: int = 0, symbol: str = "BTCUSDT") -> list[dict[str, Any]]:
    doc = {"intent": {"symbol": symbol, "side": "long", "combined": 3.5 + i}, "memory": {"loss_streak": i % 3}}
    return [
        {"role": "system", "content": "You are a risk validator. Answer with JSON."},
        {"role": "user", "content": json.dumps(doc)},
    ]


@pytest.fixture(autouse=True)
async def _loopback(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with loopback_only() as refused:
        yield
        # the SDK's shared aiohttp session is per event loop: close it before the loop moves on
        await dashscope.close_shared_aio_session()
    assert refused == []


async def ask(fake: FakeDashScope, model: str = "qwen-plus", messages: list[dict[str, Any]] | None = None, **kw: Any):
    args: dict[str, Any] = {
        "api_key": KEY,
        "base_address": fake.base_url,
        "result_format": "message",
        "response_format": {"type": "json_object"},
        "enable_thinking": False,
        "temperature": 0,
        "seed": 7,
        "request_timeout": 5,
    }
    args.update(kw)
    return await AioGeneration.call(model=model, messages=messages or msgs(), **args)


def content_of(resp: Any) -> str:
    assert resp.status_code == 200, (resp.code, resp.message)
    return resp.output.choices[0].message.content


# --- the default responder ------------------------------------------------------------------------


async def test_default_reply_verdict_shape_parses_as_json():
    async with FakeDashScope() as fake:
        resp = await ask(fake)
    doc = json.loads(content_of(resp))
    assert set(doc) == VERDICT_KEYS
    assert doc["decision"] in ("approve", "reject")
    assert 0.0 <= doc["confidence"] <= 1.0 and round(doc["confidence"], 2) == doc["confidence"]
    assert doc["size_multiplier"] in (1.0, 0.5)
    assert doc["reasons"][0].startswith("fake qwen-plus:") and doc["risk_flags"] == []
    assert resp.output.choices[0].finish_reason == "stop"
    assert resp.usage.input_tokens >= 1 and resp.usage.output_tokens >= 1
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.request_id and resp.code == "" and resp.message == ""


def test_default_reply_both_decisions_and_model_dependent():
    contents = {m: [default_reply(m, msgs(i), {}) for i in range(40)] for m in ("qwen-plus", "qwen-max")}
    decisions = [json.loads(a.content)["decision"] for a in contents["qwen-plus"] if isinstance(a, Answer)]
    assert len(decisions) == 40 and {"approve", "reject"} == set(decisions)
    assert 2 <= decisions.count("reject") <= 20  # about a quarter
    assert contents["qwen-plus"] != contents["qwen-max"]


def test_default_reply_tool_not_offered_falls_back_to_first_offered():
    only = [{"type": "function", "function": {"name": "close_position", "parameters": {}}}]
    for i in range(8):
        assert default_reply("qwen-plus", msgs(i), {"tools": only}) == ToolCalls([("close_position", {})])


async def test_default_reply_deterministic_per_model_and_messages():
    async with FakeDashScope() as fake:
        first = [content_of(await ask(fake, messages=msgs(i))) for i in range(6)]
        again = [content_of(await ask(fake, messages=msgs(i))) for i in range(6)]
        other = [content_of(await ask(fake, "qwen-max", messages=msgs(i))) for i in range(6)]
        ids = [r.request_id for r in [await ask(fake), await ask(fake)]]
    assert first == again
    assert first != other
    assert ids[0] != ids[1]  # the per-server counter is part of the request id
    # a fresh server numbers its requests again: the same sequence gives the same request ids
    async with FakeDashScope() as fake2:
        replay = [(await ask(fake2, messages=msgs(i))).request_id for i in range(2)]
    async with FakeDashScope() as fake3:
        assert replay == [(await ask(fake3, messages=msgs(i))).request_id for i in range(2)]


async def test_default_reply_tools_offered_one_tool_call_with_json_arguments():
    seen = set()
    async with FakeDashScope() as fake:
        for i in range(12):
            resp = await ask(fake, messages=msgs(i, symbol="ETHUSDT"), tools=TOOLS, tool_choice="auto")
            assert resp.status_code == 200
            choice = resp.output.choices[0]
            assert choice.finish_reason == "tool_calls" and choice.message.content == ""
            (call,) = choice.message.tool_calls
            assert call["type"] == "function" and call["id"].startswith("call_")
            args = json.loads(call["function"]["arguments"])
            name = call["function"]["name"]
            seen.add(name)
            if name == "adjust_position_size":
                assert args == {"symbol": "ETHUSDT", "multiplier": 0.5}
            else:
                assert name == "no_action" and args == {"reason": "fake: performance within bounds"}
        assert fake.requests[0].parameters["tools"] == TOOLS
    assert seen == {"no_action", "adjust_position_size"}


# --- auth and the thinking rule -------------------------------------------------------------------


async def test_auth_missing_key_401_no_api_key():
    async with FakeDashScope() as fake, aiohttp.ClientSession() as http:
        body = {"model": "qwen-plus", "input": {"messages": msgs()}, "parameters": {"result_format": "message"}}
        async with http.post(fake.base_url + "/services/aigc/text-generation/generation", json=body) as r:
            assert r.status == 401 and r.content_type == "application/json"
            err = await r.json()
        assert fake.calls == 1 and fake.requests[0].api_key is None
    assert err["code"] == "InvalidApiKey" and err["message"] == "No API-key provided." and err["request_id"]


async def test_auth_wrong_key_401_invalid_api_key():
    async with FakeDashScope(keys=[KEY]) as fake:
        bad = await ask(fake, api_key="sk-wrong")
        good = await ask(fake)
    assert (bad.status_code, bad.code, bad.message) == (401, "InvalidApiKey", "Invalid API-key provided.")
    assert bad.output is None and bad.request_id
    assert good.status_code == 200


async def test_thinking_rule_qwen3_non_stream_needs_enable_thinking_false():
    async with FakeDashScope(thinking_models=["my-thinker"]) as fake:
        missing = await ask(fake, "qwen3-32b", enable_thinking=None)
        on = await ask(fake, "my-thinker", enable_thinking=True)
        off = await ask(fake, "qwen3-32b")
        stream = await ask(fake, "qwen3-32b", enable_thinking=None, stream=True)
        chunks = [c async for c in stream]
    for r in (missing, on):
        assert (r.status_code, r.code) == (400, "InvalidParameter")
        assert r.message == "parameter.enable_thinking must be set to false for non-streaming calls"
    assert set(json.loads(content_of(off))) == VERDICT_KEYS
    (chunk,) = chunks  # one SSE event with the whole answer
    assert set(json.loads(content_of(chunk))) == VERDICT_KEYS


# --- faults ---------------------------------------------------------------------------------------


async def test_fault_429_rate_quota_and_allocation_quota():
    async with FakeDashScope() as fake:
        fake.script(Fault("429"), Fault("429", code="Throttling.AllocationQuota", message="quota used up"))
        rate, quota, ok = await ask(fake), await ask(fake), await ask(fake)
    assert (rate.status_code, rate.code) == (429, "Throttling.RateQuota")
    assert rate.message == "Requests rate limit exceeded, please try again later." and rate.request_id
    assert (quota.status_code, quota.code, quota.message) == (429, "Throttling.AllocationQuota", "quota used up")
    assert ok.status_code == 200


async def test_fault_fail_key_until_cleared_wins_over_script():
    async with FakeDashScope() as fake:
        fake.script(Answer("scripted"))
        fake.fail_key("sk-hot", Fault("429"))
        hot = [await ask(fake, api_key="sk-hot") for _ in range(3)]
        cold = await ask(fake)
        fake.clear_key("sk-hot")
        after = await ask(fake, api_key="sk-hot")
        assert fake.calls == 5
    assert [r.status_code for r in hot] == [429, 429, 429]
    assert content_of(cold) == "scripted"
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        (Fault("500"), 500, "RequestTimeOut", "Request timed out, please try again later."),
        (Fault("503"), 503, "ServiceUnavailable", "The service is temporarily unavailable, please try again later."),
        (Fault("400", message="Role must be user"), 400, "InvalidParameter", "Role must be user"),
        (Fault("401"), 401, "InvalidApiKey", "Invalid API-key provided."),
    ],
)
async def test_fault_json_errors_returned_not_raised(fault, status, code, message):
    async with FakeDashScope() as fake:
        fake.script(fault)
        resp = await ask(fake)
    assert (resp.status_code, resp.code) == (status, code)
    assert resp.output is None and resp.request_id
    assert resp.message == message
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_fault_html_502_sdk_code_unknown():
    async with FakeDashScope() as fake:
        fake.script(Fault("html"))
        resp = await ask(fake)
    assert (resp.status_code, resp.code) == (502, "Unknown")
    assert "<h1>502 Bad Gateway</h1>" in resp.message and resp.request_id == ""


async def test_fault_drop_sdk_retries_once_then_raises_server_disconnected():
    async with FakeDashScope() as fake:
        fake.script(Fault("drop"))  # one drop: the SDK resends once and gets the answer
        resp = await ask(fake)
        assert resp.status_code == 200 and fake.calls == 2
        fake.script(Fault("drop"), Fault("drop"))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await ask(fake)
        assert fake.calls == 4
        fake.fail_key(KEY, Fault("drop"))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await ask(fake)
        assert fake.calls == 6


async def test_fault_slow_beyond_request_timeout_raises_timeout_error():
    async with FakeDashScope() as fake:
        fake.script(Fault("slow", delay_s=3.0))
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await ask(fake, request_timeout=0.3)
        assert time.monotonic() - t0 < 2.0 and fake.calls == 1  # not resent
        fake.script(Fault("slow", delay_s=0.2))
        t0 = time.monotonic()
        resp = await ask(fake, request_timeout=5)
        assert time.monotonic() - t0 >= 0.2
    assert set(json.loads(content_of(resp))) == VERDICT_KEYS


# --- scripted answers -----------------------------------------------------------------------------


async def test_script_broken_answers_delivered_verbatim():
    async with FakeDashScope() as fake:
        fake.script(MALFORMED_JSON, TRUNCATED, EMPTY, verdict("reject", confidence=0.9, reasons=["x"]))
        malformed, truncated, empty, rejected = [await ask(fake) for _ in range(4)]
    assert content_of(malformed) == "{not json"
    assert content_of(truncated) == '{"decision": "appr' and truncated.output.choices[0].finish_reason == "length"
    assert content_of(empty) == ""
    assert json.loads(content_of(rejected)) == {
        "decision": "reject",
        "confidence": 0.9,
        "size_multiplier": 1.0,
        "reasons": ["x"],
        "risk_flags": [],
    }


async def test_script_tool_calls_malformed_arguments_verbatim_and_token_override():
    async with FakeDashScope() as fake:
        fake.script(
            ToolCalls([("no_action", '{"reason": '), ("adjust_position_size", {"symbol": "SOLUSDT", "multiplier": 2})]),
            Answer("{}", input_tokens=123, output_tokens=45),
        )
        calls_resp, tokens = await ask(fake, tools=TOOLS), await ask(fake)
    first, second = calls_resp.output.choices[0].message.tool_calls
    assert first["function"] == {"name": "no_action", "arguments": '{"reason": '}
    assert json.loads(second["function"]["arguments"]) == {"symbol": "SOLUSDT", "multiplier": 2}
    assert first["id"] != second["id"]
    assert (tokens.usage.input_tokens, tokens.usage.output_tokens, tokens.usage.total_tokens) == (123, 45, 168)


async def test_script_per_model_and_responder_replaced():
    async with FakeDashScope() as fake:
        fake.script(Answer("for max"), model="qwen-max")
        plus = await ask(fake, "qwen-plus")
        assert fake.pending() == 1
        mx = await ask(fake, "qwen-max")
        assert fake.pending() == 0

        def responder(req: FakeRequest) -> Answer:
            return Answer(f"{req.model}/{len(req.messages)}")

        fake.responder = responder
        custom = await ask(fake, "qwen-turbo")
        fake.script(Answer("scripted wins"))
        scripted = await ask(fake, "qwen-turbo")
    assert set(json.loads(content_of(plus))) == VERDICT_KEYS
    assert content_of(mx) == "for max"
    assert content_of(custom) == "qwen-turbo/2"
    assert content_of(scripted) == "scripted wins"


async def test_result_format_text_legacy_shape():
    async with FakeDashScope() as fake:
        fake.script(Answer("plain"))
        resp = await ask(fake, result_format="text", response_format=None)
    assert resp.status_code == 200 and resp.output.text == "plain" and resp.output.choices is None


# --- concurrency, records, lifecycle ---------------------------------------------------------------


async def test_latency_concurrent_requests_overlap():
    async with FakeDashScope(latency_s=0.3) as fake:
        t0 = time.monotonic()
        resps = await asyncio.gather(*(ask(fake, messages=msgs(i)) for i in range(10)))
        wall = time.monotonic() - t0
        assert fake.calls == 10
    assert all(r.status_code == 200 for r in resps)
    assert 0.3 <= wall < 1.0


async def test_records_parameters_key_headers_and_reset():
    async with FakeDashScope() as fake:
        await ask(fake, "qwen-plus")
        await ask(fake, "qwen-max", api_key="sk-other")
        await ask(fake, "qwen-max")
        first, second, _ = fake.requests
        assert fake.calls == 3 and fake.calls_by_model == {"qwen-plus": 1, "qwen-max": 2}
        fake.script(Answer("left over"))
        fake.reset()
        assert (fake.calls, fake.requests, fake.pending(), fake.calls_by_model) == (0, [], 0, {})
    p = first.parameters
    assert p["result_format"] == "message" and p["seed"] == 7 and p["temperature"] == 0
    assert p["enable_thinking"] is False and p["response_format"] == {"type": "json_object"}
    assert "request_timeout" not in p and "api_key" not in p
    assert (first.api_key, second.api_key) == (KEY, "sk-other")
    assert first.model == "qwen-plus" and first.messages == msgs() and first.stream is False
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.headers["x-dashscope-sdk-client"].startswith("python-sdk/")
    assert first.received_ns <= second.received_ns


async def test_base_http_api_url_module_override(monkeypatch):
    async with FakeDashScope() as fake:
        monkeypatch.setattr(dashscope, "base_http_api_url", fake.base_url)
        resp = await AioGeneration.call(
            model="qwen-plus", messages=msgs(), api_key=KEY, result_format="message", enable_thinking=False
        )
        assert fake.calls == 1
    assert set(json.loads(content_of(resp))) == VERDICT_KEYS


def test_in_thread_sync_generation_call():
    with FakeDashScope(latency_s=0.05).in_thread() as fake:
        fake.script(Fault("429"))
        kw: dict[str, Any] = {"api_key": KEY, "base_address": fake.base_url, "result_format": "message", "seed": 7}
        limited = Generation.call(model="qwen-plus", messages=msgs(), enable_thinking=False, **kw)
        resp = Generation.call(model="qwen-plus", messages=msgs(), enable_thinking=False, **kw)
        fake.script(Fault("slow", delay_s=2.0))
        with pytest.raises(requests.exceptions.ReadTimeout):
            Generation.call(model="qwen-plus", messages=msgs(), request_timeout=0.3, **kw)
        assert fake.calls == 3
        url = fake.base_url
    assert (limited.status_code, limited.code) == (429, "Throttling.RateQuota")
    assert set(json.loads(content_of(resp))) == VERDICT_KEYS
    with pytest.raises(requests.exceptions.ConnectionError):
        Generation.call(model="qwen-plus", messages=msgs(), **{**kw, "base_address": url})


async def test_stopped_server_connection_refused():
    async with FakeDashScope() as fake:
        assert (await ask(fake)).status_code == 200
    with pytest.raises(aiohttp.ClientConnectorError):
        await ask(fake)


def test_host_other_than_loopback_refused():
    for host in ("0.0.0.0", "localhost", "::1", "10.0.0.1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            FakeDashScope(host=host)
    with pytest.raises(ValueError, match="kind"):
        Fault("418")  # type: ignore[arg-type]


def test_cli_prints_base_url_and_stops_on_sigterm():
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    cmd = [sys.executable, "-m", "nertz_common.testing.fake_dashscope", "--latency", "0", "--keys", "k1,k2"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            name, _, url = line.partition("=")
            assert name == "DASHSCOPE_HTTP_BASE_URL" and url.startswith("http://127.0.0.1:") and url.endswith("/api/v1")
            kw: dict[str, Any] = {
                "model": "qwen-plus",
                "messages": msgs(),
                "base_address": url,
                "result_format": "message",
            }
            ok = Generation.call(api_key="k2", **kw)
            bad = Generation.call(api_key=KEY, **kw)
            assert ok.status_code == 200 and (bad.status_code, bad.code) == (401, "InvalidApiKey")
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
