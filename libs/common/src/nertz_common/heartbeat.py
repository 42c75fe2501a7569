"""Service heartbeats: who runs where, since when, how far it got and with which settings — off the log.

Every service's runtime writes a :class:`Heartbeat` every ``interval_s`` seconds (default 5,
``NERTZ_HEARTBEAT__INTERVAL_S``) to the KV bucket ``nertz-heartbeats`` (declared by ``nertz streams
apply``; history 1, entries expire after :data:`TTL_S`), keyed by service name. A heartbeat is a
wall-clock fact (ARCHITECTURE.md §2): it never enters the ``NERTZ`` stream, so replays and the chaos
suite, which compare the log, never see one. A clean stop writes a last beat with ``stopped`` set.

The effective settings travel with it, masked: every ``SecretStr``/``SecretBytes`` is ``"***"``, and so
is a string under a secret-looking name (``token``, ``password``, ``secret``, ``api_key``...) and the
password of a URL (``nats://user:***@host``). The raw secret never leaves the process.

A missing bucket (a topology applied by an older version) never stops a service: the writer logs it
once and tries again at each interval, silently, until ``nertz streams apply`` declares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from pydantic import BaseModel, Field, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings, SettingsConfigDict

from nertz_common import version

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.api import KeyValueConfig
    from nats.js.kv import KeyValue

    from nertz_common.bus import Publisher
    from nertz_common.metrics import BusMetrics

log = logging.getLogger("nertz.heartbeat")

BUCKET = "nertz-heartbeats"
#: a heartbeat not renewed for this long disappears (the service shows as missing), s
TTL_S = 900.0
FORMAT: Literal[1] = 1
MASK = "***"
#: a service is alive while its last beat is younger than this many intervals
ALIVE_INTERVALS = 3.0
#: largest heartbeat accepted by the bucket, bytes (settings included)
MAX_BYTES = 256 * 1024

_SECRET_NAME = re.compile(r"(secret|password|passwd|token|api_?key|passphrase|credential)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<tail>@.*)$")


class HeartbeatSettings(BaseSettings):
    """How often a service beats (``NERTZ_HEARTBEAT__INTERVAL_S``, ``NERTZ_HEARTBEAT__ENABLED``).

    Attributes
    ----------
    interval_s : float
        Seconds between two beats; the api calls a service stale after ``3 × interval_s`` without one.
    enabled : bool
        Write heartbeats at all (off: the service shows as missing in ``/status``).
    """

    model_config = SettingsConfigDict(env_prefix="NERTZ_HEARTBEAT__", extra="forbid")

    interval_s: float = Field(5.0, ge=0.05, le=300.0, description="seconds between two beats")
    enabled: bool = Field(True, description="write heartbeats to the nertz-heartbeats bucket")


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """What one runner of a service reports (see :meth:`HeartbeatWriter.report`).

    Attributes
    ----------
    steps : int
        Inputs handled (a component's driver inputs, the projector's events projected).
    out_seq : int
        Stream sequence of its last published output (0 if none).
    lanes : dict[str, int]
        Per durable consumer, the last stream sequence the runner consumed.
    paused : str or None
        Why the runner waits out an outage (e.g. ``database_unavailable``), None when it runs.
    """

    steps: int = 0
    out_seq: int = 0
    lanes: dict[str, int] = msgspec.field(default_factory=dict)
    paused: str | None = None


class LaneState(msgspec.Struct, frozen=True, kw_only=True):
    """One durable consumer of a service, as the heartbeat saw it.

    Attributes
    ----------
    consumed : int
        Last stream sequence the runner consumed.
    acked : int or None
        The consumer's ack floor on the server (last acknowledged stream sequence); None if unknown.
    pending : int or None
        Messages on the stream the consumer has not been delivered yet; None if unknown.
    """

    consumed: int
    acked: int | None = None
    pending: int | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """One beat of a service (the KV value, JSON).

    Attributes
    ----------
    service : str
        The service's name (the KV key).
    pid : int
    host : str
    started_ns : int
        When the process started its runtime, UNIX ns (wall clock).
    beat_ns : int
        When this beat was written, UNIX ns (wall clock).
    interval_s : float
        Seconds until the next beat.
    beats : int
        Beats written by this process (1 for the first).
    version : str
        The code's version (``nertz_common.version``).
    config_hash : str
        The configuration fingerprint (``CommonSettings.fingerprint``).
    iterations : int
        Inputs handled: the sum of its runners' steps, or the events it consumed when it runs none.
    published : int
        Events it published that the stream stored (duplicates not counted).
    out_seq : int
        Stream sequence of its last published event (0 if none).
    lanes : dict[str, LaneState]
        Its durable consumers.
    components : dict[str, Progress]
        What each runner reported.
    paused : list[str]
        ``<runner>: <reason>`` for every runner that waits out an outage.
    stopped : bool
        True on the last beat of a clean stop.
    settings : dict
        The effective settings, secrets masked (:func:`masked`).
    """

    service: str
    pid: int
    host: str
    started_ns: int
    beat_ns: int
    interval_s: float
    beats: int
    version: str
    config_hash: str
    iterations: int = 0
    published: int = 0
    out_seq: int = 0
    lanes: dict[str, LaneState] = msgspec.field(default_factory=dict)
    components: dict[str, Progress] = msgspec.field(default_factory=dict)
    paused: list[str] = msgspec.field(default_factory=list)
    stopped: bool = False
    settings: dict[str, Any] = msgspec.field(default_factory=dict)
    format: Literal[1] = FORMAT

    def age_s(self, now_ns: int) -> float:
        """Return the seconds since this beat at ``now_ns`` (UNIX ns), never negative (clock skew)."""
        return max(0.0, (now_ns - self.beat_ns) / 1e9)

    def alive(self, now_ns: int) -> bool:
        """Return True when the service runs: not stopped, and beat within ``3 × interval_s`` of ``now_ns``."""
        return not self.stopped and self.age_s(now_ns) < ALIVE_INTERVALS * self.interval_s


#: the bucket's values: JSON, readable with ``nats kv get nertz-heartbeats <service>``
_CODEC = (msgspec.json.Encoder(), msgspec.json.Decoder(Heartbeat))


def encode(hb: Heartbeat) -> bytes:
    """Return ``hb`` as the bucket stores it (JSON)."""
    return _CODEC[0].encode(hb)


def decode(data: bytes) -> Heartbeat:
    """Return the heartbeat :func:`encode` wrote; ``ValueError`` if ``data`` is none of :data:`FORMAT`."""
    try:
        return _CODEC[1].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:  # the format too is checked by its type
        raise ValueError(f"expected a Nertz heartbeat of format {FORMAT}, could not decode it: {e}") from e


def masked(value: Any, name: str = "") -> Any:
    """Return ``value`` as JSON-ready data with every secret replaced by ``"***"``.

    Parameters
    ----------
    value : Any
        Settings (a pydantic model), or what they dump to: mappings, sequences, scalars.
    name : str
        The field name ``value`` is under (a non-empty string under a secret-looking name is masked).
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")  # keeps SecretStr objects, dumps nested models to dicts
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [masked(v, name) for v in value]
    if isinstance(value, str):
        if value and _SECRET_NAME.search(name):
            return MASK
        m = _URL_PASSWORD.match(value)
        return f"{m['head']}{MASK}{m['tail']}" if m else value
    return to_jsonable_python(value)


