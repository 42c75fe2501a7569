"""The ``nertz`` command: operate the log, run the demo, and replay, export, backtest and verify.

``nertz`` is a composition root above the services: it runs their components (the same lines of
decision code as the live services) through the kernel's in-memory log runner.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import nats
import typer
from rich.table import Table

from nertz_cli.console import cli_console
from nertz_cli.data import app as data_app
from nertz_common import aio, bus, topology
from nertz_common.errors import ConfigurationError, InvariantViolation
from nertz_common.storage import StorageError

app = typer.Typer(
    help=(
        "Nertz: an event-sourced autopilot for Bybit V5 linear perpetuals over NATS JetStream.\n\n"
        "Live, replay and backtest run the same decision components: `nertz backtest` on files, "
        "`nertz replay` on the log (or a bundle from `nertz export`), `nertz verify` checks the Hard Lock."
    ),
    no_args_is_help=True,
    add_completion=False,
)
streams = typer.Typer(help="The NERTZ stream, its durable consumers and the snapshot bucket.", no_args_is_help=True)
app.add_typer(streams, name="streams")
app.add_typer(data_app, name="data")

err = cli_console(stderr=True)
out = cli_console()
T = TypeVar("T")

NatsUrl = Annotated[
    str, typer.Option(envvar="NATS_URL", help="NATS server URL (a cluster: its nodes' URLs separated by commas)")
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a decision setting, e.g. signal.entry_threshold=8 (repeatable)"),
]
FromSeq = Annotated[int | None, typer.Option(help="first stream sequence to re-derive")]
ToSeq = Annotated[int | None, typer.Option(help="last stream sequence to feed")]
Since = Annotated[str | None, typer.Option(help="start of the slice, UTC (e.g. 2025-06-01T00:00), event time")]
Until = Annotated[str | None, typer.Option(help="end of the slice, UTC, event time (exclusive)")]
Symbols = Annotated[str | None, typer.Option(help="comma-separated symbols to compare/report (default all)")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _utc_ns(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        _fail(f"expected a UTC time like 2025-06-01T00:00, was {text!r}")
        raise
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1e9)


def _symbols(text: str | None) -> list[str] | None:
    return [s.strip().upper() for s in text.split(",") if s.strip()] if text else None


def _with_js(nats_url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            nc = await asyncio.wait_for(
                nats.connect(bus.servers(nats_url), max_reconnect_attempts=1, connect_timeout=3), 10
            )
        except Exception as e:
            _fail(f"could not connect to NATS at {nats_url}: {e!r} (or pass --bundle FILE to work offline)")
            raise
        try:
            return await fn(nc.jetstream(timeout=10))
        finally:
            await nc.close()

    return aio.run(go())


def _settings(sets: list[str] | None, base: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from nertz_cli.config import load

    try:
        return load(sets or (), base)
    except ConfigurationError as e:
        _fail(str(e))
        raise


# --- streams ----------------------------------------------------------------------------------------


@streams.command("apply")
def streams_apply(
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    max_age_days: Annotated[float, typer.Option(help="retention window of the log, days")] = 30.0,
    max_gb: Annotated[float, typer.Option(help="byte cap of the log, GiB")] = 20.0,
    replicas: Annotated[
        int, typer.Option(help="replicas of the streams, their consumers and the KV buckets (3 in a cluster)")
    ] = 1,
) -> None:
    """Create or update the NERTZ and RAW streams, every service's consumer and the KV buckets (idempotent)."""

    async def go(js: Any) -> list[str]:
        cfg = topology.stream_config(max_age_days=max_age_days, max_bytes=int(max_gb * 2**30), replicas=replicas)
        return await topology.apply(js, stream=cfg, raw_stream=topology.raw_stream_config(replicas=replicas))

    for line in _with_js(nats_url, go):
        typer.echo(line)


