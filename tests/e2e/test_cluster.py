"""The 3-node JetStream cluster of ``docker compose --profile cluster`` under the pipeline.

The three nodes run deploy/nats/cluster-1..3.conf from the embedded binary on 127.0.0.1 (only the
addresses and store directories differ from compose), the topology is applied as compose's
topology job does (``nertz streams apply --replicas 3``), and the four consuming services run as
processes while market-ingest replays a slice of the bundled data. Mid-replay the NERTZ stream's
leader node is SIGKILLed (a crash: the raft election takes 4-9 s, BUS.md §5.3) and started again
once a new leader is elected. The log and the projections then equal those of an uninterrupted
run of the same input on a single node: nothing lost, nothing duplicated, nothing changed, every
consumer caught up, and every node holds the same stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from nertz_cli import chaos, demo
from nertz_common import heartbeat, infra, subjects, topology
from nertz_common.node import snapshot
from nertz_common.testing.plugin import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "deploy" / "nats" / f"cluster-{i}.conf" for i in (1, 2, 3)]
ROWS = 3000  # bars per symbol (3 symbols), then the bundled WebSocket recording
KILL_AT = 0.4  # of the market data the baseline stored: the replay is still publishing
T = TypeVar("T")


def _ask(url: str, read: Callable[[Any], Awaitable[T]]) -> T:
    """``read(js)`` on a connection of its own to ``url`` that fails fast (a node may be down)."""
    return asyncio.run(chaos.probe(url, read))


def _poll(what: str, fn: Callable[[], T | None], timeout_s: float, every_s: float = 0.05) -> tuple[T, float]:
    """Call ``fn`` until it returns something other than None (errors count as None); return it and
    the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            got = fn()
        except Exception:  # a node down, an election under way: ask again
            got = None
        if got is not None:
            return got, time.monotonic() - t0
        time.sleep(every_s)
    raise AssertionError(f"expected {what} within {timeout_s:.0f} s, was not")


