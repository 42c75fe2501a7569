"""What a DashScope text-generation call answered, read from the ``dashscope`` SDK's response.

Shared by the validator's Qwen client and the coin hunter's: both call ``AioGeneration.call`` with
``result_format="message"`` and record what came back (``../shared/docs/WIRE.md`` §5.4). Nothing here
imports the SDK: a response is read by its attributes (``status_code``, ``code``, ``message``,
``request_id``, ``usage``, ``output.choices[0]``), which the SDK fills from the HTTP reply, and a
response that lacks them reads as ``finish_reason="malformed"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Reply", "read_reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One attempt's outcome.

    Attributes
    ----------
    outcome : str
        ``ok`` (HTTP 200), ``http_400``/``401``/``403``/``404``/``429``, ``http_5xx``, ``http_other``;
        callers add ``timeout``, ``connection``, ``no_key``, ``budget`` for what never got a reply.
    status : int, optional
        HTTP status.
    code, message : str, optional
        DashScope's error ``code`` and ``message`` (the message cut to 300 characters).
    request_id : str, optional
        DashScope's request id.
    text : str, optional
        The assistant message's content, or its tool calls as JSON ``[{"name", "arguments"}]``.
    finish_reason : str, optional
        ``stop``, ``length``, ``tool_calls``; ``malformed`` for a 200 without a choice.
    tokens_in, tokens_out : int
        Token usage reported.
    """

    outcome: str
    status: int | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    text: str | None = None
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


def read_reply(resp: Any) -> Reply:
    """Read a ``GenerationResponse`` (never raises)."""
    status = int(getattr(resp, "status_code", 0) or 0)
    rid = getattr(resp, "request_id", None) or None
    if status != 200:
        if status >= 500:
            outcome = "http_5xx"
        elif status in (400, 401, 403, 404, 429):
            outcome = f"http_{status}"
        else:
            outcome = "http_other"
        message = (getattr(resp, "message", None) or "")[:300] or None
        return Reply(outcome, status, getattr(resp, "code", None) or None, message, rid)
    usage = getattr(resp, "usage", None) or {}
    tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    try:
        choice = resp.output.choices[0]
        msg = choice.message
    except (AttributeError, IndexError, KeyError, TypeError):
        return Reply("ok", status, None, None, rid, "", "malformed", tin, tout)
    finish = choice.get("finish_reason") if isinstance(choice, dict) else getattr(choice, "finish_reason", None)
    calls = msg.get("tool_calls") if isinstance(msg, dict) else getattr(msg, "tool_calls", None)
    if calls:
        text = json.dumps(
            [{"name": c["function"]["name"], "arguments": c["function"].get("arguments", "")} for c in calls]
        )
    else:
        content = msg.get("content") if isinstance(msg, dict) else getattr(msg, "content", None)
        text = content if isinstance(content, str) else json.dumps(content) if content is not None else ""
    return Reply("ok", status, None, None, rid, text, finish, tin, tout)