# --- demo -------------------------------------------------------------------------------------------


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
    qwen: Annotated[
        bool, typer.Option(help="judge with Qwen: the real dashscope SDK against a fake DashScope on 127.0.0.1")
    ] = False,
    qwen_latency: Annotated[float, typer.Option(help="the fake DashScope's answer time, s (with --qwen)")] = 0.5,
) -> None:
    """Run the five services on embedded NATS + Postgres, replay the bundled real Bybit data, print a summary.

    The 30 days of Bybit 1m bars (BTCUSDT, ETHUSDT, SOLUSDT) and then the real WebSocket recording are
    replayed through market-ingest → signal → llm-validator → executor (paper venue) → Postgres. The
    validator runs the rules policy, or with --qwen asks Qwen through a local fake DashScope (no key,
    no network) and records every answer. The API (http://127.0.0.1:8081) stays up until Ctrl-C unless
    --exit / NERTZ_DEMO_EXIT=1.
    """
    from nertz_cli.demo import run_demo

    if qwen_latency < 0:
        _fail(f"--qwen-latency: expected >= 0 s, was {qwen_latency}")
    run_demo(data_dir, exit_after, summary, speed, qwen_latency if qwen else None)


# --- backtest ---------------------------------------------------------------------------------------


@app.command()
def backtest(
    files: Annotated[
        list[str], typer.Argument(help="kline CSVs (SYMBOL_1m.csv[.xz]), cryptofeed or Nertz recordings: paths or URLs")
    ],
    sets: Sets = None,
    symbols: Symbols = None,
    out_dir: Annotated[
        str, typer.Option("--out", help="where the JSON and HTML reports go: a directory or a URL (s3://bucket/dir)")
    ] = "var/backtest",
    html: Annotated[bool, typer.Option(help="write the HTML report (plotly, opens offline)")] = True,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="sweep a setting over values, e.g. 'signal.entry_threshold=6,7,8' (repeatable)"),
    ] = None,
    walk_forward: Annotated[
        int | None,
        typer.Option(
            help="walk-forward folds K (K + 1 windows): of a sweep, or alone the evaluation against "
            "buy-and-hold and random entries, in and out of sample"
        ),
    ] = None,
    random_runs: Annotated[
        int, typer.Option("--random", min=1, help="random-entry runs of a --walk-forward evaluation (seeds 0..N-1)")
    ] = 20,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler of a sweep, e.g. tcp://host:8786")] = None,
    workers: Annotated[int | None, typer.Option(help="local Dask workers of a sweep (default: the cores)")] = None,
    instruments: Annotated[
        str,
        typer.Option(
            help="instruments-info answer whose InstrumentSpec goes before each symbol's first event, as "
            "market-ingest's replay publishes it: 'bundled' (data/bybit_instruments_linear.json), a file, or 'none'"
        ),
    ] = "bundled",
) -> None:
    """Run signal, the rules validator and the Hard Lock with the paper venue over market data files.

    The components are the live services' (same code, same ids): a backtest of what `make demo` replays
    gives the events the demo publishes. Prints a summary and writes report.json and report.html
    (equity, drawdown, trades, factor contributions, fees, buy-and-hold of the same period). With
    --grid, runs a sweep on Dask and ranks the settings by out-of-sample results (--walk-forward K).
    With --walk-forward K alone, evaluates the settings in and out of sample beside buy-and-hold and
    --random N runs of random entries with the same exits and sizing (evaluation.json and .html).
    """
    from rich.progress import Progress

    from nertz_cli import report, tools

    settings = _settings(sets)
    try:
        with err.status("loading market data"):
            inputs = tools.load_inputs(files, _symbols(symbols), instruments)
    except (OSError, ValueError) as e:  # StorageError included
        _fail(str(e))
    if not inputs.records:
        _fail(f"no usable market data in {', '.join(map(str, files))} (rejected: {dict(inputs.rejected) or 'none'})")
    if inputs.rejected:
        err.print(f"[yellow]rejected input:[/] {dict(inputs.rejected)}")
    if grid:
        from nertz_cli import sweep

        try:
            with Progress(console=err, transient=True) as progress:
                result = sweep.run(
                    inputs.records, settings, sweep.parse_grid(grid), folds=walk_forward, scheduler=scheduler,
                    workers=workers, progress=progress,
                )  # fmt: skip
        except ConfigurationError as e:
            _fail(str(e))
        sweep.print_table(result, out)
        err.print(f"sweep written to {report.save(out_dir, 'sweep.json', json.dumps(result.as_dict(), indent=2))}")
        return
    if walk_forward is not None:
        from nertz_cli import evaluation

        try:
            with Progress(console=err, transient=True) as progress:
                ev_result = evaluation.evaluate(
                    inputs.records, settings, walk_forward, seeds=random_runs, scheduler=scheduler, workers=workers,
                    progress=progress,
                )  # fmt: skip
        except ConfigurationError as e:
            _fail(str(e))
        evaluation.print_table(ev_result, out)
        data = ev_result.as_dict()
        err.print(f"evaluation written to {report.save(out_dir, 'evaluation.json', json.dumps(data, indent=2))}")
        if html:
            from nertz_cli import html as html_report

            page = html_report.evaluation_page(data)
            err.print(f"HTML report written to {report.save(out_dir, 'evaluation.html', page)}")
        return
    try:
        client = tools.model_client(settings)
    except ConfigurationError as e:
        _fail(str(e))
    try:
        with err.status(f"backtesting {inputs.bars:,} bars"):
            run = tools.backtest(inputs.records, settings, answer=client.answer if client else None)
    finally:
        if client is not None:
            client.close()
    summary = report.of_run(run, inputs.files)
    _print_backtest(summary)
    err.print(f"report written to {report.save(out_dir, 'report.json', json.dumps(summary, indent=2))}")
    if html:
        from nertz_cli import html as html_report

        err.print(f"HTML report written to {report.save(out_dir, 'report.html', html_report.backtest_page(summary))}")


