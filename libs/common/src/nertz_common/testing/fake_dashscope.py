"""A fake DashScope (Alibaba Qwen) text-generation server on 127.0.0.1 that the real ``dashscope`` SDK talks
to (tests and local runs only).

Shaped after ``../shared/docs/WIRE.md`` §5: the request the SDK sends (§5.3), the reply and error bodies
and how the SDK maps them (§5.4), and the fake checklist (§5.6).

What it serves
--------------
- ``POST /api/v1/services/aigc/text-generation/generation``: the path ``dashscope.Generation`` and
  ``dashscope.AioGeneration`` post to when ``base_address`` (or ``dashscope.base_http_api_url``, or env
  ``DASHSCOPE_HTTP_BASE_URL`` before the SDK is imported) is :attr:`FakeDashScope.base_url`. The body is
  ``{"model", "input": {"messages": [...]}, "parameters": {...}}``.
- Auth: ``Authorization: Bearer <key>``; no key → 401 ``InvalidApiKey`` "No API-key provided.", a key
  not in ``keys`` → 401 "Invalid API-key provided.".
- The Qwen3 hybrid-thinking rule: a non-streaming call to a thinking model (name starting with
  ``qwen3``, or in ``thinking_models``) without ``enable_thinking`` exactly ``false`` → 400
  ``InvalidParameter``.
- Success (HTTP 200, ``application/json``): ``{"output": {"choices": [{"finish_reason", "message":
  {"role": "assistant", "content"[, "tool_calls"]}}]}, "usage": {"input_tokens", "output_tokens",
  "total_tokens"}, "request_id"}`` with ``result_format="message"``; the legacy ``{"output": {"text",
  "finish_reason"}}`` otherwise. A streaming request (``Accept: text/event-stream``) gets the same
  content as one SSE event.
- Errors: ``{"code", "message", "request_id"}`` with ``Content-Type: application/json``, except the
  ``html`` fault (a 502 page in ``text/html``) and ``drop`` (the TCP connection closed, no reply).

Who answers
-----------
In this order: a missing or refused key (401); a reply set for the request's key (:meth:`FakeDashScope.fail_key`);
a malformed body or the thinking rule (400); the next scripted reply (:meth:`FakeDashScope.script`);
else :attr:`FakeDashScope.responder`, by default :func:`default_reply`, which decides deterministically
from ``(model, messages)``: a verdict JSON (about one in four rejects) or, when tools are offered, one
tool call. Replies are :class:`Answer`, :class:`ToolCalls` or :class:`Fault`.

How the SDK (2.0.2) reacts to each fault, so tests can assert it: HTTP errors are *returned* (``status_code``,
``code``, ``message`` filled from the JSON body); ``html`` gives ``status_code=502, code="Unknown"`` and the
page as ``message``; ``drop`` raises ``aiohttp.ServerDisconnectedError`` (``AioGeneration``) or
``requests.exceptions.ConnectionError`` (``Generation``) — but the SDK resends once on a connection error,
so one scripted drop is answered by the retry: use two, or :meth:`FakeDashScope.fail_key`; a reply slower
than ``request_timeout`` raises ``TimeoutError`` (async) or ``requests.exceptions.ReadTimeout`` (sync).

Example
-------
>>> async with FakeDashScope(latency_s=0.1) as fake:  # doctest: +SKIP
...     fake.script(Fault("429"), Answer("{not json"))
...     resp = await AioGeneration.call(model="qwen-plus", messages=msgs, api_key="sk-test",
...                                     base_address=fake.base_url, result_format="message")

Run it by hand (``python -m nertz_common.testing.fake_dashscope --help``); it prints
``DASHSCOPE_HTTP_BASE_URL=...`` for the validator to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from aiohttp import web

from nertz_common.testing.loopback import HOST, LoopbackServer

log = logging.getLogger("nertz.fake_dashscope")

API_PREFIX = "/api/v1"
GENERATION_PATH = f"{API_PREFIX}/services/aigc/text-generation/generation"
SSE_CONTENT_TYPE = "text/event-stream"

FaultKind: TypeAlias = Literal["429", "401", "400", "500", "503", "html", "drop", "slow"]

#: fault kind -> (HTTP status, default code, default message); WIRE.md §5.4 error table
_ERRORS: dict[str, tuple[int, str, str]] = {
    "429": (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    "401": (401, "InvalidApiKey", "Invalid API-key provided."),
    "400": (400, "InvalidParameter", "The request parameter is invalid."),
    "500": (500, "RequestTimeOut", "Request timed out, please try again later."),
    "503": (503, "ServiceUnavailable", "The service is temporarily unavailable, please try again later."),
}
_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>fake-dashscope</center>\r\n</body>\r\n</html>\r\n"
)
NO_KEY_MESSAGE = "No API-key provided."
THINKING_MESSAGE = "parameter.enable_thinking must be set to false for non-streaming calls"
_RID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "nertz:fake_dashscope")


# --- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful text reply: ``content`` is sent verbatim as the assistant message.

    Attributes
    ----------
    content : str
        The message content (JSON mode: a JSON document as a string; malformed on purpose if wanted).
    finish_reason : str
        ``stop`` (default), ``length`` (truncated by ``max_tokens``) or ``null``.
    delay_s : float
        Extra delay before the reply is sent, s (added to the server's ``latency_s``).
    input_tokens, output_tokens : int or None
        Token counts reported in ``usage``; None = derived from the lengths (chars // 4, at least 1).
    """

    content: str
    finish_reason: str = "stop"
    delay_s: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """A reply with ``finish_reason="tool_calls"`` and one ``tool_calls`` entry per ``(name, arguments)``.

    Attributes
    ----------
    calls : list of (str, dict or str)
        Function name and arguments. A dict is sent as its JSON string (the real API's shape); a str
        is sent verbatim (to test malformed arguments).
    delay_s : float
        Extra delay before the reply is sent, s.
    """

    calls: list[tuple[str, dict[str, Any] | str]]
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure instead of an answer.

    Attributes
    ----------
    kind : {"429", "401", "400", "500", "503", "html", "drop", "slow"}
        ``429``: ``Throttling.RateQuota`` (override ``code``, e.g. ``Throttling.AllocationQuota``);
        ``401``: ``InvalidApiKey``; ``400``: ``InvalidParameter``; ``500``: ``RequestTimeOut``;
        ``503``: ``ServiceUnavailable`` — each a JSON error body with that HTTP status. ``html``: HTTP
        502 with a ``text/html`` page; ``drop``: the TCP connection is closed without a reply;
        ``slow``: wait ``delay_s`` and then answer as the responder would.
    delay_s : float
        Delay before the fault (or, for ``slow``, before the answer), s.
    code, message : str or None
        Override the error body's ``code`` / ``message`` (JSON kinds only).

    Raises
    ------
    ValueError
        If ``kind`` is not one of the kinds above, or ``delay_s`` is negative.
    """

    kind: FaultKind
    delay_s: float = 0.0
    code: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"expected a fault kind in {get_args(FaultKind)}, was {self.kind!r}")
        if self.delay_s < 0:
            raise ValueError(f"expected delay_s >= 0, was {self.delay_s}")


Reply: TypeAlias = Answer | ToolCalls | Fault

#: ready-made broken answers: malformed JSON, cut off by ``max_tokens``, empty
MALFORMED_JSON = Answer("{not json")
TRUNCATED = Answer('{"decision": "appr', finish_reason="length")
EMPTY = Answer("")


def verdict(
    decision: Literal["approve", "reject"] = "approve",
    *,
    confidence: float = 0.8,
    size_multiplier: float = 1.0,
    reasons: Sequence[str] = ("fake: scripted",),
    risk_flags: Sequence[str] = (),
    delay_s: float = 0.0,
) -> Answer:
    """Return an :class:`Answer` whose content is the validator's verdict JSON with these values.

    Parameters
    ----------
    decision : {"approve", "reject"}
    confidence : float
        In [0, 1] (not checked: a test may send an out-of-range value on purpose).
    size_multiplier : float
        Fraction of the intent's size.
    reasons, risk_flags : sequence of str
    delay_s : float
        Extra delay of the reply, s.
    """
    doc = {
        "decision": decision,
        "confidence": confidence,
        "size_multiplier": size_multiplier,
        "reasons": list(reasons),
        "risk_flags": list(risk_flags),
    }
    return Answer(json.dumps(doc), delay_s=delay_s)


def default_reply(model: str, messages: list[dict[str, Any]], parameters: dict[str, Any]) -> Reply:
    """The fake's deterministic answer: a pure function of ``(model, messages)`` and the offered tools.

    ``h = sha256(model + canonical JSON of messages)``. The last user message is parsed as JSON when
    it can be (the validator sends a JSON document). With ``parameters["tools"]``: one tool call,
    ``no_action`` ``{"reason": ...}`` if ``h[0]`` is even, else ``adjust_position_size``
    ``{"symbol": <the document's symbol or intent.symbol, default BTCUSDT>, "multiplier": 0.5}``; a
    name not offered is replaced by the first offered tool with arguments ``{}``. Without tools: the
    verdict JSON ``{"decision", "confidence", "size_multiplier", "reasons", "risk_flags"}``, reject iff
    ``h[1] % 4 == 0``, confidence in [0.55, 0.95] (2 decimals), size multiplier 1.0 or 0.5.

    Parameters
    ----------
    model : str
        The model name (another name gives other decisions).
    messages : list of dict
        The chat messages (``role``, ``content``) as sent.
    parameters : dict
        The request's ``parameters``; only ``tools`` is read.

    Returns
    -------
    Answer or ToolCalls
    """
    h = hashlib.sha256((model + _canonical(messages)).encode()).digest()
    doc = _last_user_doc(messages)
    offered = _tool_names(parameters.get("tools"))
    if offered:
        args: dict[str, Any]
        if h[0] % 2 == 0:
            name, args = "no_action", {"reason": "fake: performance within bounds"}
        else:
            name, args = "adjust_position_size", {"symbol": _symbol_of(doc), "multiplier": 0.5}
        if name not in offered:
            name, args = offered[0], {}
        return ToolCalls([(name, args)])
    reject = h[1] % 4 == 0
    body = {
        "decision": "reject" if reject else "approve",
        "confidence": round(0.55 + 0.4 * h[2] / 255, 2),
        "size_multiplier": 0.5 if h[3] % 4 == 0 else 1.0,
        "reasons": [f"fake {model}: {'hash veto' if reject else 'no objection'} ({h[:4].hex()})"],
        "risk_flags": [],
    }
    return Answer(json.dumps(body))


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One generation request the fake received (faulted ones included).

    Attributes
    ----------
    model : str
        ``model`` of the body ("" if the body had none).
    messages : list of dict
        ``input.messages``.
    parameters : dict
        ``parameters`` (``result_format``, ``seed``, ``enable_thinking``, ``tools``, ...).
    api_key : str or None
        The bearer key, None when no ``Authorization: Bearer`` header came.
    headers : dict of str
        The HTTP headers (a repeated header keeps its last value).
    stream : bool
        True for an SSE request (``Accept: text/event-stream`` or ``X-DashScope-SSE: enable``).
    received_ns : int
        Wall-clock arrival time, UNIX ns.
    """

    model: str
    messages: list[dict[str, Any]]
    parameters: dict[str, Any]
    api_key: str | None
    headers: dict[str, str]
    stream: bool
    received_ns: int


Responder: TypeAlias = Callable[[FakeRequest], "Reply | Awaitable[Reply]"]


def _default_responder(req: FakeRequest) -> Reply:
    return default_reply(req.model, req.messages, req.parameters)


# --- the server -----------------------------------------------------------------------------------


class FakeDashScope(LoopbackServer):
    """The fake DashScope server: start it, point the SDK at :attr:`base_url`, script it.

    Parameters
    ----------
    keys : iterable of str, optional
        The accepted API keys; None accepts any non-empty key.
    latency_s : float
        Added to every reply (faults included), s; an ``asyncio.sleep``, so concurrent requests overlap.
    thinking_models : iterable of str
        Model names under the hybrid-thinking rule besides those starting with ``qwen3``.
    host : str
        Must be ``127.0.0.1``.
    port : int
        Port to listen on; 0 picks a free one.

    Attributes
    ----------
    responder : callable
        ``FakeRequest -> Reply`` (or an awaitable of one), asked when no scripted or key reply applies;
        :func:`default_reply` by default. Runs on the server's event loop (its thread with :meth:`in_thread`).
    latency_s : float
        May be changed while running.

    Raises
    ------
    ValueError
        If ``host`` is not ``127.0.0.1``, ``port`` is outside 0..65535 or ``latency_s`` is negative.
    """

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        latency_s: float = 0.0,
        thinking_models: Iterable[str] = (),
        host: str = HOST,
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        if latency_s < 0:
            raise ValueError(f"expected latency_s >= 0, was {latency_s}")
        self.keys: frozenset[str] | None = None if keys is None else frozenset(keys)
        self.latency_s = latency_s
        self.thinking_models = frozenset(thinking_models)
        self.responder: Responder = _default_responder
        self._lock = threading.Lock()
        self._script: list[tuple[str | None, Reply]] = []
        self._key_replies: dict[str, Reply] = {}
        self._requests: list[FakeRequest] = []
        self._calls_by_model: Counter[str] = Counter()
        self._tool_call_ids = 0

    @property
    def base_url(self) -> str:
        """The SDK's base address, e.g. ``http://127.0.0.1:41234/api/v1`` (``base_address=``).

        Raises
        ------
        RuntimeError
            If the server was not started with ``port=0`` and no port is known yet.
        """
        if self.port == 0:
            raise RuntimeError("FakeDashScope has no port yet: start it first")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # --- scripting ----------------------------------------------------------------------------------

    def script(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies for the next requests, first in first out.

        Parameters
        ----------
        *replies : Answer, ToolCalls or Fault
        model : str, optional
            Only requests for this model take these replies (others pass them by).

        Raises
        ------
        TypeError
            If a reply is not an Answer, ToolCalls or Fault.
        """
        for r in replies:
            if not isinstance(r, Answer | ToolCalls | Fault):
                raise TypeError(f"expected an Answer, ToolCalls or Fault, was {type(r).__name__}")
        with self._lock:
            self._script.extend((model, r) for r in replies)

    def fail_key(self, key: str, reply: Reply) -> None:
        """Answer every request authenticated with ``key`` with ``reply`` (e.g. ``Fault("429")``) until
        :meth:`clear_key`. Checked after authentication, before any scripted reply."""
        with self._lock:
            self._key_replies[key] = reply

    def clear_key(self, key: str) -> None:
        """Stop :meth:`fail_key` for ``key`` (no error if it was not set)."""
        with self._lock:
            self._key_replies.pop(key, None)

    def pending(self) -> int:
        """Return the number of scripted replies not yet taken."""
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget scripted and key replies, the request records and the counters (not the responder)."""
        with self._lock:
            self._script.clear()
            self._key_replies.clear()
            self._requests.clear()
            self._calls_by_model.clear()
            self._tool_call_ids = 0

    # --- records ------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[FakeRequest]:
        """Every generation request received, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        """The number of generation requests received, faulted and refused ones included."""
        with self._lock:
            return len(self._requests)

    @property
    def calls_by_model(self) -> Counter[str]:
        """Generation requests per model name (a copy)."""
        with self._lock:
            return Counter(self._calls_by_model)

    # --- serving ------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.rstrip("/") != GENERATION_PATH:
            return _error(404, "InvalidURL", f"the fake serves only POST {GENERATION_PATH}, was {request.path}", "")
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", f"expected POST, was {request.method}", "")
        received = time.time_ns()
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req, problem = _parse(body, request, received)
        with self._lock:
            self._requests.append(req)
            self._calls_by_model[req.model] += 1
            n = len(self._requests)
            reply = self._decide(req, problem)
        rid = str(uuid.uuid5(_RID_NAMESPACE, f"{_canonical([req.model, req.messages, req.parameters])}#{n}"))
        delay = self.latency_s
        if reply is None:
            reply = await self._respond(req)
        if isinstance(reply, Fault) and reply.kind == "slow":
            delay += reply.delay_s
            reply = await self._respond(req)
            if isinstance(reply, Fault) and reply.kind == "slow":
                reply = _default_responder(req)
        delay += reply.delay_s
        log.debug(
            "fake_dashscope.request n=%d model=%s reply=%s delay_s=%.3f", n, req.model, type(reply).__name__, delay
        )
        if delay > 0:
            await asyncio.sleep(delay)
        return self._render(request, req, reply, rid)

    def _decide(self, req: FakeRequest, problem: str | None) -> Reply | None:
        # under self._lock; None = ask the responder
        if not req.api_key:
            return Fault("401", message=NO_KEY_MESSAGE)
        if self.keys is not None and req.api_key not in self.keys:
            return Fault("401")
        if req.api_key in self._key_replies:
            return self._key_replies[req.api_key]
        if problem is not None:
            return Fault("400", message=problem)
        thinking = req.model.startswith("qwen3") or req.model in self.thinking_models
        if thinking and not req.stream and req.parameters.get("enable_thinking") is not False:
            return Fault("400", message=THINKING_MESSAGE)
        for i, (model, reply) in enumerate(self._script):
            if model is None or model == req.model:
                del self._script[i]
                return reply
        return None

    async def _respond(self, req: FakeRequest) -> Reply:
        reply = self.responder(req)
        if inspect.isawaitable(reply):
            reply = await reply
        if not isinstance(reply, Answer | ToolCalls | Fault):
            raise TypeError(f"expected the responder to return an Answer, ToolCalls or Fault, was {reply!r}")
        return reply

    def _render(self, request: web.Request, req: FakeRequest, reply: Reply, rid: str) -> web.StreamResponse:
        if isinstance(reply, Fault):
            if reply.kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=499)  # never reaches the client
            if reply.kind == "html":
                return web.Response(status=502, text=_HTML_502, content_type="text/html")
            status, code, text = _ERRORS[reply.kind]
            return _error(status, reply.code or code, reply.message or text, rid)
        input_tokens = max(1, len(_canonical(req.messages)) // 4)
        if isinstance(reply, Answer):
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            finish = reply.finish_reason
            output_tokens = max(1, len(reply.content) // 4)
            input_tokens = reply.input_tokens if reply.input_tokens is not None else input_tokens
            output_tokens = reply.output_tokens if reply.output_tokens is not None else output_tokens
        else:
            calls: list[dict[str, Any]] = []
            with self._lock:
                for name, args in reply.calls:
                    self._tool_call_ids += 1
                    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                    calls.append(
                        {
                            "id": f"call_{self._tool_call_ids}",
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    )
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            finish = "tool_calls"
            output_tokens = max(1, sum(len(c["function"]["arguments"]) for c in calls) // 4)
        if isinstance(reply, ToolCalls) or req.parameters.get("result_format") == "message":
            output: dict[str, Any] = {"choices": [{"finish_reason": finish, "message": message}]}
        else:
            output = {"text": message["content"], "finish_reason": finish}
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        body = _dumps({"output": output, "usage": usage, "request_id": rid})
        if req.stream:
            return web.Response(
                text=f"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{body}\n\n", content_type=SSE_CONTENT_TYPE
            )
        return web.Response(text=body, content_type="application/json")


# --- helpers --------------------------------------------------------------------------------------


def _parse(body: Any, request: web.Request, received_ns: int) -> tuple[FakeRequest, str | None]:
    auth = request.headers.get("Authorization", "")
    scheme, _, key = auth.partition(" ")
    api_key = key.strip() if scheme.lower() == "bearer" else None
    accept = request.headers.get("Accept", "")
    stream = SSE_CONTENT_TYPE in accept or request.headers.get("X-DashScope-SSE", "").lower() == "enable"
    problem: str | None = None
    model = ""
    messages: list[dict[str, Any]] = []
    parameters: dict[str, Any] = {}
    if not isinstance(body, dict):
        problem = "Request body must be a JSON object."
    else:
        raw_model = body.get("model")
        model = raw_model if isinstance(raw_model, str) else ""
        inp = body.get("input")
        raw_messages = inp.get("messages") if isinstance(inp, dict) else None
        raw_parameters = body.get("parameters", {})
        if not model:
            problem = "Model not specified."
        elif (
            not isinstance(raw_messages, list) or not raw_messages or not all(isinstance(m, dict) for m in raw_messages)
        ):
            problem = "input.messages must be a non-empty list of messages."
        elif not isinstance(raw_parameters, dict):
            problem = "parameters must be an object."
        if isinstance(raw_messages, list):
            messages = [m for m in raw_messages if isinstance(m, dict)]
        if isinstance(raw_parameters, dict):
            parameters = raw_parameters
    req = FakeRequest(
        model=model,
        messages=messages,
        parameters=parameters,
        api_key=api_key,
        headers=dict(request.headers),
        stream=stream,
        received_ns=received_ns,
    )
    return req, problem


def _error(status: int, code: str, message: str, rid: str) -> web.Response:
    return web.Response(
        status=status,
        text=_dumps({"code": code, "message": message, "request_id": rid}),
        content_type="application/json",
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _last_user_doc(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                try:
                    doc = json.loads(content)
                except ValueError:
                    return {}
                return doc if isinstance(doc, dict) else {}
            return {}
    return {}


def _symbol_of(doc: dict[str, Any]) -> str:
    intent = doc.get("intent")
    for candidate in (doc.get("symbol"), intent.get("symbol") if isinstance(intent, dict) else None):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "BTCUSDT"


def _tool_names(tools: Any) -> list[str]:
    names: list[str] = []
    if isinstance(tools, list):
        for t in tools:
            fn = t.get("function") if isinstance(t, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if isinstance(name, str) and name:
                names.append(name)
    return names


# --- by hand --------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    keys = [k for k in args.keys.split(",") if k] if args.keys else None
    fake = FakeDashScope(keys=keys, latency_s=args.latency, thinking_models=args.thinking_models, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"DASHSCOPE_HTTP_BASE_URL={fake.base_url}", flush=True)
        await stop.wait()
    log.info("fake_dashscope.stopped calls=%d by_model=%s", fake.calls, dict(fake.calls_by_model))


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake DashScope until SIGINT/SIGTERM (for running the validator against it by hand)."""
    p = argparse.ArgumentParser(
        prog="python -m nertz_common.testing.fake_dashscope",
        description=(
            "A fake DashScope (Qwen) text-generation server on 127.0.0.1 for tests and demos. It answers "
            "POST /api/v1/services/aigc/text-generation/generation deterministically per (model, messages): "
            "a verdict JSON, or one tool call when tools are offered. Prints DASHSCOPE_HTTP_BASE_URL=... on "
            "stdout once listening, then serves until SIGINT/SIGTERM."
        ),
        epilog=(
            "example: python -m nertz_common.testing.fake_dashscope --port 18090 --latency 1.5, then "
            "DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:18090/api/v1 DASHSCOPE_API_KEY=sk-test python -m nertz_validator"
        ),
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (default 0 = any free port)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply (default 0)")
    p.add_argument("--keys", default="", help="comma-separated accepted API keys (default: any non-empty key)")
    p.add_argument(
        "--thinking-models",
        nargs="*",
        default=[],
        help="models under the enable_thinking=false rule besides qwen3* (default: none)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every request on stderr")
    args = p.parse_args(argv)
    if args.latency < 0:
        p.error(f"expected --latency >= 0, was {args.latency}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
