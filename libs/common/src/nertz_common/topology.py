"""The topology: the ``NERTZ`` stream and every service's durable consumer, applied idempotently.

Services never declare streams or consumers themselves; ``nertz streams apply`` does, once, and is
safe to re-run (an existing stream or consumer is updated in place, keeping its position).

It also declares ``RAW``, the short-retention stream of raw exchange frames that market-ingest's
recorder may copy there (``raw.>``, 1 day by default; ARCHITECTURE.md §1). ``RAW`` is not the log of
record: no consumer is declared on it, and ``NERTZ`` never binds its subjects.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)

from nertz_common import subjects

log = logging.getLogger("nertz.topology")

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: its name and the subjects it reads from the one stream, in log order."""

    durable: str
    filter_subjects: tuple[str, ...]
    description: str


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        "signal",
        tuple(subjects.filter_of("md", k) for k in ("bar", "book", "trade", "ticker", "status")),
        "signal: market data in log order",
    ),
    ConsumerSpec(
        "llm-validator",
        (subjects.filter_of("sig", "intent"), subjects.filter_of("exec")),
        "llm-validator: intents, and executor events for its memory",
    ),
    ConsumerSpec(
        "executor-market",
        tuple(subjects.filter_of("md", k) for k in ("bar", "book", "ticker", "status")),
        "executor: market data for the paper venue and the clock",
    ),
    ConsumerSpec(
        "executor-decisions",
        (
            subjects.filter_of("sig", "intent"),
            subjects.filter_of("sig", "factor"),
            subjects.filter_of("sys", "control"),
        ),
        "executor: intents, one factor snapshot per closed bar (in bar order), operator commands",
    ),
    # verdicts on their own consumer: they arrive in VerdictAwaited order, so the executor never has
    # to pull (and hold) the snapshots signal published ahead while it waits for one (decisions.md D1)
    ConsumerSpec("executor-verdicts", (subjects.filter_of("llm", "verdict"),), "executor: validator verdicts"),
    ConsumerSpec("projector", tuple(subjects.stream_subjects()), "api projector: the whole log"),
)


def stream_config(
    name: str = subjects.STREAM,
    max_age_days: float = 30.0,
    max_bytes: int = 20 * 2**30,
    replicas: int = 1,
) -> StreamConfig:
    """Return the ``NERTZ`` stream configuration (file storage, 30-day window, byte cap)."""
    return StreamConfig(
        name=name,
        subjects=subjects.stream_subjects(),
        storage=StorageType.FILE,
        max_age=max_age_days * DAY_S,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        duplicate_window=600.0,
        num_replicas=replicas,
        allow_direct=True,
    )


def raw_stream_config(
    name: str = subjects.RAW_STREAM,
    max_age_days: float = 1.0,
    max_bytes: int = 5 * 2**30,
    replicas: int = 1,
) -> StreamConfig:
    """Return the ``RAW`` stream configuration (file storage, 1-day window, byte cap, ``raw.>``).

    Parameters
    ----------
    name : str
        Stream name.
    max_age_days : float
        Retention window, days (raw frames are kept for forensics, not as the log of record).
    max_bytes : int
        Byte cap; the oldest frames are dropped first.
    replicas : int
        Stream replicas (3 in a cluster).
    """
    return StreamConfig(
        name=name,
        description="raw exchange frames as received (market-ingest recorder); short retention",
        subjects=subjects.raw_stream_subjects(),
        storage=StorageType.FILE,
        max_age=max_age_days * DAY_S,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        duplicate_window=120.0,
        num_replicas=replicas,
        allow_direct=True,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    """Return the durable pull consumer configuration of one spec."""
    return ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=60.0,
        max_deliver=-1,  # our loop dead-letters after its own limit; the server never drops silently
        max_ack_pending=20_000,
        filter_subjects=list(spec.filter_subjects),
    )


async def apply(
    js: JetStreamContext,
    *,
    stream: StreamConfig | None = None,
    consumers: tuple[ConsumerSpec, ...] = CONSUMERS,
    raw_stream: StreamConfig | None = None,
    with_raw: bool = True,
) -> list[str]:
    """Create or update the streams and consumers; return what changed, one line each.

    Parameters
    ----------
    js : JetStreamContext
    stream : StreamConfig, optional
        The ``NERTZ`` stream (default :func:`stream_config`).
    consumers : tuple of ConsumerSpec
        The durable consumers on it.
    raw_stream : StreamConfig, optional
        The ``RAW`` stream of raw exchange frames (default :func:`raw_stream_config`).
    with_raw : bool
        Declare the ``RAW`` stream too (default True).

    Raises
    ------
    ValueError
        If a stream configuration has no name.
    """
    cfg = stream or stream_config()
    changes: list[str] = [await _apply_stream(js, cfg)]
    name = cfg.name
    assert name  # _apply_stream refused a nameless configuration
    for spec in consumers:
        try:
            await js.consumer_info(name, spec.durable)
            existed = True
        except nats.js.errors.NotFoundError:
            existed = False
        await js.add_consumer(name, consumer_config(spec))  # create-or-update by durable name
        changes.append(f"consumer {spec.durable}: {'updated' if existed else 'created'}")
    if with_raw:
        changes.append(await _apply_stream(js, raw_stream or raw_stream_config()))
    for line in changes:
        log.info("topology.applied", extra={"change": line})
    return changes


async def _apply_stream(js: JetStreamContext, cfg: StreamConfig) -> str:
    name = cfg.name
    if not name:
        raise ValueError("expected a stream name in the stream configuration, was none")
    try:
        await js.stream_info(name)
        await js.update_stream(cfg)
        return f"stream {name}: updated"
    except nats.js.errors.NotFoundError:
        await js.add_stream(cfg)
        return f"stream {name}: created"


async def recreate(js: JetStreamContext) -> list[str]:
    """Delete the stream (if any) and apply the topology afresh: an empty log. For tests and demos."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(subjects.STREAM)
    return await apply(js)
