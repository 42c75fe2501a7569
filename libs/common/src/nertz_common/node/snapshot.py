"""Snapshots: a node's state plus the log position it covers, kept in a JetStream KV bucket.

A snapshot is data (eventsourcing's ``SnapshotProtocol``): the component's state and what its node
buffered, the last stream sequence consumed on each of its lanes, the sequence of its last published
output, and the origin of its last step. Start-up is snapshot + tail: restore the state, reset each
lane to the position after it, and read the component's own outputs after ``out_seq`` to know what
the crashed step already published. So the ``NERTZ`` stream's retention may drop messages older than
the latest snapshot without breaking a restart.

The bucket ``nertz-snapshots`` keeps up to 64 revisions per component (the KV history limit): the
latest for a restart, older ones for a replay that starts mid-log (``nertz replay --from-seq``).
Values are msgpack, zlib-compressed.
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

import msgspec

from nertz_common.node.component import NodeState
from nertz_common.node.log import subject_messages

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.api import KeyValueConfig
    from nats.js.kv import KeyValue

log = logging.getLogger("nertz.snapshot")

BUCKET = "nertz-snapshots"
HISTORY = 64
FORMAT = 1
#: NATS' default max_payload is 1 MiB; keep a margin for headers
MAX_BYTES = 1_000_000


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A node's state and the log position it covers.

    Attributes
    ----------
    component : str
        The component's name (the KV key).
    positions : dict[str, int]
        Per lane (durable consumer name), the last stream sequence consumed.
    out_seq : int
        Stream sequence of the component's last output published when the snapshot was taken.
    origin : int
        Origin of the last step (see :class:`~nertz_common.node.component.Pos`).
    steps : int
        Driver inputs handled since the log's start.
    config_hash : str
        Fingerprint of the configuration the state was built with.
    code_version : str
        The code's version (``nertz_common.version``).
    taken_ns : int
        Wall-clock time of the snapshot, UNIX ns (a record, never a decision input).
    node : NodeState
    """

    component: str
    positions: dict[str, int]
    out_seq: int
    origin: int
    steps: int
    node: NodeState
    config_hash: str = ""
    code_version: str = ""
    taken_ns: int = 0
    format: int = FORMAT

    @property
    def position(self) -> int:
        """The highest position of any lane (what the snapshot covers at most)."""
        return max(self.positions.values(), default=0)


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Snapshot)


def encode(s: Snapshot) -> bytes:
    """Encode a snapshot (msgpack, zlib level 6)."""
    return zlib.compress(_enc.encode(s), 6)


def decode(data: bytes) -> Snapshot:
    """Decode :func:`encode`'s bytes.

    Raises
    ------
    ValueError
        If the bytes are not a snapshot of a known format.
    """
    try:
        s = _dec.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"expected a Nertz snapshot, could not decode it: {e}") from e
    if s.format != FORMAT:
        raise ValueError(f"expected snapshot format {FORMAT}, was {s.format}")
    return s


def bucket_config(replicas: int = 1, max_age_s: float = 0.0) -> KeyValueConfig:
    """Return the KV configuration of ``nertz-snapshots`` (file storage, 64 revisions per key)."""
    from nats.js.api import KeyValueConfig, StorageType

    return KeyValueConfig(
        bucket=BUCKET,
        description="Nertz component snapshots: state + the log position it covers",
        history=HISTORY,
        ttl=max_age_s or None,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=MAX_BYTES,
    )


class SnapshotStore:
    """Read and write snapshots in the ``nertz-snapshots`` bucket.

    Parameters
    ----------
    kv : KeyValue
        The bucket (created by ``nertz streams apply``).
    js : JetStreamContext
        The context it was opened on: the history is read from the bucket's stream.
    """

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self._kv = kv
        self._js = js

    @classmethod
    async def open(cls, js: JetStreamContext) -> SnapshotStore:
        """Open the bucket.

        Raises
        ------
        nats.js.errors.BucketNotFoundError
            If the bucket was not declared (run ``nertz streams apply``).
        """
        return cls(await js.key_value(BUCKET), js)

    async def put(self, s: Snapshot) -> int:
        """Store ``s`` as the latest revision of its component; return the revision.

        Raises
        ------
        ValueError
            If the encoded snapshot exceeds :data:`MAX_BYTES`.
        """
        data = encode(s)
        if len(data) > MAX_BYTES:
            raise ValueError(f"expected a snapshot of at most {MAX_BYTES} bytes, {s.component}'s is {len(data)}")
        return await self._kv.put(s.component, data)

    async def latest(self, component: str) -> Snapshot | None:
        """Return the latest snapshot of ``component``, None if it has none."""
        import nats.js.errors

        try:
            entry = await self._kv.get(component)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return decode(entry.value) if entry.value else None

    async def history(self, component: str) -> list[Snapshot]:
        """Return every kept snapshot of ``component``, oldest first (empty if none)."""

        out = []
        for value in await self._revisions(component):
            if value:
                try:
                    out.append(decode(value))
                except ValueError as err:
                    log.warning("snapshot.unreadable", extra={"component": component, "error": str(err)})
        return out

    async def _revisions(self, component: str) -> list[bytes | None]:
        """Every kept revision's value, oldest first, read message by message from the bucket's stream.

        nats-py's ``KeyValue.history`` ends at a marker its watcher puts when the consumer info shows
        nothing pending and no message was handed to its callback yet: on a loaded machine the server has
        pushed every revision by then and the history comes back empty. Reading the key's subject with
        :func:`~nertz_common.node.log.subject_messages` has no such race (at most :data:`HISTORY` requests).
        """
        return [m.data async for m in subject_messages(self._js, f"KV_{BUCKET}", f"$KV.{BUCKET}.{component}")]

    async def before(self, component: str, origin: int) -> Snapshot | None:
        """Return the latest snapshot of ``component`` whose last step's origin is below ``origin``."""
        fit = [s for s in await self.history(component) if s.origin < origin]
        return fit[-1] if fit else None


def choose(snapshots: list[Snapshot], origin: int) -> Snapshot | None:
    """Return the latest of ``snapshots`` (oldest first) whose last step's origin is below ``origin``."""
    fit = [s for s in snapshots if s.origin < origin]
    return fit[-1] if fit else None
