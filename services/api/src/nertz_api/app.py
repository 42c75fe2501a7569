"""The composition root of the api service: migrations, the projector and the HTTP server in one process.

``serve`` builds everything from :class:`~nertz_api.settings.ApiSettings` and runs the projector task and
uvicorn in the same asyncio loop until the runtime's stop event (SIGTERM/SIGINT), then drains: the
projector finishes the batch in hand, uvicorn stops accepting and closes, NATS drains, the pool closes.

A Postgres outage after the start is waited out, not died of: the projector pauses and retries with
backoff for as long as it lasts (:meth:`~nertz_api.projector.Projector.run`), and the HTTP server stays
up, answering reads with 503 ``database_unavailable`` until the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import uvicorn

from nertz_api.migrate import migrate
from nertz_api.projector import Projector, ProjectorMetrics
from nertz_api.settings import ApiSettings
from nertz_api.web import ApiContext, create_app
from nertz_common import heartbeat, subjects, version
from nertz_common.runtime import runtime

log = logging.getLogger("nertz.api")

SERVICE = "api"
CONSUMER = "projector"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the runtime owns SIGTERM/SIGINT and sets ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def connect(dsn: str, max_size: int, wait_s: float = 30.0) -> asyncpg.Pool:
    """Create the pool, retrying while Postgres is starting (up to ``wait_s`` seconds).

    Raises
    ------
    OSError, asyncpg.PostgresError
        If Postgres still refuses after ``wait_s`` seconds (or refuses the credentials at once).
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await asyncpg.create_pool(dsn, min_size=2, max_size=max_size, command_timeout=60)
        except (OSError, asyncpg.CannotConnectNowError) as e:
            if time.monotonic() > deadline:
                raise
            log.warning("database.waiting", extra={"error": repr(e)[:200]})
            await asyncio.sleep(0.5)


def _progress(projector: Projector) -> heartbeat.Progress:
    stats = projector.stats
    return heartbeat.Progress(steps=stats.projected, lanes={CONSUMER: stats.tracked_seq}, paused=projector.paused)


def own_config(settings: ApiSettings) -> dict[str, Any]:
    """Return the API's own entry of ``/config``: service, version, fingerprint and masked settings."""
    return {
        "service": SERVICE,
        "version": version.version(),
        "config_hash": settings.fingerprint(),
        "settings": heartbeat.masked(settings),
    }


async def _serve_http(server: uvicorn.Server, stop: asyncio.Event) -> None:
    async def checked() -> None:
        try:
            await server.serve()
        except SystemExit as e:  # uvicorn exits when it cannot bind; turn it into an error of this task
            cfg = server.config
            raise RuntimeError(f"the HTTP server could not start on {cfg.host}:{cfg.port} (see the log)") from e

    serving = asyncio.ensure_future(checked())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
    finally:
        stopping.cancel()


async def serve(settings: ApiSettings, migrate_only: bool = False) -> None:
    """Run the api service until SIGTERM/SIGINT (or only apply the migrations).

    Raises
    ------
    nertz_api.projector.ProjectionMismatch
        If the database projects another stream (its tracked sequence is beyond the stream's end).
    nertz_api.migrate.MigrationError
        If the applied migrations and the packaged ones disagree.
    RuntimeError
        If the HTTP server cannot bind.
    OSError, asyncpg.PostgresError
        If Postgres cannot be reached at the start within 30 s (see :func:`connect`).
    """
    # the API serves /metrics on its own port; a separate exporter on the same port would collide
    rt_settings = settings
    if settings.metrics_port and settings.metrics_port == settings.api.port:
        rt_settings = settings.model_copy(update={"metrics_port": 0})
    async with runtime(SERVICE, rt_settings) as rt:
        pool = await connect(settings.database_url.get_secret_value(), settings.api.pool_size)
        try:
            applied = await migrate(pool)
            log.info("database.migrated", extra={"applied": applied})
            if migrate_only:
                return
            projector = Projector(
                pool, rt.js, rt.publisher, consumer=CONSUMER, service=SERVICE,
                metrics=ProjectorMetrics(rt.registry), bus_metrics=rt.metrics,
            )  # fmt: skip
            await projector.check_stream((await rt.js.stream_info(subjects.STREAM)).state.last_seq)
            runner = projector.runner(rt.js, rt.publisher, rt.metrics, rt.registry, rt.stop, settings.api.batch)
            rt.report(CONSUMER, lambda: _progress(projector))
            ctx = ApiContext(
                pool=pool, symbols=tuple(settings.symbols), registry=rt.registry, publisher=rt.publisher,
                token=settings.api.token, consumer=CONSUMER, max_body_bytes=settings.api.max_body_bytes,
                js=rt.js, read_token=settings.api.read_token, services=tuple(settings.api.services), service=SERVICE,
                paused=lambda: projector.paused, own=own_config(settings),
            )  # fmt: skip
            config = uvicorn.Config(
                create_app(ctx), host=settings.api.host, port=settings.api.port, log_config=None,
                access_log=False, lifespan="on", timeout_graceful_shutdown=5,
            )  # fmt: skip
            log.info("api.listening", extra={"host": settings.api.host, "port": settings.api.port})
            await rt.until_stopped(projector.run(runner), _serve_http(_Server(config), rt.stop))
        finally:
            await pool.close()
