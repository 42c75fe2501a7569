"""A fake Telegram Bot API on 127.0.0.1 that the real ``python-telegram-bot`` talks to (tests and local runs).

What it serves
--------------
``/bot<token>/<method>`` (POST or GET; a form, multipart or JSON body, as the Bot API accepts) for the
methods the notifier calls through ``telegram.Bot(token, base_url=f"{fake.base_url}/bot")``:

- ``getMe``: the fake bot's user;
- ``sendMessage``: ``chat_id``, ``text`` (1..4096 characters), ``parse_mode`` (``HTML`` is checked the way
  Telegram checks it: only its tags, properly nested, and every ``<``, ``>``, ``&`` outside a tag an
  entity — else 400 "can't parse entities"), ``reply_parameters`` (JSON object, ``message_id`` and
  ``allow_sending_without_reply``) or the older ``reply_to_message_id``.

Answers are Telegram-shaped: ``{"ok": true, "result": {...}}`` with a message of incrementing
``message_id`` (per chat, from 1), ``chat``, ``date``, ``text`` (tags stripped, entities resolved, as
Telegram returns it) and ``reply_to_message``; errors ``{"ok": false, "error_code", "description"[,
"parameters": {"retry_after"}]}`` with the same HTTP status. A token other than the fake's is 401
"Unauthorized", an unknown method 404 "Not Found".

Faults: :meth:`FakeTelegram.inject` answers the next ``k`` calls of a method (or the calls from the
``at_call``-th on) with an error, e.g. ``inject(429, retry_after=1)``: ``"Too Many Requests: retry after
1"`` with ``parameters.retry_after``, which PTB raises as ``telegram.error.RetryAfter``.

Every call is recorded (:attr:`FakeTelegram.calls`, with its monotonic arrival time) and every accepted
message (:attr:`FakeTelegram.messages`, the HTML as sent).

Run it by hand: ``python -m nertz_common.testing.fake_telegram --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from nertz_common.testing.loopback import HOST, LoopbackServer

log = logging.getLogger("nertz.fake_telegram")

MAX_TEXT = 4096
BOT_USER: dict[str, Any] = {
    "id": 7_000_000_001,
    "is_bot": True,
    "first_name": "Nertz (fake)",
    "username": "nertz_fake_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
#: the tags Telegram's HTML parse mode knows (https://core.telegram.org/bots/api#html-style)
HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "span",
     "blockquote", "tg-emoji"}
)  # fmt: skip
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);|[<>&]")
_TAG = re.compile(r"<[^<>]*>")
#: parameters that are text as sent, never JSON to decode
_TEXT_PARAMS = frozenset({"text", "chat_id", "parse_mode"})


@dataclass(frozen=True, slots=True)
class Call:
    """One request the fake received.

    Attributes
    ----------
    method : str
        The Bot API method (``sendMessage``), as in the path.
    params : dict
        The decoded parameters (JSON-encoded form values decoded).
    status : int
        HTTP status answered.
    at : float
        ``time.monotonic()`` when the request arrived, s.
    """

    method: str
    params: dict[str, Any]
    status: int
    at: float


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the fake accepted.

    Attributes
    ----------
    message_id : int
        Its id in its chat (from 1).
    chat_id : str
        The chat it was sent to, as the request named it.
    html : str
        The text as sent (with its HTML tags when ``parse_mode`` was ``HTML``).
    parse_mode : str or None
    reply_to_message_id : int or None
        The message it answers, when that message exists.
    at : float
        ``time.monotonic()`` when it arrived, s.
    """

    message_id: int
    chat_id: str
    html: str
    parse_mode: str | None
    reply_to_message_id: int | None
    at: float


@dataclass(slots=True)
class _Fault:
    method: str
    code: int
    description: str
    retry_after: int | None
    left: int
    at_call: int | None
    hits: int = 0


@dataclass(slots=True)
class _Chat:
    info: dict[str, Any]
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)


