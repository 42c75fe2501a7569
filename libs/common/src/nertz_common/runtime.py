"""The runtime every service's composition root builds on: logging, metrics, the NATS connection,
a checked publisher, the kernel's runners, heartbeats, and a clean shutdown on SIGTERM/SIGINT (drain,
then exit).

Heartbeats (:mod:`nertz_common.heartbeat`) go to the ``nertz-heartbeats`` KV bucket, never to the log:
every runner built by :meth:`Runtime.component` reports its steps, last output and lanes in them; a
service reports other runners with :meth:`Runtime.report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from nertz_common import bus, logs, metrics, topology
from nertz_common import settings as settings_
from nertz_common.heartbeat import HeartbeatSettings, HeartbeatWriter, Progress
from nertz_common.node.component import Call, Node
from nertz_common.node.nats_runner import ComponentRunner, Hooks, KernelMetrics
from nertz_common.node.snapshot import SnapshotStore
from nertz_common.settings import CommonSettings

log = logging.getLogger("nertz.runtime")


@dataclass
class Runtime:
    """What a service's handlers are given: connection, publisher, metrics, and the stop signal."""

    service: str
    nc: NATS
    js: JetStreamContext
    publisher: bus.Publisher
    metrics: metrics.BusMetrics
    registry: CollectorRegistry
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat: HeartbeatWriter | None = None
    #: the kernel's metrics, shared by every runner of the process (labelled by component)
    kernel_metrics: KernelMetrics | None = None

    def report(self, name: str, progress: Callable[[], Progress]) -> None:
        """Report the runner ``name`` in the service's heartbeats: ``progress()`` is read at every beat."""
        if self.heartbeat is not None:
            self.heartbeat.report(name, progress)

    async def component(
        self,
        node: Node,
        settings: CommonSettings,
        *,
        config_hash: str,
        hooks: Hooks | None = None,
        answer: Callable[[Call], Awaitable[Any]] | None = None,
        lanes: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
    ) -> ComponentRunner:
        """Build the JetStream runner of ``node`` on its declared lanes and outputs (topology).

        ``answer`` asks the outside party the calls of ``node``'s steps; ``lanes``/``outputs`` default
        to the topology's for the node's name (a shadow validator gives its own).

        Raises
        ------
        nats.js.errors.BucketNotFoundError
            If snapshots are on and the bucket was not declared (run ``nertz streams apply``).
        """
        k = settings.kernel
        store = await SnapshotStore.open(self.js) if k.snapshots else None
        if self.kernel_metrics is None:
            self.kernel_metrics = KernelMetrics(self.service, self.registry)
        runner = ComponentRunner(
            node,
            js=self.js,
            publisher=self.publisher,
            metrics=self.metrics,
            registry=self.registry,
            stop=self.stop,
            service=self.service,
            lanes=lanes if lanes is not None else topology.LANES[node.name],
            outputs=outputs if outputs is not None else topology.OUTPUTS[node.name],
            snapshots=store,
            config_hash=config_hash,
            batch=k.fetch_batch,
            snapshot_every=k.snapshot_every,
            snapshot_interval_s=k.snapshot_interval_s,
            hooks=hooks,
            answer=answer,
            kernel_metrics=self.kernel_metrics,
        )
        self.report(node.name, lambda: _progress(runner))
        return runner

    async def until_stopped(self, *work: Awaitable[None]) -> None:
        """Run ``work`` until it ends or a stop is requested; then stop consumers and wait for it.

        An exception in any task stops the others and is re-raised (the process exits non-zero and
        redelivery resumes the work after a restart).
        """
        tasks = [asyncio.ensure_future(w) for w in work]
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        self.stop.set()  # every runner finishes the input in hand, publishes, snapshots and returns
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        if failed:
            for t in tasks:
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r


def _progress(r: ComponentRunner) -> Progress:
    return Progress(steps=r.steps, out_seq=r.out_seq, lanes={ln.durable: ln.pos for ln in r.lanes})


@contextlib.asynccontextmanager
async def runtime(
    service: str, settings: CommonSettings, heartbeat: HeartbeatSettings | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime of ``service``: JSON logs, ``/metrics``, NATS, publisher, signal handlers, heartbeats.

    ``heartbeat`` defaults to ``NERTZ_HEARTBEAT__*`` from the environment (a bad value exits 2).
    """
    hb_settings = heartbeat if heartbeat is not None else settings_.load(HeartbeatSettings)
    logs.setup(service, settings.log_level)
    registry = CollectorRegistry()
    m = metrics.BusMetrics(service, registry)
    metrics.serve(settings.metrics_port, registry, settings.metrics_addr)
    nc = await bus.connect(settings.nats_url, service, settings.nats_connect_wait_s)
    js = nc.jetstream(timeout=5)
    rt = Runtime(service, nc, js, bus.Publisher(js, m, nc=nc), m, registry)
    if hb_settings.enabled:
        effective = {**settings.model_dump(mode="python"), "heartbeat": hb_settings}  # masked by the writer
        rt.heartbeat = HeartbeatWriter(
            js, service, effective, config_hash=settings.fingerprint(), interval_s=hb_settings.interval_s,
            publisher=rt.publisher, metrics=m,
        )  # fmt: skip
        rt.heartbeat.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stop.set)
    log.info(
        "service.started",
        extra={"config_hash": settings.fingerprint(), "nats_url": settings.nats_url},
    )
    try:
        yield rt
    finally:
        if rt.heartbeat is not None:
            await rt.heartbeat.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 10)
        log.info("service.stopped")


#: a service's first threshold of the cyclic garbage collector: net allocations of container objects
#: between two young collections. CPython's 700 made ~1,000 collections in each of signal, executor and
#: api over the demo (1-2 s of CPU each, a tenth of their work); 20,000 makes a few dozen
GC_THRESHOLD0 = 20_000


def settle_heap(threshold0: int = GC_THRESHOLD0) -> None:
    """Ready a service process's heap for a long run: collect once, move every object alive (the
    modules imported, the configuration) to the collector's permanent generation (``gc.freeze``, as
    Instagram's servers do), so that no later collection scans them again, and space the young
    collections out (``threshold0``). Reference counting frees as usual; only cycles wait longer.

    Measured over the demo (``gc.callbacks``): 4.9 s of collection in the services before, 0.4 s after.
    """
    gc.collect()
    gc.freeze()
    _, t1, t2 = gc.get_threshold()
    gc.set_threshold(threshold0, t1, t2)


def run_service(main: Awaitable[None]) -> int:
    """Run a service's async main; return its exit status (STYLE.md: errors by what the operator does).

    The heap is settled first (:func:`settle_heap`). An :class:`~nertz_common.errors.InvariantViolation`
    is logged critical and exits 3, so that the
    supervisor restarts the service and the restart resumes from its snapshot; a
    :class:`~nertz_common.errors.ConfigurationError` exits 2.
    """
    from nertz_common.errors import EXIT_CONFIGURATION, EXIT_INVARIANT, ConfigurationError, InvariantViolation

    settle_heap()
    try:
        asyncio.run(main)  # type: ignore[arg-type]
    except InvariantViolation as e:
        log.critical("invariant.violated", extra={"error": str(e)})
        return EXIT_INVARIANT
    except ConfigurationError as e:
        log.critical("configuration.error", extra={"error": str(e)})
        return EXIT_CONFIGURATION
    return 0
