"""The snapshot store on a real JetStream: the history of a component's snapshots, oldest first, read
message by message from the bucket's stream (nats-py's KeyValue.history can come back empty on a
loaded machine: its end marker races the revisions already pushed)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nertz_common.node.component import NodeState
from nertz_common.node.snapshot import HISTORY, Snapshot, SnapshotStore, choose, decode

pytestmark = pytest.mark.integration


def snap(component: str, i: int) -> Snapshot:
    node = NodeState(component=component, state=msgspec.Raw(msgspec.msgpack.encode({"i": i})))
    return Snapshot(component=component, positions={component: 10 * i}, out_seq=i, origin=10 * i, steps=i, node=node)


async def test_history_is_every_kept_revision_oldest_first_and_matches_the_kv_history(js_fresh: Any) -> None:
    store = await SnapshotStore.open(js_fresh)
    name = "history-test"
    assert await store.history(name) == []
    for i in range(1, HISTORY + 7):  # more than the bucket keeps
        await store.put(snap(name, i))
    got = await store.history(name)
    assert [s.steps for s in got] == list(range(7, HISTORY + 7))  # the latest HISTORY, oldest first
    kv = await js_fresh.key_value("nertz-snapshots")
    assert [decode(e.value) for e in await kv.history(name)] == got  # on a quiet machine, the same
    assert choose(got, 300).steps == 29 and choose(got, 70) is None  # origin 10 × steps, below 300 / 70
    other = await store.history("history-test-other")
    assert other == []  # another key's revisions are not read as this one's
    await kv.delete(name)
    assert [s.steps for s in await store.history(name)] == list(range(8, HISTORY + 7))  # the marker is no snapshot
