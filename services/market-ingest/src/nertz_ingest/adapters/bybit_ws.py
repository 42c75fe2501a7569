"""pybit's public linear WebSocket as a raw-frame transport, bridged to asyncio.

pybit (``WebSocket(channel_type="linear")``) keeps the connection: it connects, pings, reconnects and
replays its subscriptions. Everything else is ours (WIRE.md §2.2):

- :class:`RawWebSocket` overrides pybit's ``_on_message`` so every text frame is handed over *as received*
  with its receive time (``time.time_ns()``, to the µs), before pybit parses it. pybit's own
  processing is skipped on purpose: it rebuilds books itself (unsorted, forced to ``"snapshot"``), dies
  on a delete of an unknown level, on invalid JSON and on a ``success:false`` ack, and raising in its
  thread kills the socket for good. It also overrides ``_connect`` to point pybit at a URL of our
  choice (the fake server in tests) and to report (re)connects.
- :class:`PublicFeed` owns one such connection from asyncio: it builds it (the constructor blocks, so in
  a thread), subscribes one topic per request (so one topic can be resubscribed alone), resubscribes a
  topic to get a fresh snapshot (``unsubscribe`` then ``subscribe`` with the topic's original
  ``req_id``, so pybit's replay-on-reconnect list stays right), and rebuilds the connection when pybit
  gave up.

Frames and connection news reach asyncio through ``loop.call_soon_threadsafe`` (pybit calls back on its
own thread), as :data:`Item` tuples, in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

from pybit.unified_trading import WebSocket

log = logging.getLogger("nertz.ingest.ws")

#: public market data WebSocket per BYBIT_ENV (WIRE.md §3.1: demo has no public stream; its market
#: data is mainnet's)
WS_URLS: dict[str, str] = {
    "mainnet": "wss://stream.bybit.com",
    "testnet": "wss://stream-testnet.bybit.com",
    "demo": "wss://stream.bybit.com",
}

T = TypeVar("T")
ConnStatus = Literal["connected", "reconnecting", "reconnected", "gave_up", "rebuilt"]
#: ``("frame", raw, recv_ns)`` or ``("status", ConnStatus, ns)``
Item: TypeAlias = tuple[str, str, int]


def recv_time_ns() -> int:
    """Receive time of a frame: wall clock, UNIX ns, truncated to the µs (what recordings keep)."""
    return time.time_ns() // 1000 * 1000


class RawWebSocket(WebSocket):
    """pybit's public ``WebSocket`` that hands every received frame, untouched, to ``on_frame``.

    Parameters
    ----------
    on_frame : callable(raw, recv_ns)
        Called on pybit's thread for every text frame (data, acks, pongs) with its receive time (UNIX ns).
        It must not block; whatever it raises is logged, never propagated (that would kill the socket).
    on_status : callable(status, ns)
        Called on pybit's thread: ``connected`` (first connect), ``reconnecting`` (before pybit
        reconnects, i.e. frames may have been lost), ``reconnected``, ``gave_up`` (pybit stopped trying).
        (:meth:`PublicFeed.rebuild` adds ``reconnecting`` and ``rebuilt`` around a new connection.)
    base_url : str, optional
        ``ws://host:port`` to use instead of Bybit's host (the path ``/v5/public/linear`` is kept).
    **kwargs
        pybit ``WebSocket`` arguments (``testnet``, ``ping_interval``, ``retries``, ...).
    """

    def __init__(
        self,
        on_frame: Callable[[str, int], None],
        on_status: Callable[[ConnStatus, int], None],
        *,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        # set before super().__init__, which connects at once
        self._base_ws_url = base_url.rstrip("/") if base_url else None
        self._frame_sink = on_frame
        self._status_sink = on_status
        self._connects = 0
        self.closing = False
        super().__init__("linear", **kwargs)

    def _connect(self, url: str) -> None:
        if self._base_ws_url and "{SUBDOMAIN}" in url:
            url = self._base_ws_url + url[url.index("/v5/") :]
        if self.closing:
            return
        again = self._connects > 0
        if again:
            self._status("reconnecting")
        try:
            super()._connect(url)
        except Exception:
            if again:
                self._status("gave_up")
            raise
        self._connects += 1
        if self.closing:  # closed while a reconnect was under way: do not keep a zombie connection
            with contextlib.suppress(Exception):
                super().exit()
            return
        self._status("reconnected" if again else "connected")

    def _on_message(self, message: str | bytes) -> None:
        recv_ns = recv_time_ns()
        if self.closing:
            return
        try:
            raw = message if isinstance(message, str) else message.decode("utf-8", "replace")
            self._frame_sink(raw, recv_ns)
        except Exception:  # never let anything escape into pybit's thread
            log.exception("ws.frame_sink_failed")

    def _status(self, status: ConnStatus) -> None:
        try:
            self._status_sink(status, time.time_ns())
        except Exception:
            log.exception("ws.status_sink_failed")

    def shutdown(self) -> None:
        """Close for good: no frames are handed over any more and no reconnect is made.

        (pybit's own ``exit`` is also what it calls before reconnecting, so it is left alone.)
        """
        self.closing = True
        self.exit()

    def subscribe_topic(self, topic: str, timeout_s: float = 10.0) -> None:
        """Subscribe one topic (one request, a fresh req_id) through pybit, which records it for replay.

        Raises
        ------
        ConnectionError
            If the socket is not connected within ``timeout_s`` (pybit's ``subscribe`` would wait forever).
        """
        deadline = time.monotonic() + timeout_s
        while not self.is_connected():
            if self.closing or time.monotonic() > deadline:
                raise ConnectionError(f"expected a connected socket to subscribe {topic}, was closed")
            time.sleep(0.05)
        self.subscribe(topic, _noop, "")  # topic.format(symbol="") is the topic itself

    def alive(self) -> bool:
        """True while connected or while pybit is still trying to (re)connect."""
        return not self.closing and (self.is_connected() or bool(getattr(self, "attempting_connection", False)))

    def send_text(self, text: str) -> None:
        """Send a text frame on the current socket.

        Raises
        ------
        websocket.WebSocketConnectionClosedException
            If the socket is closed (pybit's reconnect will replay the subscriptions).
        """
        self.ws.send(text)


def _noop(message: dict[str, Any]) -> None:  # pybit wants a callback per topic; frames bypass it
    pass


class PublicFeed:
    """One public linear connection to Bybit (through pybit), driven from asyncio.

    Parameters
    ----------
    topics : sequence of str
        Bybit topics (``orderbook.50.BTCUSDT``, ``publicTrade.BTCUSDT``, ``kline.1.BTCUSDT``,
        ``tickers.BTCUSDT``); one subscribe request each.
    put : callable(Item)
        Called on the event loop with every frame and status, in order.
    url : str
        ``wss://stream.bybit.com`` (from :data:`WS_URLS`) or an override such as ``ws://127.0.0.1:PORT``.
    testnet : bool
        pybit's ``testnet`` (only used when ``url`` is one of Bybit's hosts).
    ping_interval_s, ping_timeout_s : int
        WebSocket ping period and pong timeout, s (pybit's defaults 20 and 10).
    retries : int
        pybit's ``retries`` for its own reconnects (0 = forever). pybit 5.17.0 raises after its last
        attempt even when that attempt connected, so N allows N - 1 usable attempts and 1 is refused.

    Raises
    ------
    ValueError
        If ``retries`` is 1.
    """

    def __init__(
        self,
        topics: Sequence[str],
        put: Callable[[Item], None],
        *,
        url: str,
        testnet: bool = False,
        ping_interval_s: int = 20,
        ping_timeout_s: int = 10,
        retries: int = 10,
    ) -> None:
        self.topics = list(topics)
        self.url = url
        self._put = put
        if retries == 1:
            raise ValueError(
                "expected retries 0 or >= 2: pybit 5.17.0 gives up after its last attempt even when it connected"
            )
        self._retries = retries
        # the first connect is one attempt (our caller backs off between attempts): pybit's retries=2
        # means one usable attempt, because pybit raises after its last attempt even when it connected
        self._kwargs = dict(testnet=testnet, ping_interval=ping_interval_s, ping_timeout=ping_timeout_s, retries=2)
        self._override = None if url in WS_URLS.values() else url
        self._ws: RawWebSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lock = threading.Lock()

    # --- thread -> loop ---------------------------------------------------------------------------

    def _on_frame(self, raw: str, recv_ns: int) -> None:
        self._hand(("frame", raw, recv_ns))

    def _on_status(self, status: ConnStatus, ns: int) -> None:
        self._hand(("status", status, ns))

    def _hand(self, item: Item) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to hand over to
            loop.call_soon_threadsafe(self._put, item)

    # --- asyncio side -----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and subscribe every topic.

        Raises
        ------
        Exception
            Whatever pybit raises when it cannot connect (``WebSocketTimeoutException`` after its retries).
        """
        self._loop = asyncio.get_running_loop()
        ws = await in_thread(self._build)
        self._ws = ws
        try:
            for topic in self.topics:
                await in_thread(ws.subscribe_topic, topic)
        except Exception:
            await _exit(ws)
            raise

    def _build(self) -> RawWebSocket:
        ws = RawWebSocket(self._on_frame, self._on_status, base_url=self._override, **self._kwargs)
        ws.retries = self._retries  # what pybit's own reconnects use from now on
        return ws

    def alive(self) -> bool:
        """True while connected, or while pybit is still trying to reconnect."""
        return self._ws is not None and self._ws.alive()

    def connected(self) -> bool:
        """True while the socket is open."""
        return self._ws is not None and not self._ws.closing and self._ws.is_connected()

    async def resubscribe(self, topic: str) -> bool:
        """Ask the server for a fresh snapshot of ``topic``: ``unsubscribe`` then ``subscribe``.

        Both frames carry the req_id of the topic's original subscription, so pybit's list of
        subscriptions (replayed on reconnect) is unchanged. Returns False when the socket is closed (a
        reconnect resubscribes anyway) or the topic is unknown.
        """
        ws = self._ws
        if ws is None or not ws.is_connected():
            return False
        req_id = next(
            (rid for rid, msg in list(ws.subscriptions.items()) if topic in json.loads(msg)["args"]),
            None,
        )
        if req_id is None:
            log.error("ws.resubscribe_unknown_topic", extra={"topic": topic})
            return False
        unsub = json.dumps({"op": "unsubscribe", "req_id": req_id, "args": [topic]})
        sub = json.dumps({"op": "subscribe", "req_id": req_id, "args": [topic]})
        try:
            await in_thread(self._send_pair, ws, unsub, sub, timeout_s=10.0)
        except Exception as e:
            log.warning("ws.resubscribe_failed", extra={"topic": topic, "error": repr(e)})
            return False
        return True

    async def subscribe(self, topics: Sequence[str]) -> list[str]:
        """Subscribe more topics on the open connection, one request each (pybit records them, so its
        reconnect replays them; a rebuilt connection subscribes them too).

        Returns
        -------
        list of str
            The topics that could not be subscribed now (no open socket within pybit's wait, s): a
            rebuilt connection will subscribe them.
        """
        new = [t for t in dict.fromkeys(topics) if t not in self.topics]
        self.topics.extend(new)
        failed: list[str] = []
        for topic in new:
            ws = self._ws
            try:
                if ws is None:
                    raise ConnectionError("no connection")
                await in_thread(ws.subscribe_topic, topic, timeout_s=15.0)
            except Exception as e:
                log.warning("ws.subscribe_failed", extra={"topic": topic, "error": repr(e)})
                failed.append(topic)
        return failed

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        """Unsubscribe topics for good: out of pybit's list (no reconnect replays them), out of a rebuilt
        connection's, and an ``unsubscribe`` request sent on the open connection with each topic's
        original ``req_id`` (frames already under way may still arrive)."""
        gone = set(topics)
        self.topics = [t for t in self.topics if t not in gone]
        ws = self._ws
        if ws is not None and gone:
            try:
                await in_thread(self._forget, ws, gone, timeout_s=10.0)
            except Exception as e:  # the topics are out of pybit's list; the server stops at the next connection
                log.warning("ws.unsubscribe_failed", extra={"topics": sorted(gone), "error": repr(e)})

    def _forget(self, ws: RawWebSocket, gone: set[str]) -> None:
        with self._lock:
            keep: dict[str, str] = {}
            drop: list[tuple[str, list[str]]] = []
            for req_id, msg in list(ws.subscriptions.items()):
                args = json.loads(msg)["args"]
                if gone.intersection(args):
                    drop.append((req_id, args))
                else:
                    keep[req_id] = msg
            ws.subscriptions = keep  # a new dict: pybit's reconnect may be iterating the old one
            for topic in gone:
                ws.callback_directory.pop(topic, None)
            if ws.is_connected():
                for req_id, args in drop:
                    ws.send_text(json.dumps({"op": "unsubscribe", "req_id": req_id, "args": args}))

    def _send_pair(self, ws: RawWebSocket, first: str, second: str) -> None:
        with self._lock:
            ws.send_text(first)
            ws.send_text(second)

    async def rebuild(self) -> None:
        """Drop the current connection (if any) and open a new one with every subscription.

        Raises
        ------
        Exception
            Whatever :meth:`connect` raises.
        """
        old, self._ws = self._ws, None
        if old is not None:
            await _exit(old)
        self._put(("status", "reconnecting", time.time_ns()))
        await self.connect()
        self._put(("status", "rebuilt", time.time_ns()))

    async def close(self) -> None:
        """Close the connection; nothing is handed over afterwards."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await _exit(ws)


async def _exit(ws: RawWebSocket, timeout_s: float = 10.0) -> None:
    ws.closing = True
    try:
        await in_thread(ws.shutdown, timeout_s=timeout_s)
    except Exception as e:  # a socket that will not close is abandoned (daemon thread)
        log.warning("ws.exit_failed", extra={"error": repr(e)})


async def in_thread(fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
    """Run a blocking pybit call in a daemon thread and await its result.

    Not ``asyncio.to_thread``: pybit calls can block for a long time (connecting with retries, closing
    a stuck socket), and the default executor's threads are joined when the loop closes.

    Raises
    ------
    TimeoutError
        If ``timeout_s`` passes first (the thread is abandoned).
    Exception
        Whatever ``fn`` raises.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as e:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, False, e)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, name=f"pybit-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    if timeout_s is None:
        return await fut
    return await asyncio.wait_for(fut, timeout_s)