def _print_backtest(summary: dict[str, Any]) -> None:
    run = summary["run"]
    t = Table(title=f"Nertz backtest {run['first']} → {run['last']} ({run['bars']:,} bars)")
    for col in ("symbol", "intents", "approved", "locked out", "denied", "trades", "win rate", "P&L USDT",
                "fees USDT", "max DD USDT", "buy & hold"):  # fmt: skip
        t.add_column(col, justify="left" if col == "symbol" else "right")
    for sym, s in summary["symbols"].items():
        bh = s["buy_and_hold_return"]
        t.add_row(
            sym, str(s["intents"]), str(s["approved"]), str(s["suppressed"]), str(s["risk_denied"]), str(s["trades"]),
            f"{s['win_rate']:.1%}", f"{s['pnl_usdt']:,.2f}", f"{s['fees_usdt']:,.2f}", f"{s['max_drawdown_usdt']:,.2f}",
            "-" if bh is None else f"{bh:+.2%}",
        )  # fmt: skip
    out.print(t)
    tot = summary["total"]
    bh = tot["buy_and_hold_return"]
    share = tot["fees_share_of_gross"]
    out.print(
        f"equity {tot['start_equity_usdt']:,.2f} → {tot['end_equity_usdt']:,.2f} USDT ({tot['return']:+.2%}), "
        f"max drawdown {tot['max_drawdown']:.2%}, {tot['trades']} trades, win rate {tot['win_rate']:.1%}, "
        f"fees {tot['fees_usdt']:,.2f} USDT"
        + ("" if share is None else f" ({share:.0%} of gross P&L)")
        + ("" if bh is None else f"; buy-and-hold {bh:+.2%}")
    )
    out.print(f"{run['bars']:,} bars in {run['seconds']:.2f} s = {run['bars_per_s']:,.0f} bars/s")


# --- replay, export, verify -------------------------------------------------------------------------


def _slice(bundle: str | None, nats_url: str, from_seq: int | None, to_seq: int | None, since: str | None,
           until: str | None, snapshots: bool = True):  # type: ignore[no-untyped-def]  # fmt: skip
    from nertz_cli import tools
    from nertz_common.node.bundle import BundleError

    if bundle is not None:
        try:
            sl = tools.slice_of_bundle(bundle, from_seq=from_seq, to_seq=to_seq)
        except (BundleError, OSError) as e:  # StorageError included
            _fail(str(e))
        if since or until:
            s0, s1 = tools.boundary_of(sl.records, _utc_ns(since), _utc_ns(until))
            sl.start = s0 if s0 is not None else sl.start
            sl.until = s1 if s1 is not None else sl.until
        return sl
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("reading the log", total=None)

        def tick(seq: int, last: int) -> None:
            progress.update(task, completed=seq, total=last)

        try:
            return _with_js(
                nats_url,
                lambda js: tools.read_slice(
                    js,
                    from_seq=from_seq,
                    to_seq=to_seq,
                    since_ns=_utc_ns(since),
                    until_ns=_utc_ns(until),
                    use_snapshots=snapshots,
                    progress=tick,
                ),
            )
        except ConfigurationError as e:
            _fail(str(e))
            raise