def bucket_config(replicas: int = 1, ttl_s: float = TTL_S) -> KeyValueConfig:
    """Return the KV configuration of ``nertz-heartbeats`` (history 1, short TTL; file storage, so that
    the bucket outlives a NATS restart)."""
    from nats.js.api import KeyValueConfig, StorageType

    return KeyValueConfig(
        bucket=BUCKET,
        description="Nertz service heartbeats (wall-clock facts, never on the log)",
        history=1,
        ttl=ttl_s,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=MAX_BYTES,
    )


async def read_all(js: JetStreamContext, timeout_s: float = 2.0) -> dict[str, Heartbeat]:
    """Return the latest heartbeat of every service in the bucket, by service name.

    An entry that cannot be decoded is logged and left out.

    Raises
    ------
    nats.js.errors.BucketNotFoundError
        If the bucket was not declared (run ``nertz streams apply``).
    TimeoutError, nats.errors.Error
        If NATS does not answer within ``timeout_s`` seconds.
    """
    import nats.js.errors

    async def read() -> dict[str, Heartbeat]:
        kv = await js.key_value(BUCKET)
        # the bucket stream's subjects, not kv.keys(): nats-py's watcher may end its listing before the
        # keys already pushed to it were handed over (an empty /status on a loaded machine)
        prefix = f"$KV.{BUCKET}."
        info = await js.stream_info(f"KV_{BUCKET}", subjects_filter=f"{prefix}>")
        keys = [subject[len(prefix) :] for subject in (info.state.subjects or {})]
        out: dict[str, Heartbeat] = {}
        for key in sorted(keys):
            try:
                entry = await kv.get(key)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # expired between the listing and the read
            if not entry.value:
                continue
            try:
                out[key] = decode(entry.value)
            except ValueError as e:
                log.warning("heartbeat.unreadable", extra={"key": key, "error": str(e)})
        return out

    return await asyncio.wait_for(read(), timeout_s)


def _counted(counter: Any, **labels: str) -> int:
    total = 0.0
    for metric in counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return int(total)


