"""Replay speed: `nertz replay` of the whole demo log (~263k events), from JetStream and from a bundle.

Usage: ``.venv/bin/python bench/bench_replay.py [--runs 3]``

Starts embedded NATS, runs signal, the validator and the executor as processes on the bundled data
(as `make demo` does, ~40 s), then times, as whole commands (`nertz replay`, `nertz replay --bundle`,
interpreter start included), and in process (reading the log, re-deriving and comparing). Prints
medians beside the reference figure of the issue: ≤ 5 s for the whole demo log.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from nertz_cli import config, demo, tools
from nertz_common import aio


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd``; return its wall time (s).

    Raises
    ------
    RuntimeError
        If it does not report "identical".
    """
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if done.returncode != 0 or "identical:" not in done.stdout:
        raise RuntimeError(f"{' '.join(cmd)} did not report identical: {done.stdout[-500:]} {done.stderr[-500:]}")
    return dt


async def in_process(url: str) -> tuple[float, float, int]:
    """Return (seconds reading the log, seconds re-deriving and comparing, events)."""
    nc = await nats.connect(url)
    try:
        t0 = time.perf_counter()
        sl = await tools.read_slice(nc.jetstream(timeout=10))
        t1 = time.perf_counter()
        result = tools.rerun(sl, config.load())
        t2 = time.perf_counter()
    finally:
        await nc.close()
    if not result.ok:
        raise RuntimeError(f"the replay diverged: {result.divergence}")
    return t1 - t0, t2 - t1, len(sl.records)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per measurement (the median is printed)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = demo.start_infra(Path(tmp) / "demo")
        try:
            demo.start_services(stack, ("signal", "llm-validator", "executor"))
            for group in (demo.KLINE_FILES, [demo.RECORDING]):
                demo.replay(stack, group, stdout=subprocess.DEVNULL)
            events = demo.wait_caught_up(stack, timeout_s=600)
            stack.stop_services()
            env = {**os.environ, "NATS_URL": stack.nats_url}
            nertz = str(Path(sys.executable).parent / "nertz")
            bundle = Path(tmp) / "demo.nertz"
            subprocess.run([nertz, "export", "--out", str(bundle)], env=env, check=True, capture_output=True)
            stream = [timed([nertz, "replay"], env) for _ in range(args.runs)]
            offline = [timed([nertz, "replay", "--bundle", str(bundle)], env) for _ in range(args.runs)]
            parts = [aio.run(in_process(stack.nats_url)) for _ in range(args.runs)]
        finally:
            stack.stop()
    read = statistics.median(r for r, _, _ in parts)
    rerun = statistics.median(d for _, d, _ in parts)
    print(f"demo log: {events:,} events; bundle {bundle.name}")
    print(f"nertz replay (JetStream), whole command: median {statistics.median(stream):.2f} s  [reference: <= 5 s]")
    print(f"  of which reading the log {read:.2f} s ({parts[0][2] / read:,.0f} events/s), re-deriving and "
          f"comparing {rerun:.2f} s")  # fmt: skip
    print(f"nertz replay --bundle, whole command: median {statistics.median(offline):.2f} s  [reference: <= 5 s]")


if __name__ == "__main__":
    main()
