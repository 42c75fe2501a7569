"""The topology: the ``NERTZ`` stream and every service's durable consumer, applied idempotently.

Services never declare streams or consumers themselves; ``nertz streams apply`` does, once, and is
safe to re-run (an existing stream or consumer is updated in place, keeping its position).

It also declares ``RAW``, the short-retention stream of raw exchange frames that market-ingest's
recorder may copy there (``raw.>``, 1 day by default; ARCHITECTURE.md §1). ``RAW`` is not the log of
record: no consumer is declared on it, and ``NERTZ`` never binds its subjects.

And the KV buckets beside the log: ``nertz-snapshots`` (components' snapshots) and ``nertz-heartbeats``
(services' heartbeats: wall-clock facts that never enter ``NERTZ``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nertz_common import events as ev
from nertz_common import heartbeat, subjects
from nertz_common.node import snapshot

if TYPE_CHECKING:  # nats is imported where it is used: tools that only read bundles never load it
    from nats.js import JetStreamContext
    from nats.js.api import ConsumerConfig, KeyValueConfig, StreamConfig

log = logging.getLogger("nertz.topology")

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: its name and the subjects it reads from the one stream, in log order."""

    durable: str
    filter_subjects: tuple[str, ...]
    description: str


#: the paper venue is the executor's own simulation; every other venue's reports come from its adapter
PAPER = "paper"
#: the real venues whose reports the executor reads on its driver lane
VENUES: tuple[str, ...] = ("bybit",)

CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        "signal",
        (
            *(subjects.filter_of("md", k) for k in ("bar", "book", "trade", "ticker", "status")),
            subjects.filter_of("sys", "config"),
            subjects.filter_of("sys", "manual"),
            subjects.filter_of("llm", "news"),
        ),
        "signal: market data, config changes, manual trade requests and news assessments in log order",
    ),
    ConsumerSpec(
        "llm-validator",
        (subjects.filter_of("sig", "intent"), subjects.filter_of("exec"), subjects.filter_of("sys", "config")),
        "llm-validator: intents, executor events for its memory, and config changes",
    ),
    # the executor's driver lane: market data and operator commands, in log order (a command applies
    # where it sits in the log, not at the next closed bar)
    ConsumerSpec(
        "executor-market",
        (
            *(subjects.filter_of("md", k) for k in ("bar", "book", "ticker", "instrument", "status")),
            subjects.filter_of("sys", "control"),
            subjects.filter_of("sys", "config"),
            subjects.filter_of("sys", "manual"),
            *(f for v in VENUES for f in subjects.venue_filters(v)),
            subjects.filter_of("llm", "news"),
        ),
        "executor: market data for the paper venue and the clock, operator commands, real venues' reports, "
        "news assessments (the news protection)",
    ),
    # partner lanes, pulled only while a join waits (decisions.md D1, D7)
    ConsumerSpec(
        "executor-decisions",
        (subjects.filter_of("sig", "intent"), subjects.filter_of("sig", "factor")),
        "executor: intents and one factor snapshot per closed bar (in bar order)",
    ),
    # verdicts on their own consumer: they arrive in VerdictAwaited order, so the executor never has
    # to pull (and hold) the snapshots signal published ahead while it waits for one (decisions.md D1)
    ConsumerSpec("executor-verdicts", (subjects.filter_of("llm", "verdict"),), "executor: validator verdicts"),
    # the news analyst (in the llm-validator process): its clock, the closed bars, and operators' requests
    ConsumerSpec(
        "news-analyst",
        (subjects.filter_of("md", "bar"), subjects.filter_of("sys", "news")),
        "news analyst: bars (its schedule) and news requests in log order",
    ),
    ConsumerSpec("projector", tuple(subjects.stream_subjects()), "api projector: the whole log"),
    ConsumerSpec(
        "notifier",
        (
            subjects.filter_of("exec"),
            subjects.filter_of("llm", "override"),
            subjects.filter_of("sys"),
            subjects.filter_of("md", "bar"),  # the clock: the daily statistics at 00:00 UTC, on a quiet day too
        ),
        "notifier: positions, locks, overrides and operator commands to post (and its own posts), bars as its clock",
    ),
)

#: a real venue's adapter: the executor's orders (and expiries, which cancel) to send, in log order.
#: Not in :data:`CONSUMERS`: it exists only where that venue trades (the adapter ensures it at start).
VENUE_CONSUMERS: dict[str, ConsumerSpec] = {
    v: ConsumerSpec(f"venue-{v}", (subjects.filter_of("exec", "order"),), f"{v} venue adapter: orders to send")
    for v in VENUES
}