class HeartbeatWriter:
    """Write a service's heartbeats (built by :func:`nertz_common.runtime.runtime`).

    Parameters
    ----------
    js : JetStreamContext
    service : str
        The KV key.
    settings : BaseModel or Mapping
        The service's effective settings (masked before they are written).
    config_hash : str
        Their fingerprint.
    interval_s : float
        Seconds between two beats.
    publisher : Publisher, optional
        Its ``last_seq`` is the service's last published sequence.
    metrics : BusMetrics, optional
        Events consumed and published are counted from it.
    """

    def __init__(
        self,
        js: JetStreamContext,
        service: str,
        settings: BaseModel | Mapping[str, Any],
        *,
        config_hash: str,
        interval_s: float = 5.0,
        publisher: Publisher | None = None,
        metrics: BusMetrics | None = None,
    ) -> None:
        self.js = js
        self.service = service
        self.interval_s = interval_s
        self.config_hash = config_hash
        self.settings = masked(settings)
        self.publisher = publisher
        self.metrics = metrics
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_ns = time.time_ns()
        self.beats = 0
        self._sources: dict[str, Callable[[], Progress]] = {}
        self._kv: KeyValue | None = None
        self._missing_logged = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def report(self, name: str, progress: Callable[[], Progress]) -> None:
        """Add the runner ``name``: ``progress()`` is called at every beat for its counters."""
        self._sources[name] = progress

    async def beat(self, stopped: bool = False) -> Heartbeat:
        """Return the heartbeat of now (asks the server for each lane's ack floor, at most 2 s)."""
        components = {name: p() for name, p in self._sources.items()}
        consumed: dict[str, int] = {}
        for p in components.values():
            for durable, seq in p.lanes.items():
                consumed[durable] = max(consumed.get(durable, 0), seq)
        lanes = {d: await self._lane(d, seq) for d, seq in consumed.items()}
        m = self.metrics
        iterations = sum(p.steps for p in components.values()) if components else 0
        if not components and m is not None:
            iterations = _counted(m.events_in)
        out_seq = max([p.out_seq for p in components.values()] + [self.publisher.last_seq if self.publisher else 0])
        return Heartbeat(
            service=self.service, pid=self.pid, host=self.host, started_ns=self.started_ns, beat_ns=time.time_ns(),
            interval_s=self.interval_s, beats=self.beats + 1, version=version.version(),
            config_hash=self.config_hash, iterations=iterations,
            published=_counted(m.events_out, outcome="ok") if m is not None else 0, out_seq=out_seq, lanes=lanes,
            components=components, paused=[f"{n}: {p.paused}" for n, p in components.items() if p.paused],
            stopped=stopped, settings=self.settings,
        )  # fmt: skip

    async def _lane(self, durable: str, consumed: int) -> LaneState:
        from nertz_common import subjects

        try:
            info = await asyncio.wait_for(self.js.consumer_info(subjects.STREAM, durable), 2.0)
        except Exception:  # a missing consumer or a slow server: the beat goes out without it
            return LaneState(consumed=consumed)
        return LaneState(consumed=consumed, acked=info.ack_floor.stream_seq, pending=info.num_pending)

    async def put(self, stopped: bool = False) -> bool:
        """Write one beat; return True when the bucket stored it (a failure is logged once per outage)."""
        import nats.js.errors

        try:
            if self._kv is None:
                self._kv = await self.js.key_value(BUCKET)
            hb = await self.beat(stopped)
            if self._closing.is_set() and not stopped:
                return False  # closing: the last beat is the stopped one
            await self._kv.put(self.service, encode(hb))
        except nats.js.errors.BucketNotFoundError:
            if not self._missing_logged:
                self._missing_logged = True
                log.warning(
                    "heartbeat.bucket_missing",
                    extra={"bucket": BUCKET, "hint": "run `nertz streams apply`; the service runs on without"},
                )
            return False
        except asyncio.CancelledError:
            raise
        except Exception as e:  # NATS down or the bucket deleted under us: the service runs on
            if not self._failing:
                self._failing = True
                log.warning("heartbeat.failed", extra={"bucket": BUCKET, "error": repr(e)[:300]})
            self._kv = None  # reopen: the bucket may have been recreated
            return False
        self.beats += 1
        if self._failing or self._missing_logged:
            log.info("heartbeat.resumed", extra={"bucket": BUCKET, "beats": self.beats})
        self._failing = self._missing_logged = False
        return True

    async def run(self) -> None:
        """Beat every ``interval_s`` seconds until :meth:`close`."""
        while not self._closing.is_set():
            await self.put()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.interval_s)

    def start(self) -> None:
        """Start :meth:`run` as a task of the running loop."""
        if self._task is None:
            self._closing.clear()
            self._task = asyncio.ensure_future(self.run())

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop beating and write the last beat (``stopped``), waiting at most about ``2 × timeout_s`` s.

        The loop is asked to end, not cancelled: nats-py swallows a cancellation in places, and a
        cancelled beat could then run on for ever.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._closing.set()
        _, pending = await asyncio.wait({task}, timeout=timeout_s)
        for t in pending:  # a beat stuck on the server: leave it to its own timeouts
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.put(stopped=True), timeout_s)
