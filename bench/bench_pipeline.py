"""The demo's figures: md events/s published by ingest, end-to-end events/s through the five
services, when each consumer caught up, and the wall time — medians over ``--runs`` runs.

    .venv/bin/python bench/bench_pipeline.py --runs 3

Each run starts a fresh embedded NATS + Postgres under a temp dir, runs the services as processes,
replays the bundled data at --speed max, and waits until every consumer has handled the whole log.
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nats

from nertz_cli import demo
from nertz_common import subjects


async def _watch(url: str, t0: float, done: dict[str, float], stop: asyncio.Event) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    durables = [d for ds in demo.DURABLES.values() for d in ds]
    try:
        while True:
            stopping = stop.is_set()  # one more look once the wait is over: it may end between two
            for d in durables:
                ci = await js.consumer_info(subjects.STREAM, d)
                idle = ci.num_pending + ci.num_ack_pending == 0 and ci.ack_floor.stream_seq > 0
                if idle and d not in done:
                    done[d] = time.monotonic() - t0
                elif not idle:
                    done.pop(d, None)
            if stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await nc.close()


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nertz-bench-") as tmp:
        # as the demo: one replay of every file, started with the services while Postgres comes up
        files = [*demo.KLINE_FILES, demo.RECORDING]
        stack, t0 = demo.start_replaying(Path(tmp), files, stdout=subprocess.DEVNULL)
        try:
            demo.wait_replay(stack)
            ingest_s = time.monotonic() - t0
            md_events = asyncio.run(_count(stack.nats_url, "md.>"))
            done: dict[str, float] = {}

            async def watch_until_settled() -> int:
                stop = asyncio.Event()
                watcher = asyncio.create_task(_watch(stack.nats_url, t0, done, stop))
                n = await asyncio.to_thread(demo.wait_caught_up, stack, 900)
                stop.set()
                await watcher
                return n

            log_events = asyncio.run(watch_until_settled())
            total_s = time.monotonic() - t0
            demo.wait_api(stack)
        finally:
            stack.stop()
    fig = {
        "md_events": md_events,
        "ingest_events_per_s": md_events / ingest_s,
        "log_events": log_events,
        "pipeline_s": total_s,
        "end_to_end_events_per_s": log_events / total_s,
    }
    fig.update({f"caught_up_s.{k}": v for k, v in sorted(done.items())})
    return fig


async def _count(url: str, filter_subject: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM, subjects_filter=filter_subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1, help="runs to take the median of (each takes ~2-3 min)")
    args = p.parse_args()
    runs = []
    for i in range(args.runs):
        t = time.monotonic()
        runs.append(one_run())
        runs[-1]["demo_wall_s"] = time.monotonic() - t
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in runs[-1].items()), flush=True)
    keys = sorted({k for r in runs for k in r})
    print(f"\nmedians over {len(runs)} run(s):")
    for k in keys:
        vals = [r[k] for r in runs if k in r]
        print(f"  {k:36s} {statistics.median(vals):>12,.1f}")


if __name__ == "__main__":
    main()