async def _sql(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def databases(database_url: str) -> Iterator[Callable[[str], str]]:
    """A factory of new, empty databases on the session's server (dropped afterwards)."""
    made: list[str] = []

    def new(label: str) -> str:
        name = f"cluster_{label}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_sql(database_url, f'CREATE DATABASE "{name}"'))
        made.append(name)
        return with_database(database_url, name)

    yield new
    for name in made:
        asyncio.run(_sql(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[infra.EmbeddedCluster]:
    """The three nodes of deploy/nats/cluster-*.conf, healthy with a meta leader."""
    c = infra.start_cluster(CONFIGS, tmp_path / "cluster")
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()


def _streams_apply(url: str, replicas: int) -> str:
    """``nertz streams apply --replicas N`` as compose's topology job runs it (NATS_URL from the env)."""
    nertz = str(Path(sys.executable).with_name("nertz"))
    done = subprocess.run(
        [nertz, "streams", "apply", "--replicas", str(replicas)],
        env={**os.environ, "NATS_URL": url}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _replicas(js: Any) -> dict[str, int]:
    """The number of peers (leader included) of every stream, KV bucket and consumer of the topology."""
    peers: dict[str, int] = {}
    for stream in (subjects.STREAM, subjects.RAW_STREAM, f"KV_{snapshot.BUCKET}", f"KV_{heartbeat.BUCKET}"):
        si = await js.stream_info(stream)
        assert si.config.num_replicas == 3, f"{stream}: R{si.config.num_replicas}"
        peers[stream] = 1 + len(si.cluster.replicas or [])
    for spec in topology.CONSUMERS:
        ci = await js.consumer_info(subjects.STREAM, spec.durable)
        peers[spec.durable] = 1 + len(ci.cluster.replicas or [])
    return peers


def _run(stack: demo.Stack, files: list[list[Path]], during: Callable[[], None] = lambda: None) -> None:
    """The consuming services, the replay of ``files``, ``during()`` while it publishes, then the wait
    until every consumer has handled the whole log; the services are stopped after."""
    demo.start_services(stack, chaos.CONSUMERS)
    failed: list[BaseException] = []

    def replay() -> None:
        try:
            for group in files:
                demo.replay(stack, group, stdout=subprocess.DEVNULL)
        except BaseException as e:
            failed.append(e)

    replaying = threading.Thread(target=replay, name="replay")
    replaying.start()
    try:
        during()
        replaying.join()
        assert not failed, f"the replay failed: {failed[0]!r}"
        demo.wait_caught_up(stack, timeout_s=120)
    finally:
        replaying.join()
        stack.stop_services()


def test_cluster_through_a_leader_kill_loses_duplicates_and_changes_nothing(
    tmp_path, nats_url, databases, cluster, capsys
):  # fmt: skip
    files = demo.slice_input(tmp_path / "input", ROWS)

    # the uninterrupted run on a single node
    t0 = time.monotonic()
    asyncio.run(demo.apply_topology(nats_url, fresh=True))
    single_db = databases("single")
    _run(demo.Stack(tmp_path / "single", nats_url, single_db), files)
    base = chaos.snapshot(nats_url, single_db)
    base_md = sum(1 for key, _, _ in base.log if key.startswith("md."))
    single_s = time.monotonic() - t0

    # the topology as compose applies it: R1 first (an existing single-node set-up), then R3
    _streams_apply(cluster.url, 1)
    lines = _streams_apply(cluster.url, 3)
    assert "stream NERTZ: updated" in lines, lines
    # the consumers follow their stream onto 3 peers (num_replicas 0: the stream's) within a second or so
    peers: dict[str, int] = {}

    def three_peers() -> dict[str, int] | None:
        peers.update(_ask(cluster.nodes[0].url, _replicas))
        return peers if set(peers.values()) == {3} else None

    try:
        _poll("3 peers for every stream, KV bucket and consumer", three_peers, 15, 0.25)
    except AssertionError as e:
        raise AssertionError(f"{e}: {peers}") from None

    figures: dict[str, float] = {}
    notes: list[str] = []

    def kill_the_leader() -> None:
        first = cluster.nodes[0].url
        _poll("the replay mid-way", lambda: chaos.stored(first, "md") >= KILL_AT * base_md or None, 120, 0.01)
        figures["killed at md"] = chaos.stored(first, "md")
        info = _ask(first, lambda js: js.stream_info(subjects.STREAM))
        leader, before = info.cluster.leader, info.state.last_seq
        meta_before = cluster.meta_leader()
        victim = cluster.node(leader)
        survivor = next(n for n in cluster.nodes if n is not victim)
        t_kill = time.monotonic()
        victim.kill(signal.SIGKILL)

        def new_leader() -> str | None:
            si = _ask(survivor.url, lambda js: js.stream_info(subjects.STREAM))
            return si.cluster.leader if si.cluster.leader not in (None, leader) else None

        elected, figures["new leader s"] = _poll("a new stream leader", new_leader, 30)
        _, resumed = _poll(
            "writes to resume",
            lambda: _ask(survivor.url, lambda js: js.stream_info(subjects.STREAM)).state.last_seq > before or None,
            30,
        )
        figures["writes resumed s"] = resumed + figures["new leader s"]
        meta_after = _poll("a meta leader on a running node", lambda: cluster.meta_leader() or None, 30)[0]
        victim.restart()  # the crashed node rejoins under load and catches up from the others
        notes.append(
            f"killed {leader} (stream leader; meta leader {meta_before}) at seq {before:,}: new stream leader "
            f"{elected} after {figures['new leader s']:.2f} s, writes resumed after "
            f"{figures['writes resumed s']:.2f} s, meta leader {meta_after}"
        )
        assert time.monotonic() - t_kill < 60

    t0 = time.monotonic()
    cluster_db = databases("cluster")
    stack = demo.Stack(tmp_path / "on-cluster", cluster.url, cluster_db)
    _run(stack, files, during=kill_the_leader)
    run = chaos.snapshot(cluster.url, cluster_db)
    cluster_s = time.monotonic() - t0

    outcome = chaos.compare(base, run, chaos.Outcome("leader-kill"))
    assert outcome.ok, f"against the single-node run: {outcome}"
    assert len(run.log) == len(base.log) and run.rows == base.rows
    assert not run.dead_letters and not base.dead_letters, f"dead letters: {run.dead_letters or base.dead_letters}"
    assert figures["killed at md"] < base_md, "the leader was killed after the replay had finished"

    # every node holds the whole stream, its replica current
    def same_everywhere() -> tuple[int, int] | None:
        states = [
            (s["state"]["messages"], s["state"]["last_seq"])
            for n in cluster.nodes
            for a in n.monitor("/jsz?streams=true")["account_details"]
            for s in a["stream_detail"]
            if s["name"] == subjects.STREAM
        ]
        return states[0] if len(states) == len(cluster.nodes) and len(set(states)) == 1 else None

    (messages, last), caught_up_s = _poll("every node with the same stream", same_everywhere, 30)
    assert messages == last and last >= len(run.log)
    for node in cluster.nodes:
        assert node.proc.poll() is None

    with capsys.disabled():
        print(
            f"\ncluster: {len(run.log):,} events compared with the single-node run ({last:,} on the log); "
            f"{notes[0]}; killed at {figures['killed at md']:,.0f} of {base_md:,} market-data events; every "
            f"replica equal {caught_up_s:.2f} s after the run; single-node run {single_s:.1f} s, cluster run "
            f"{cluster_s:.1f} s"
        )
    kinds = Counter(key.split(".", 1)[0] for key, _, _ in base.log)
    assert kinds["exec"] > 0 and kinds["llm"] > 0, f"expected decisions down to the executor, was {kinds}"