#: each component's lanes (durable consumers), the driver lane first
LANES: dict[str, tuple[str, ...]] = {
    "signal": ("signal",),
    "llm-validator": ("llm-validator",),
    "executor": ("executor-market", "executor-decisions", "executor-verdicts"),
    "news-analyst": ("news-analyst",),
}

#: what each component publishes (its own output, read back after a restart)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "signal": (subjects.filter_of("sig"),),
    "llm-validator": (subjects.filter_of("llm", "verdict"), subjects.filter_of("llm", "override")),
    "executor": (subjects.filter_of("exec"), f"venue.*.{PAPER}.>"),
    "news-analyst": (subjects.filter_of("llm", "news"),),
}

#: subject (domain, kind) -> producing service; kind None = the whole domain
_PRODUCERS: dict[tuple[str, str | None], str] = {
    ("md", None): "market-ingest",
    ("sig", None): "signal",
    ("llm", "verdict"): "llm-validator",
    ("llm", "override"): "llm-validator",
    ("llm", "news"): "news-analyst",
    ("exec", None): "executor",
    ("sys", "control"): "api",
    ("sys", "config"): "api",
    ("sys", "manual"): "api",
    ("sys", "news"): "api",
    ("sys", "notify"): "notifier",
    ("sys", "universe"): "market-ingest",
}


def venue_producer(venue_name: str) -> str:
    """Return the producer of a venue's reports: ``executor`` for paper, ``venue-<name>`` otherwise."""
    return "executor" if venue_name == PAPER else f"venue-{venue_name}"


def spec(durable: str) -> ConsumerSpec:
    """Return the declared consumer named ``durable``.

    Raises
    ------
    KeyError
        If no consumer has that name.
    """
    for c in (*CONSUMERS, *VENUE_CONSUMERS.values()):
        if c.durable == durable:
            return c
    prefix = shadow_name("")
    if durable.startswith(prefix) and len(durable) > len(prefix):
        return shadow_consumer(durable[len(prefix) :])
    raise KeyError(f"expected a declared consumer, was {durable!r} (known: {[c.durable for c in CONSUMERS]})")


@functools.lru_cache(maxsize=65_536)
def producer_of(subject: str) -> str | None:
    """Return the service that publishes on ``subject`` (None for dead letters and unknown subjects)."""
    tokens = subject.split(".", 2)
    if len(tokens) < 2:
        return None
    if tokens[0] == "llm" and tokens[1] == "shadow" and len(tokens) == 3:
        return shadow_name(tokens[2])
    if tokens[0] == "venue" and len(tokens) == 3:
        return venue_producer(tokens[2].split(".", 1)[0])
    return _PRODUCERS.get((tokens[0], tokens[1])) or _PRODUCERS.get((tokens[0], None))


def shadow_name(shadow: str) -> str:
    """Return the component (and durable consumer) name of the shadow validator ``shadow``."""
    return f"llm-validator-shadow-{shadow}"


def shadow_consumer(shadow: str) -> ConsumerSpec:
    """Return the durable consumer of a shadow validator: what the live validator reads, its own cursor."""
    live = spec("llm-validator")
    return ConsumerSpec(shadow_name(shadow), live.filter_subjects, f"shadow validator {shadow}: {live.description}")