class FakeTelegram(LoopbackServer):
    """The fake Bot API server: start it, point PTB at ``base_url + "/bot"``, read what it received.

    Parameters
    ----------
    token : str
        The one bot token it accepts.
    host : str
        Must be ``127.0.0.1``.
    port : int
        Port to listen on; 0 picks a free one.

    Raises
    ------
    ValueError
        If ``host`` is not ``127.0.0.1``, ``port`` is outside 0..65535 or ``token`` is empty.
    """

    def __init__(self, token: str, *, host: str = HOST, port: int = 0) -> None:
        super().__init__(host=host, port=port)
        if not token:
            raise ValueError("expected a non-empty bot token")
        self.token = token
        self.calls: list[Call] = []
        self.messages: list[Sent] = []
        self._chats: dict[str, _Chat] = {}
        self._faults: list[_Fault] = []
        self._counts: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        """The Bot API base, e.g. ``http://127.0.0.1:41234`` (``NERTZ_NOTIFIER__API_URL``).

        Raises
        ------
        RuntimeError
            If the server was started with ``port=0`` and is not listening yet.
        """
        return self.origin

    # --- faults -------------------------------------------------------------------------------------

    def inject(
        self,
        code: int = 429,
        *,
        k: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
        at_call: int | None = None,
        method: str = "sendMessage",
    ) -> None:
        """Answer ``k`` calls of ``method`` with the error ``code``: the next ``k``, or the ``at_call``-th
        (1-based, counting every call of ``method`` since the start) and the ``k - 1`` after it.

        Parameters
        ----------
        code : int
            HTTP status and ``error_code``: 429 (with ``retry_after``, default 1 s), 400, 403, 500...
        k : int
            How many calls get it.
        retry_after : int, optional
            Seconds Telegram asks to wait (``parameters.retry_after``); 429 only.
        description : str, optional
            Telegram's ``description``; a default per code ("Too Many Requests: retry after N").
        at_call : int, optional
            The first call (of ``method``) to fail; None = the next one.
        method : str

        Raises
        ------
        ValueError
            If ``k < 1``, ``at_call < 1`` or ``code`` is not an error status.
        """
        if k < 1 or (at_call is not None and at_call < 1) or not 400 <= code <= 599:
            raise ValueError(f"expected k >= 1, at_call >= 1 and an error status, was {k}, {at_call}, {code}")
        if code == 429 and retry_after is None:
            retry_after = 1
        default = {
            429: f"Too Many Requests: retry after {retry_after}",
            400: "Bad Request: chat not found",
            401: "Unauthorized",
            403: "Forbidden: bot was blocked by the user",
        }.get(code, "Internal Server Error")
        self._faults.append(_Fault(method, code, description or default, retry_after, k, at_call))

    def clear_faults(self) -> None:
        """Forget every injected fault not yet used."""
        self._faults.clear()

    # --- records ------------------------------------------------------------------------------------

    def calls_of(self, method: str = "sendMessage") -> list[Call]:
        """Return the calls of ``method`` in arrival order (failed ones included)."""
        return [c for c in self.calls if c.method == method]

    def message(self, message_id: int, chat_id: str | None = None) -> Sent:
        """Return the accepted message ``message_id`` (of ``chat_id``, default the only chat).

        Raises
        ------
        KeyError
            If no such message was accepted.
        """
        for m in self.messages:
            if m.message_id == message_id and (chat_id is None or m.chat_id == chat_id):
                return m
        raise KeyError(f"expected message {message_id} in chat {chat_id}, was none")

    # --- serving ------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one Bot API call (see the module docstring) and record it."""
        arrived = time.monotonic()
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return _answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = parts[0][3:], parts[1]
        params = await _params(request)
        status, body = self._answer(token, method, params)
        self.calls.append(Call(method, params, status, arrived))
        log.debug("fake_telegram.call method=%s status=%d", method, status)
        return _answer(status, body)

    def _answer(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return _error(401, "Unauthorized")
        handler = {"getMe": self._get_me, "sendMessage": self._send_message}.get(method)
        if handler is None:
            return _error(404, "Not Found")
        n = self._counts[method] = self._counts.get(method, 0) + 1
        fault = self._fault_for(method, n)
        if fault is not None:
            extra = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            return _error(fault.code, fault.description, extra)
        return handler(params)

    def _fault_for(self, method: str, n: int) -> _Fault | None:
        for f in self._faults:
            if f.method != method or f.left <= 0:
                continue
            if f.at_call is None or f.at_call <= n:
                f.left -= 1
                return f
        return None

    def _get_me(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": BOT_USER}

    def _send_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id = str(params.get("chat_id") or "")
        text = params.get("text")
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        plain = text
        if isinstance(parse_mode, str) and parse_mode.upper() == "HTML":
            problem = html_problem(text)
            if problem is not None:
                return _error(400, f"Bad Request: can't parse entities: {problem}")
            plain = html.unescape(_TAG.sub("", text))
        if len(plain) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        chat = self._chats.setdefault(chat_id, _Chat(_chat_info(chat_id)))
        reply_id, allow_without = _reply_of(params)
        replied = chat.messages.get(reply_id) if reply_id is not None else None
        if reply_id is not None and replied is None and not allow_without:
            return _error(400, "Bad Request: message to be replied not found")
        message_id = len(chat.messages) + 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": BOT_USER,
            "chat": chat.info,
            "date": int(time.time()),
            "text": plain,
        }
        if replied is not None:
            message["reply_to_message"] = replied
        chat.messages[message_id] = {k: v for k, v in message.items() if k != "reply_to_message"}
        self.messages.append(
            Sent(message_id, chat_id, text, parse_mode if isinstance(parse_mode, str) else None,
                 reply_id if replied is not None else None, time.monotonic())
        )  # fmt: skip
        return 200, {"ok": True, "result": message}


def html_problem(text: str) -> str | None:
    """Return why Telegram would refuse ``text`` in HTML parse mode, or None when it parses.

    Only Telegram's tags (:data:`HTML_TAGS`), closed in order; every ``<``, ``>`` and ``&`` outside a
    tag is an entity (``&lt;``, ``&gt;``, ``&amp;``, ``&quot;``, numeric).
    """
    stack: list[str] = []
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if token in ("<", ">", "&"):
            return f"unsupported start tag or unescaped {token!r} at byte offset {m.start()}"
        name = m.group(2)
        if name is None:
            continue  # an entity
        name = name.lower()
        if name not in HTML_TAGS:
            return f"unsupported start tag {name!r} at byte offset {m.start()}"
        if m.group(1):
            if not stack or stack[-1] != name:
                return f"unexpected end tag {name!r} at byte offset {m.start()}"
            stack.pop()
        else:
            stack.append(name)
    if stack:
        return f"can't find end tag corresponding to start tag {stack[-1]!r}"
    return None


def _chat_info(chat_id: str) -> dict[str, Any]:
    if chat_id.lstrip("-").isdigit():
        n = int(chat_id)
        kind = "private" if n > 0 else ("supergroup" if chat_id.startswith("-100") else "group")
        info: dict[str, Any] = {"id": n, "type": kind}
        if kind == "private":
            info["first_name"] = "Operator"
        else:
            info["title"] = "Nertz"
        return info
    return {"id": -1_001_000_000_000 - len(chat_id), "type": "channel", "title": chat_id, "username": chat_id[1:]}


def _reply_of(params: dict[str, Any]) -> tuple[int | None, bool]:
    rp = params.get("reply_parameters")
    if isinstance(rp, dict) and rp.get("message_id") is not None:
        return int(rp["message_id"]), bool(rp.get("allow_sending_without_reply", False))
    legacy = params.get("reply_to_message_id")
    if legacy is not None and str(legacy).lstrip("-").isdigit():
        return int(legacy), bool(params.get("allow_sending_without_reply", False))
    return None, False


async def _params(request: web.Request) -> dict[str, Any]:
    """Decode a Bot API request's parameters: query string, then a JSON, form or multipart body; form
    values holding JSON objects or arrays (PTB sends ``reply_parameters`` so) are decoded."""
    out: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    out.update(body)
        else:
            form = await request.post()
            out.update({k: v for k, v in form.items() if isinstance(v, str)})
    for k, v in list(out.items()):
        if k not in _TEXT_PARAMS and isinstance(v, str) and (v[:1] in ("{", "[") or v in ("true", "false")):
            with contextlib.suppress(ValueError):
                out[k] = json.loads(v)
    return out


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return code, body


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


# --- by hand --------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeTelegram(args.token, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"NERTZ_NOTIFIER__API_URL={fake.base_url}", flush=True)
        print(f"NERTZ_NOTIFIER__BOT_TOKEN={fake.token}", flush=True)
        shown = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            if args.echo:
                for m in fake.messages[shown:]:
                    reply = f" (reply to {m.reply_to_message_id})" if m.reply_to_message_id else ""
                    print(f"--- #{m.message_id} to {m.chat_id}{reply}\n{m.html}", flush=True)
                shown = len(fake.messages)
    log.info("fake_telegram.stopped calls=%d messages=%d", len(fake.calls), len(fake.messages))


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake Telegram Bot API until SIGINT/SIGTERM (to run the notifier against it by hand)."""
    p = argparse.ArgumentParser(
        prog="python -m nertz_common.testing.fake_telegram",
        description=(
            "A fake Telegram Bot API on 127.0.0.1 for tests and demos: getMe and sendMessage at "
            "/bot<token>/<method>, Telegram-shaped answers, HTML parse mode checked like Telegram's. Prints "
            "NERTZ_NOTIFIER__API_URL=... and NERTZ_NOTIFIER__BOT_TOKEN=... once listening, then serves until "
            "SIGINT/SIGTERM."
        ),
        epilog=(
            "example: python -m nertz_common.testing.fake_telegram --port 18443 --echo, then "
            "NERTZ_NOTIFIER__API_URL=http://127.0.0.1:18443 NERTZ_NOTIFIER__BOT_TOKEN=123:fake "
            "NERTZ_NOTIFIER__CHAT_ID=42 python -m nertz_notifier"
        ),
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (default 0 = any free port)")
    p.add_argument("--token", default="123:fake", help="the bot token it accepts (default 123:fake)")
    p.add_argument("--echo", action="store_true", help="print every accepted message on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log every call on stderr")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
