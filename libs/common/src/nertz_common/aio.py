"""``asyncio.run`` for coroutines that return large values.

On CPython 3.11, ``asyncio.Runner.run`` ends with ``signal.getsignal(SIGINT)``, which fails to map its
own handler (a ``functools.partial`` holding the main task) to the ``Handlers`` enum and builds the
error message with ``repr`` of that partial: the task, and so its *result*. A coroutine that returns a
read log of 263k records spent 4.5 s there (measured). :func:`run` returns the value through a box
instead, so the task's result is None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new event loop (like ``asyncio.run``) and return its value."""
    box: list[T] = []

    async def boxed() -> None:
        box.append(await coro)

    asyncio.run(boxed())
    return box[0]
