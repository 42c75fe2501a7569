"""The ``nertz`` command: operate the event log and run the demo."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import nats
import typer

from nertz_common import topology

app = typer.Typer(
    help="Nertz: an event-sourced autopilot for Bybit V5 linear perpetuals over NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
)
streams = typer.Typer(help="The NERTZ stream and its durable consumers.", no_args_is_help=True)
app.add_typer(streams, name="streams")


@streams.command("apply")
def streams_apply(
    nats_url: Annotated[str, typer.Option(envvar="NATS_URL", help="NATS server URL")] = "nats://127.0.0.1:4222",
    max_age_days: Annotated[float, typer.Option(help="retention window of the log, days")] = 30.0,
    max_gb: Annotated[float, typer.Option(help="byte cap of the log, GiB")] = 20.0,
    replicas: Annotated[int, typer.Option(help="stream replicas (3 in a cluster)")] = 1,
) -> None:
    """Create or update the NERTZ stream and every service's consumer (idempotent; keeps positions)."""

    async def go() -> list[str]:
        nc = await nats.connect(nats_url)
        try:
            cfg = topology.stream_config(max_age_days=max_age_days, max_bytes=int(max_gb * 2**30), replicas=replicas)
            return await topology.apply(nc.jetstream(), stream=cfg)
        finally:
            await nc.close()

    for line in asyncio.run(go()):
        typer.echo(line)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="where NATS and Postgres keep their data (wiped first)")] = Path(
        "var/demo"
    ),
    exit_after: Annotated[
        bool, typer.Option("--exit/--serve", envvar="NERTZ_DEMO_EXIT", help="exit after the summary (else serve)")
    ] = False,
    summary: Annotated[
        Path | None, typer.Option(envvar="NERTZ_DEMO_SUMMARY", help="also write the summary as JSON here")
    ] = None,
    speed: Annotated[str, typer.Option(help="replay speed: max, or a multiple of real time (1, 60)")] = "max",
) -> None:
    """Run the five services on embedded NATS + Postgres, replay the bundled real Bybit data, print a summary.

    The 30 days of Bybit 1m bars (BTCUSDT, ETHUSDT, SOLUSDT) and then the real WebSocket recording are
    replayed through market-ingest → signal → llm-validator (rules) → executor (paper venue) → Postgres.
    The API (http://127.0.0.1:8081) stays up until Ctrl-C unless --exit / NERTZ_DEMO_EXIT=1.
    """
    from nertz_cli.demo import run_demo

    run_demo(data_dir, exit_after, summary, speed)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
