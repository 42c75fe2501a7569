"""The base of the fake HTTP servers of the tests: aiohttp on 127.0.0.1 only, a free port by default.

A fake subclasses :class:`LoopbackServer` and implements :meth:`LoopbackServer.handle` (every method and
path goes there); ``async with Fake(...) as fake:`` starts it, :attr:`LoopbackServer.origin` is where
the SDK under test is pointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Self

from aiohttp import web

HOST = "127.0.0.1"


class LoopbackServer:
    """An aiohttp server on ``127.0.0.1:port`` that sends every request to :meth:`handle`.

    Parameters
    ----------
    host : str
        Must be ``127.0.0.1``.
    port : int
        Port to listen on; 0 picks a free one (known once started).

    Raises
    ------
    ValueError
        If ``host`` is not ``127.0.0.1`` or ``port`` is outside 0..65535.
    """

    def __init__(self, *, host: str = HOST, port: int = 0) -> None:
        if host != HOST:
            raise ValueError(f"expected host {HOST} (the fake listens on loopback only), was {host!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"expected 0 <= port <= 65535, was {port}")
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request (every method and path); subclasses implement it."""
        raise NotImplementedError

    async def start(self) -> Self:
        """Listen on ``127.0.0.1:port`` (a free port when 0) and return self.

        Raises
        ------
        RuntimeError
            If already started.
        OSError
            If the port cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]  # the bound port when 0 was asked
        return self

    async def stop(self) -> None:
        """Close every connection (requests in flight are cancelled) and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, timeout_s: float = 10.0) -> Iterator[Self]:
        """``with fake.in_thread() as fake:`` — serve from a background thread with its own event loop.

        For sync code (an SDK's blocking client, a test fixture without a loop). A subclass guards the
        state the calling thread reads while the server runs.

        Parameters
        ----------
        timeout_s : float
            Longest wait for the server to start or stop, s.

        Raises
        ------
        RuntimeError, OSError
            As :meth:`start`.
        TimeoutError
            If the server does not start within ``timeout_s``.
        """
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout_s)
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout_s)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            if not thread.is_alive():
                loop.close()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``.

        Raises
        ------
        RuntimeError
            If the port is still unknown (``port=0`` and not started).
        """
        if self.port == 0:
            raise RuntimeError(f"{type(self).__name__} has no port yet: start it first")
        return f"http://{self.host}:{self.port}"
