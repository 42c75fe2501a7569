"""Crash points, exhaustively, in memory: every component crashed at every k-th input and restarted from
its last snapshot derives exactly what the uninterrupted run derived.

The pipeline (signal → validator → executor) runs once over real bundled data through the in-memory log
runner, recording each component's inputs and, per input, what it emitted. Snapshots are taken every
``EVERY`` inputs (between steps, as the JetStream runner takes them) and go through msgpack, as in the
KV bucket. Then, for every crash point, a fresh component is restored from the last snapshot before it
and fed its recorded inputs from there: its outputs must equal the recorded ones, input by input.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import msgspec
import pytest

from nertz_cli import config, tools
from nertz_common import events as ev
from nertz_common.node.component import Node, NodeState, Output, Pos
from nertz_common.node.log_runner import LogRunner

ROOT = Path(__file__).resolve().parents[2]
ROWS = 4000  # bars per symbol (the stops' 4 h ATR needs the first day of them)
EVERY = {"signal": 400, "llm-validator": 40, "executor": 400}  # inputs between snapshots
STEP = 7  # a crash every STEP inputs
TAIL = 60  # inputs fed after the crash point


class Recording:
    """A node that records what reaches it, and snapshots itself every ``EVERY`` inputs when idle."""

    def __init__(self, node: Node, log: list, snaps: dict[int, bytes]) -> None:  # type: ignore[type-arg]
        self.node, self.log, self.snaps = node, log, snaps
        self.name, self.inputs = node.name, node.inputs

    def feed(self, e: ev.Event, p: Pos) -> list[Output]:
        outs = self.node.feed(e, p)
        self.log.append((e, p, outs))
        if len(self.log) % EVERY[self.name] == 0 and self.node.idle:
            self.snaps[len(self.log)] = msgspec.msgpack.encode(self.node.get_state())
        return outs

    def __getattr__(self, name: str) -> object:
        return getattr(self.node, name)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Per component: its inputs in order, what each input made it emit, and its snapshots by input index."""
    d = tmp_path_factory.mktemp("crash")
    files = []
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        with lzma.open(ROOT / "data" / "bybit_kline_1m" / f"{sym}_1m.csv.xz", "rt") as f:
            head = [next(f) for _ in range(ROWS + 1)]
        (d / f"{sym}_1m.csv").write_text("".join(head))
        files.append(d / f"{sym}_1m.csv")
    files.append(ROOT / "data" / "cryptofeed" / "BYBIT.linear.jsonl.xz")
    inputs = tools.load_inputs(files)
    settings = config.load(["signal.entry_threshold=8.5"])  # more intents, more lock transitions
    nodes = config.nodes(settings)
    log: dict[str, list[tuple[ev.Event, Pos, list[Output]]]] = {n.name: [] for n in nodes}
    snaps: dict[str, dict[int, bytes]] = {n.name: {0: msgspec.msgpack.encode(n.get_state())} for n in nodes}
    runner = LogRunner([Recording(n, log[n.name], snaps[n.name]) for n in nodes])  # type: ignore[misc]
    runner.run(inputs.records)
    assert sum(isinstance(e, ev.PositionClosed) for e, _ in runner.outputs["executor"]) >= 3
    return settings, log, snaps


@pytest.mark.parametrize("component", ["signal", "llm-validator", "executor"])
def test_crash_at_every_kth_input_restores_from_the_snapshot_and_derives_the_same(recorded, component):
    settings, log, snaps = recorded
    inputs = log[component]
    points = sorted(snaps[component])
    assert len(points) > 3, f"expected snapshots of {component} along the run, got {points}"
    crashes = 0
    for k in range(0, len(inputs), STEP):
        s = max(p for p in points if p <= k)
        node = next(n for n in config.nodes(settings) if n.name == component)
        node.set_state(msgspec.msgpack.decode(snaps[component][s], type=NodeState))
        for i in range(s, min(len(inputs), k + TAIL)):
            e, p, want = inputs[i]
            assert node.feed(e, p) == want, f"{component} crashed at {k}, restored at {s}: input {i} differs"
        crashes += 1
    assert crashes >= (100 if component == "llm-validator" else 1000), crashes


def test_a_snapshot_is_only_taken_between_steps(recorded):
    _, log, snaps = recorded
    # the executor waits at every closed bar: snapshots exist only where it was idle
    assert all(i % EVERY["executor"] == 0 for i in snaps["executor"])
    node = Node(config.nodes(config.load())[2].component)
    node.feed(log["executor"][0][0], log["executor"][0][1])  # a closed bar: now it awaits its snapshot
    if not node.idle:
        with pytest.raises(Exception, match="between steps"):
            node.get_state()