@app.command()
def replay(
    bundle: Annotated[
        str | None, typer.Option(help="replay an exported bundle (offline; a path or a URL) instead of the stream")
    ] = None,
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
    since: Since = None,
    until: Until = None,
    symbols: Symbols = None,
    sets: Sets = None,
    counterfactual: Annotated[
        bool, typer.Option(help="report every decision that changed under --set, and each side's P&L")
    ] = False,
    snapshots: Annotated[bool, typer.Option(help="start each component from its snapshot before the slice")] = True,
    html: Annotated[Path | None, typer.Option(help="write the counterfactual's HTML report here")] = None,
) -> None:
    """Re-run signal, the validator and the executor over a slice of the log and compare with the recording.

    Prints "identical: N events" and exits 0, or the first divergence with both events field by field
    and exits 1. With --counterfactual (and --set), reports the changed decisions and the P&L of both sides.
    """
    from rich.progress import Progress

    from nertz_cli import tools
    from nertz_cli.config import parse_sets

    sl = _slice(bundle, nats_url, from_seq, to_seq, since, until, snapshots)
    settings = tools.as_recorded(_settings(sets, sl.config), sl.records, parse_sets(sets or ()))
    client = None
    if counterfactual:
        try:
            client = tools.model_client(settings)
        except ConfigurationError as e:
            _fail(str(e))
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("replaying", total=len(sl.records))
            result = tools.rerun(
                sl, settings, symbols=_symbols(symbols), progress=lambda i: progress.update(task, completed=i),
                ask=client.answer if client else None,
            )  # fmt: skip
    except InvariantViolation as e:
        out.print(f"[red]diverged[/]: {e}")
        raise typer.Exit(1) from None
    finally:
        if client is not None:
            client.close()
    if result.answers_served or result.answers_asked:
        err.print(
            f"model answers: {result.answers_served:,} served from the recording, {result.answers_asked:,} asked anew"
        )
    if counterfactual:
        cf = tools.counterfactual(result)
        _print_counterfactual(cf)
        if html is not None:
            from nertz_cli import html as html_report

            html.write_text(html_report.counterfactual_page(cf))
            err.print(f"HTML report written to {html}")
        return
    _print_replay(result, sl)
    raise typer.Exit(0 if result.ok else 1)


def _print_replay(result: Any, sl: Any) -> None:
    compared = ", ".join(f"{k} {v:,}" for k, v in sorted(result.compared.items()))
    snaps = ", ".join(f"{k} from origin {v.origin}" for k, v in sorted(sl.snapshots.items()) if v.origin < sl.start)
    err.print(
        f"{sl.source}: seq {sl.start}..{sl.until}, {result.inputs:,} inputs"
        + (f", snapshots: {snaps}" if snaps else "")
        + (f", {result.warmup:,} records of warm-up" if result.warmup else "")
    )
    if result.beyond:
        err.print(f"not compared (after the recording's last step): {dict(result.beyond)}")
    if not result.inputs:
        err.print(
            f"[yellow]no external input (market data, command) between seq {sl.start} and {sl.until}: "
            "nothing to re-derive[/]"
        )
    if result.ok:
        out.print(f"identical: {result.identical:,} events ({compared})")
        return
    d = result.divergence
    out.print(
        f"[red]diverged[/] after {result.identical:,} identical events: "
        f"{d.producer} event #{d.index}, origin {d.origin}"
    )
    t = Table(title="first divergence")
    t.add_column("field")
    t.add_column("recorded")
    t.add_column("derived")
    for name, a, b in d.fields():
        t.add_row(name, repr(a), repr(b))
    out.print(t)
    if d.recorded is not None:
        out.print(f"recorded at seq {d.recorded.seq}: {type(d.recorded.event).__name__} {d.recorded.event.event_id}")