def matches(pattern: str, subject: str) -> bool:
    """Return True when ``subject`` matches the NATS subject ``pattern`` (``*`` one token, ``>`` the rest)."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def types_of(filters: tuple[str, ...] | list[str]) -> frozenset[type[ev.Event]]:
    """Return the event types whose subjects fall under ``filters``."""
    out = set()
    for t, (domain, kind) in subjects.ROUTES.items():
        n = 5 if issubclass(t, ev.InstrumentEvent) else 3
        for f in filters:
            # a probe subject of the type, with the filter's own literal tokens past domain and kind
            toks = f.split(".")
            rest = [toks[i] if i < len(toks) and toks[i] not in ("*", ">") else "x" for i in range(2, n)]
            if matches(f, ".".join([domain, kind, *rest])):
                out.add(t)
                break
    return frozenset(out)


def lane_of(component: str, subject: str) -> str | None:
    """Return the lane (durable) of ``component`` that delivers ``subject``, None if none does."""
    for durable in LANES.get(component, ()):
        if any(matches(f, subject) for f in spec(durable).filter_subjects):
            return durable
    return None


def stream_config(
    name: str = subjects.STREAM,
    max_age_days: float = 30.0,
    max_bytes: int = 20 * 2**30,
    replicas: int = 1,
) -> StreamConfig:
    """Return the ``NERTZ`` stream configuration (file storage, 30-day window, byte cap)."""
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig

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
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig

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
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    return ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        deliver_policy=DeliverPolicy.ALL,
        # acking a message acks every one delivered before it: the runners ack the last of each
        # flushed batch (acks are progress and flow control, never correctness: a restart resets
        # each lane to its snapshot's position)
        ack_policy=AckPolicy.ALL,
        ack_wait=60.0,
        max_deliver=-1,  # our loop dead-letters after its own limit; the server never drops silently
        max_ack_pending=20_000,
        # a consumer of the whole stream (the projector) takes no filter: the server then delivers
        # without matching every message against six filters (~40 % less of its CPU per delivery)
        filter_subjects=None
        if set(spec.filter_subjects) >= set(subjects.stream_subjects())
        else list(spec.filter_subjects),
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
    import nats.js.errors

    cfg = stream or stream_config()
    changes: list[str] = [await _apply_stream(js, cfg)]
    name = cfg.name
    assert name  # _apply_stream refused a nameless configuration
    for spec in consumers:
        want = consumer_config(spec)
        try:
            info = await js.consumer_info(name, spec.durable)
            existed = True
        except nats.js.errors.NotFoundError:
            existed = False
        if existed and info.config.ack_policy != want.ack_policy:
            # the ack policy cannot be updated in place; recreating loses nothing: every runner resets
            # its lanes to its own position (snapshot or tracked sequence) on start
            await js.delete_consumer(name, spec.durable)
            await js.add_consumer(name, want)
            changes.append(f"consumer {spec.durable}: recreated (ack policy {want.ack_policy})")
            continue
        await js.add_consumer(name, want)  # create-or-update by durable name
        changes.append(f"consumer {spec.durable}: {'updated' if existed else 'created'}")
    if with_raw:
        changes.append(await _apply_stream(js, raw_stream or raw_stream_config()))
    changes.append(await _apply_snapshots(js, replicas=cfg.num_replicas or 1))
    changes.append(await _apply_heartbeats(js, replicas=cfg.num_replicas or 1))
    for line in changes:
        log.info("topology.applied", extra={"change": line})
    return changes


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec, stream: str = subjects.STREAM) -> None:
    """Create ``spec``'s durable consumer on ``stream`` unless it exists (a shadow validator's, at start).

    Raises
    ------
    nats.js.errors.NotFoundError
        If the stream does not exist (run ``nertz streams apply``).
    """
    import nats.js.errors

    try:
        await js.consumer_info(stream, spec.durable)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, consumer_config(spec))
        log.info("topology.applied", extra={"change": f"consumer {spec.durable}: created"})


async def _apply_stream(js: JetStreamContext, cfg: StreamConfig) -> str:
    import nats.js.errors

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


async def _apply_snapshots(js: JetStreamContext, replicas: int = 1) -> str:
    return await _apply_bucket(js, "snapshots", snapshot.bucket_config(replicas=replicas))


async def _apply_heartbeats(js: JetStreamContext, replicas: int = 1) -> str:
    return await _apply_bucket(js, "heartbeats", heartbeat.bucket_config(replicas=replicas))


async def _apply_bucket(js: JetStreamContext, what: str, cfg: KeyValueConfig) -> str:
    import nats.js.errors

    try:
        await js.key_value(cfg.bucket)
    except nats.js.errors.BucketNotFoundError:
        await js.create_key_value(cfg)
        return f"{what} {cfg.bucket}: created"
    # kept as it is, but for its replicas: a bucket made on one node follows the topology onto a
    # cluster (``--replicas 3``), as the stream and its consumers do
    info = await js.stream_info(f"KV_{cfg.bucket}")
    if info.config.num_replicas == cfg.replicas:
        return f"{what} {cfg.bucket}: kept"
    info.config.num_replicas = cfg.replicas
    await js.update_stream(info.config)
    return f"{what} {cfg.bucket}: kept, R{cfg.replicas}"


async def recreate(js: JetStreamContext) -> list[str]:
    """Delete the stream, the snapshots and the heartbeats (if any) and apply the topology afresh: an
    empty log.

    For tests and demos.
    """
    import nats.js.errors

    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(subjects.STREAM)
    for bucket in (snapshot.BUCKET, heartbeat.BUCKET):
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
            await js.delete_key_value(bucket)
    return await apply(js)
