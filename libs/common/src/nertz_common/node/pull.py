"""A lean JetStream pull consumer for the runners: one inbox, batched pull requests, a deque.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with ``next_msg``, which makes
a task, a UUID and an ``asyncio.wait_for`` timer per message: more CPU than the rest of a message's
handling in a runner. Here the messages of a pull request land, through the inbox subscription's
callback, in a deque that :meth:`Puller.fetch` drains; one request is kept outstanding, issued again
as soon as the last one is exhausted, so the next batch is on its way while the current one is
handled. Pull requests and their status replies are JetStream's (ADR-13): ``404`` (no messages,
``no_wait``), ``408`` (request expired), ``409`` (request ended by the server: leadership change,
consumer deleted, limits), ``503`` (no responders: JetStream unavailable), ``100`` (heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

#: margin beyond a request's expiry before it is taken as lost (its status reply never came), s
_LOST_AFTER_S = 1.0


class ConsumerGone(Exception):
    """The server ended a pull because the durable consumer was deleted."""


class Puller:
    """Pull the durable consumer ``durable`` of ``stream`` into :meth:`fetch`'s batches.

    Parameters
    ----------
    nc : nats.aio.client.Client
        A connected client.
    stream, durable : str
        The stream and the (existing) durable pull consumer.

    Use :meth:`start` once, :meth:`fetch` repeatedly, :meth:`stop` at the end; a new ``Puller``
    after a consumer reset (what was delivered to the old inbox and not fetched comes again).
    """

    def __init__(self, nc: NATS, stream: str, durable: str) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._msgs: deque[Msg] = deque()
        self._woken = asyncio.Event()
        self._sub: Subscription | None = None
        self._inbox = ""
        self._left = 0  # messages the outstanding request may still deliver (0: none outstanding)
        self._ends_at = 0.0  # monotonic time after which the outstanding request is taken as lost
        self._error: BaseException | None = None

    async def start(self) -> None:
        """Subscribe the inbox that pull requests are answered on."""
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000)

    async def stop(self) -> None:
        """Unsubscribe (messages still in flight to the inbox are dropped; unacked, they come again)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        hdrs = msg.headers
        status = hdrs.get("Status") if hdrs and not msg.data else None
        if status is None:
            self._msgs.append(msg)
            self._left -= 1
        elif status == "100":
            return  # a heartbeat
        else:
            self._left = 0  # the request ended (404 no messages, 408 expired, 409 ended, 503 unavailable)
            if status == "503":
                self._error = nats.errors.NoRespondersError()
            elif status == "409" and "deleted" in (hdrs or {}).get("Description", "").lower():
                self._error = ConsumerGone(hdrs.get("Description") if hdrs else "consumer deleted")
        self._woken.set()

    async def fetch(self, batch: int, timeout_s: float) -> list[Msg]:
        """Return up to ``batch`` messages in delivery order, waiting up to ``timeout_s`` for the first.

        Raises
        ------
        nats.errors.TimeoutError
            If nothing came within ``timeout_s``.
        nats.errors.NoRespondersError
            If JetStream did not answer the pull request (the server is starting, a leader election).
        nats.errors.ConnectionReconnectingError
            If the connection is down (the caller waits the outage out).
        ConsumerGone
            If the consumer was deleted.
        """
        if not self._msgs:
            await self._request(batch, timeout_s)
            deadline = time.monotonic() + timeout_s
            while not self._msgs and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise nats.errors.TimeoutError
                self._woken.clear()
                try:
                    await asyncio.wait_for(self._woken.wait(), left)
                except TimeoutError:
                    raise nats.errors.TimeoutError from None
                if not self._msgs and self._left <= 0 and self._error is None:
                    await self._request(batch, max(0.05, deadline - time.monotonic()))
            if self._error is not None and not self._msgs:
                error, self._error = self._error, None
                raise error
        n = min(batch, len(self._msgs))
        out = [self._msgs.popleft() for _ in range(n)]
        await self._request(batch, timeout_s)  # the next batch comes while this one is handled
        return out

    async def _request(self, batch: int, expires_s: float) -> None:
        """Ask for ``batch`` more messages unless a request is outstanding (or taken as lost)."""
        now = time.monotonic()
        if self._left > 0 and now < self._ends_at:
            return
        if not self._nc.is_connected:
            raise nats.errors.ConnectionReconnectingError
        self._left = batch
        self._ends_at = now + expires_s + _LOST_AFTER_S
        body = json.dumps({"batch": batch, "expires": int(expires_s * 1e9)}).encode()
        await self._nc.publish(self._subject, body, reply=self._inbox)