def _print_counterfactual(cf: Any) -> None:
    t = Table(title=f"counterfactual: {len(cf.changed)} decision(s) changed")
    for col in ("intent", "symbol", "recorded", "derived"):
        t.add_column(col)
    for iid, a, b in cf.changed[:200]:
        sym = (a or b).intent.symbol if (a or b) and (a or b).intent else "?"
        t.add_row(iid[:8], sym, " / ".join(a.key()) if a else "(none)", " / ".join(b.key()) if b else "(none)")
    out.print(t)
    if len(cf.changed) > 200:
        out.print(f"... and {len(cf.changed) - 200} more")
    out.print(f"P&L recorded {cf.pnl_recorded:,.2f} USDT, derived {cf.pnl_derived:,.2f} USDT")


@app.command()
def export(
    out_file: Annotated[str, typer.Option("--out", help="the bundle file to write (.nertz): a path or a URL")],
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    from_seq: FromSeq = None,
    to_seq: ToSeq = None,
    since: Since = None,
    until: Until = None,
    sets: Sets = None,
) -> None:
    """Write a portable incident bundle: the log slice, the snapshots at its start, the configuration
    (secrets removed), the code version, and a manifest with the sha256 of each part.

    `nertz replay --bundle FILE` replays it on any machine, with no NATS, Postgres, exchange or model.
    """
    from nertz_cli import tools
    from nertz_common.node.bundle import summary
    from nertz_common.storage import Storage

    sl = _slice(None, nats_url, from_seq, to_seq, since, until)
    manifest = tools.export(sl, _settings(sets), out_file)
    size = Storage().size(out_file)
    out.print(f"bundle written to {out_file} ({size / 1e6:.1f} MB): {summary(manifest)}")


@app.command()
def verify(
    bundle: Annotated[
        str | None, typer.Option(help="verify an exported bundle (a path or a URL) instead of the stream")
    ] = None,
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    database_url: Annotated[
        str | None, typer.Option(help="also check the Postgres projections against the log")
    ] = None,
) -> None:
    """Check the Hard Lock and accounting invariants over a whole history; exit 1 on any violation.

    No order while a symbol's lock is engaged; every verdict in a locked state has its SignalSuppressed;
    every position ends by TP, SL or stale exit; P&L and fees add up (and equal the projections with
    --database-url); ids are unique.
    """
    from nertz_cli import verify as checks

    sl = _slice(bundle, nats_url, None, None, None, None, snapshots=False)
    results = checks.verify(sl.records)
    if database_url:
        results.append(checks.projections(sl.records, aio.run(_projected(database_url))))
    for c in results:
        out.print(("[green]" if c.ok else "[red]") + c.line() + "[/]")
        for v in c.violations[: checks.MAX_SHOWN]:
            out.print(f"    {v}")
        if len(c.violations) > checks.MAX_SHOWN:
            out.print(f"    ... and {len(c.violations) - checks.MAX_SHOWN} more")
        for n in c.notes:
            out.print(f"    note: {n}")
    bad = [c.name for c in results if not c.ok]
    out.print(
        f"verify: {len(sl.records):,} events, "
        + (f"[red]{len(bad)} check(s) failed: {', '.join(bad)}[/]" if bad else "every invariant holds")
    )
    raise typer.Exit(1 if bad else 0)


@app.command()
def chaos(
    data_dir: Annotated[Path, typer.Option(help="where the chaos NATS, Postgres and logs live (wiped first)")] = Path(
        "var/chaos"
    ),
    rows: Annotated[int, typer.Option(min=500, help="1m bars per symbol replayed (then the WS recording)")] = 15_000,
    short: Annotated[
        bool, typer.Option("--short", help="one run with a little of every fault (as in make test)")
    ] = False,
    kills: Annotated[int, typer.Option(min=1, help="random SIGKILLs over every service, ingest included")] = 20,
    outage: Annotated[float, typer.Option(min=1, help="length of the long NATS and Postgres outages, s")] = 30.0,
    seed: Annotated[int, typer.Option(help="seed of the random kills")] = 7,
    only: Annotated[str | None, typer.Option(help="comma-separated substrings: run only the faults named so")] = None,
) -> None:
    """Inject faults into the running services and compare each run with an uninterrupted one; exit 1 if any
    event was lost, duplicated or changed, a run stalled, or the API answered an error.

    The services run as processes on their own embedded NATS JetStream and PostgreSQL; every fault runs
    the same slice of the bundled Bybit data on a fresh stream and database: SIGKILLs of every service
    (random, seeded), NATS SIGTERM/SIGKILL and outages, Postgres down while the API is read; and the
    live feed (python -m nertz_ingest live against the fake Bybit) SIGKILLed at seeded script minutes.
    """
    from nertz_cli import chaos as lab_

    faults = lab_.short_suite(seed) if short else lab_.full_suite(seed, kills, outage)
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        faults = [f for f in faults if any(w in f.name or w in f.describe for w in wanted)]
        if not faults:
            _fail(f"--only {only!r}: no fault is named so")
    lab = lab_.open_lab(data_dir, rows, say=err.print)
    try:
        replayed = sum(f.live is None for f in faults)
        live = len(faults) - replayed
        what = [f"{replayed} on {rows:,} bars × 3 symbols + the WS recording"] if replayed else []
        what += [f"{live} on the live feed against the fake Bybit's scripted market"] if live else []
        err.print(f"chaos: {len(faults)} fault run(s), {' and '.join(what)}; logs in {data_dir}")
        _, outcomes = lab_.run_suite(lab, faults)
    finally:
        lab.stop()
    lab_.print_outcomes(outcomes, out)
    raise typer.Exit(0 if all(o.ok for o in outcomes) else 1)


@app.command()
def watch(
    nats_url: NatsUrl = "nats://127.0.0.1:4222",
    symbols: Annotated[str | None, typer.Option(help="comma-separated symbols to show, e.g. BTCUSDT,ETHUSDT")] = None,
    since: Annotated[
        str, typer.Option(help="start of the history: a duration before the last event (30m, 1h, 2d) or a UTC time")
    ] = "1h",
    from_seq: Annotated[int | None, typer.Option(min=1, help="start at this stream sequence instead")] = None,
    refresh: Annotated[float, typer.Option(min=0.2, max=30, help="screen refreshes per second, Hz")] = 4.0,
    screen: Annotated[bool, typer.Option(help="draw full-screen (the terminal's alternate screen)")] = True,
) -> None:
    """Follow the log live in the terminal: per symbol the price, factors and score, trend, lock, last verdict,
    position and P&L, and a ticker of suppressed signals and overrides (event time, UTC). Ctrl-C exits.

    Reads with an ephemeral ordered consumer (the services' durable consumers are not touched): the
    last event of each watched subject before the start, then the log from --since (or --from-seq) on.
    """
    from nertz_cli import watch as watch_

    try:
        opts = watch_.Options(nats_url, watch_.parse_symbols(symbols), watch_.parse_since(since), from_seq, refresh,
                              screen)  # fmt: skip
    except ValueError as e:
        _fail(str(e))
    try:
        raise typer.Exit(watch_.run(opts))
    except watch_.WatchError as e:
        _fail(str(e), 1)


async def _projected(url: str) -> dict[str, tuple[int, float]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT symbol, count(*) AS n, coalesce(sum(realized_pnl_usdt), 0) AS p FROM round_trips GROUP BY symbol"
        )
    finally:
        await conn.close()
    return {r["symbol"]: (int(r["n"]), float(r["p"])) for r in rows}


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # a command reads a log or a file once and exits: the cyclic collector would only rescan it
    gc.disable()
    try:
        app()
    except StorageError as e:  # a store to fix (bucket, credentials: exit 2) or to wait for (network: exit 1)
        err.print(f"[red]error:[/] {e}")
        sys.exit(2 if isinstance(e, ConfigurationError) else 1)
    except ConfigurationError as e:
        err.print(f"[red]configuration error:[/] {e}")
        sys.exit(2)
