"""``nertz watch``: the view's fold and its screen without a terminal, then the command itself in a tmux pane
reading a real NATS JetStream log, its screen read back with ``tmux capture-pane``.

The trade is the real executor's (paper venue): a long BTCUSDT entry fills, the Hard Lock engages, the
next verdict is suppressed, the take-profit closes the position, the cooldown elapses. ETHUSDT gets a
risk override and a denial; SOLUSDT events must not show when ``--symbols`` leaves it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest
from rich.console import Console
from typer.testing import CliRunner

from nertz_cli import watch
from nertz_cli.main import app
from nertz_common import bus, infra, subjects, topology
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_executor.core.component import Executor
from nertz_executor.core.config import MINUTE_NS, SECOND_NS, ExecutorConfig
from nertz_signal.core.config import SignalConfig

HOW_TO_GET_TMUX = "the terminal test drives `nertz watch` in tmux: apt-get install tmux (or set NERTZ_SKIP_TMUX=1)"
NERTZ = str(Path(sys.executable).parent / "nertz")
START_S = 40.0  # the longest a first screen may take: the interpreter's start-up and imports, on a loaded machine


# --- a realistic log ------------------------------------------------------------------------------------


def _snap(b: ev.Bar, intent_id: str | None = None, combined: float = 2.0, veto: str | None = None) -> ev.FactorSnapshot:
    t = b.ts_event
    return ev.FactorSnapshot(event_id=derive_id("fs", b.event_id), ts_event=t, ts_init=t, symbol=b.symbol,
                             bar_id=b.event_id, interval="1", close=b.close, egm=0.62, ild=0.41, rol=0.35,
                             pio=-0.2, ogm=None, combined=combined, used=["egm", "ild", "rol", "pio"],
                             trend="up", intent_id=intent_id, veto=veto)  # fmt: skip


def _corr(e: ev.Correlated) -> dict[str, object]:
    return dict(ts_event=e.ts_event, ts_init=e.ts_event, symbol=e.symbol, correlation_id=e.correlation_id,
                causation_id=e.event_id)  # fmt: skip


def scenario() -> tuple[list[ev.Event], list[ev.Event], list[ev.Event]]:
    """Return three phases of a log: (1) BTCUSDT long open and locked, its next verdict suppressed, ETHUSDT
    overridden and denied, SOLUSDT trading; (2) the take-profit closes the long; (3) the cooldown ends.

    Inputs are fed to the real executor (paper venue, 2 min cooldown) and its outputs follow each input,
    as on the log.
    """
    node = Node(Executor(ExecutorConfig(slippage_bps=0.0, cooldown_ns=2 * MINUTE_NS)))
    t = f.T0_NS - MINUTE_NS
    spec = ev.InstrumentSpec(event_id="spec", ts_event=t, ts_init=t, symbol="BTCUSDT", tick_size=0.1, qty_step=0.001,
                             min_order_qty=0.001, min_notional_usdt=5.0)  # fmt: skip
    start = ev.TradingStarted(event_id="ts", ts_event=t, ts_init=t, actor="api")
    b0, b1 = f.bar(0, close=100.0), f.bar(1, close=101.0)
    i0, i1 = f.intent(b0, sl=0.02, qty=0.5), f.intent(b1, sl=0.02, qty=0.5)
    v0 = f.verdict(i0, reasons=["score 7.0 over 6.4", "trend up"])
    v1 = f.verdict(i1, reasons=["trend still up"])
    e0, s0 = f.bar(0, symbol="ETHUSDT", close=2500.0), f.bar(0, symbol="SOLUSDT", close=150.0)
    ie = f.intent(e0, sl=0.02)
    override = ev.RiskOverrideIssued(
        event_id="ro", **_corr(ie), trigger="5 losses in a row (limit 5)", policy="rules",  # type: ignore[arg-type]
        overrides=[ev.RiskOverride(override_id="o1", kind="entry_threshold", symbol="ETHUSDT", value=8.0,
                                   until_ns=ie.ts_event + 6 * 3_600_000_000_000, reason="breaker")],
    )  # fmt: skip
    denied = ev.RiskDenied(event_id="rd", **_corr(ie), rule="max_positions", reason="1 open position, max 1")  # type: ignore[arg-type]
    sol = f.verdict(f.intent(s0), reasons=["SOLVERDICTREASON"])
    one: list[ev.Event] = [
        start, spec, b0, _snap(b0, i0.event_id, 7.0), i0, v0, f.book(b0.ts_event + 30 * SECOND_NS, mid=100.0),
        e0, _snap(e0, combined=-3.1, veto="funding 0.31 % per 8 h"), override, denied, s0, _snap(s0), sol,
        b1, _snap(b1, i1.event_id, 6.9), i1, v1,
        ev.Ticker(event_id="tk", ts_event=b1.ts_event + SECOND_NS, ts_init=b1.ts_event + SECOND_NS, symbol="BTCUSDT",
                  last_price=103.5, mark_price=103.4),
    ]  # fmt: skip
    b2 = f.bar(2, close=106.5, open=103.5)
    two: list[ev.Event] = [b2, _snap(b2)]
    three: list[ev.Event] = [x for k in (3, 4, 5) for x in (f.bar(k, close=106.0), _snap(f.bar(k, close=106.0)))]
    out: list[list[ev.Event]] = []
    n = 0
    for phase in (one, two, three):
        events: list[ev.Event] = []
        for e in phase:
            n += 1
            events.append(e)
            if type(e) not in node.inputs:
                continue
            for o, _ in node.feed(e, Pos(n, n)):
                n += 1
                events.append(o)
        out.append(events)
    return out[0], out[1], out[2]


def fold(events: list[ev.Event], symbols: list[str] | None = None, **kw: object) -> watch.WatchState:
    state = watch.WatchState(symbols, SignalConfig(), **kw)  # type: ignore[arg-type]
    for i, e in enumerate(events, 1):
        state.apply(e, i)
    return state


def screen(state: watch.WatchState, width: int = 140, bus_: str = "live") -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(watch.render(state, bus_))
    return console.export_text()


# --- the fold -----------------------------------------------------------------------------------------


def test_watch_state_open_position_folds_lock_verdict_and_unrealized_pnl():
    one, _, _ = scenario()
    s = fold(one)
    btc = s.symbols["BTCUSDT"]
    assert btc.lock == "LOCKED" and btc.lock_since_ns == f.bar(0).ts_event + 30 * SECOND_NS
    assert btc.position is not None and btc.position.side == "long" and btc.position.qty == 0.5
    assert btc.price == 103.5 and btc.price_source == "last"
    opened = next(e for e in one if isinstance(e, ev.PositionOpened))  # filled at the ask, 100.05
    assert (btc.position.entry_price, btc.position.initial_stop) == (opened.entry_price, opened.stop_loss)
    assert btc.position.unrealized_usdt(103.5) == pytest.approx((103.5 - opened.entry_price) * 0.5)
    assert btc.position.r_multiple(103.5) == pytest.approx((103.5 - opened.entry_price) / (opened.entry_price - 98.0))
    assert btc.verdict is not None and btc.verdict.reasons == ["trend still up"]
    assert s.threshold_of(btc) == SignalConfig().threshold_for(["egm", "ild", "rol", "pio"])
    assert s.trading is not None and s.trading.on
    kinds = [(t.symbol, t.kind) for t in s.ticker]
    assert kinds == [("", "trading"), ("ETHUSDT", "override"), ("ETHUSDT", "denied"), ("BTCUSDT", "suppressed")]
    eth = s.symbols["ETHUSDT"]
    assert s.threshold_of(eth) == 8.0  # the override raises the configured threshold of its factor set
    assert list(s.symbols) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_watch_state_take_profit_then_cooldown_elapsed_ends_flat_with_realized_pnl():
    one, two, three = scenario()
    s = fold(one + two)
    btc = s.symbols["BTCUSDT"]
    closed = next(e for e in two if isinstance(e, ev.PositionClosed))
    assert btc.lock == "COOLDOWN" and btc.position is None and btc.last_close == closed
    assert btc.realized_usdt == pytest.approx(closed.realized_pnl_usdt) and btc.trades == 1
    for i, e in enumerate(three, len(one) + len(two) + 1):
        s.apply(e, i)
    assert btc.lock == "FLAT" and btc.lock_since_ns == next(e for e in three if isinstance(e, ev.LockReleased)).ts_event
    assert s.realized_usdt() == pytest.approx(closed.realized_pnl_usdt)


def test_watch_state_symbols_leave_out_every_other_symbol():
    one, _, _ = scenario()
    s = fold(one, ["BTCUSDT", "ETHUSDT"])
    assert list(s.symbols) == ["BTCUSDT", "ETHUSDT"]
    assert all(t.symbol != "SOLUSDT" for t in s.ticker)


def test_watch_state_seeded_close_sets_state_but_adds_no_realized_pnl():
    one, two, _ = scenario()
    s = watch.WatchState()
    for i, e in enumerate(one + two, 1):
        s.apply(e, i, seeded=True)
    btc = s.symbols["BTCUSDT"]
    assert btc.lock == "COOLDOWN" and btc.last_close is not None
    assert btc.realized_usdt == 0 and btc.trades == 0 and s.window_start_ns is None


def test_watch_state_reduced_then_closed_counts_the_round_trip_once():
    one, _, _ = scenario()
    s = fold(one)
    opened = next(e for e in one if isinstance(e, ev.PositionOpened))
    c = _corr(opened)
    reduced = ev.PositionReduced(event_id="r", **c, position_id=opened.position_id, side="long", qty_closed=0.25,  # type: ignore[arg-type]
                                 qty_left=0.25, entry_price=100.0, exit_price=103.0, realized_pnl_usdt=0.7,
                                 fee_usdt=0.05)  # fmt: skip
    closed = ev.PositionClosed(event_id="c", **c, position_id=opened.position_id, side="long", qty=0.25,  # type: ignore[arg-type]
                               entry_price=100.0, exit_price=104.0, exit_reason="trailing_stop", realized_pnl_usdt=0.9,
                               fee_usdt=0.05, return_fraction=0.036, holding_ns=MINUTE_NS, reduced_qty=0.25,
                               reduced_pnl_usdt=0.7, reduced_fee_usdt=0.05)  # fmt: skip
    s.apply(reduced)
    assert s.symbols["BTCUSDT"].position.qty == 0.25  # type: ignore[union-attr]
    assert s.symbols["BTCUSDT"].realized_usdt == pytest.approx(0.7)
    s.apply(closed)
    assert s.symbols["BTCUSDT"].realized_usdt == pytest.approx(closed.trade_pnl_usdt)


def test_watch_state_ticker_keeps_the_last_entries_only():
    one, _, _ = scenario()
    s = fold(one, ticker_size=2)
    assert [t.kind for t in s.ticker] == ["denied", "suppressed"]


def test_watch_state_config_change_moves_the_threshold_and_a_bad_one_is_ignored():
    one, _, _ = scenario()
    t = one[-1].ts_event
    s = fold(one)
    s.apply(ev.ConfigChanged(event_id="cc", ts_event=t, ts_init=t, changes={"signal.entry_threshold_books": 7.5}))
    s.apply(ev.ConfigChanged(event_id="cc2", ts_event=t, ts_init=t, changes={"signal.entry_threshold_books": -1}))
    assert s.threshold_of(s.symbols["BTCUSDT"]) == 7.5
    assert s.ticker[-1].kind == "config" and "signal.entry_threshold_books=-1" in s.ticker[-1].text


def test_watch_state_trading_switches_halts_and_override_expiry():
    one, _, _ = scenario()
    s = fold(one)
    t = one[-1].ts_event
    btc, eth = s.symbols["BTCUSDT"], s.symbols["ETHUSDT"]
    s.apply(ev.TradingStopped(event_id="s1", ts_event=t, ts_init=t, scope="BTCUSDT", reason="by hand"))
    s.apply(ev.TradingStopped(event_id="s2", ts_event=t, ts_init=t, reason="maintenance"))
    assert s.trading is not None and not s.trading.on and btc.halt is not None and eth.halt is None
    assert "trading: OFF" in screen(s) and "halted" in _row(screen(s), "BTCUSDT", "markets")
    s.apply(ev.TradingStarted(event_id="s3", ts_event=t, ts_init=t))
    assert s.trading.on and btc.halt is None  # a start of every symbol lifts each symbol's halt
    later = t + 7 * 3_600_000_000_000  # past the override's six hours
    s.apply(f.bar(600, symbol="ETHUSDT", close=2400.0, ts_event=later, ts_init=later))
    assert s.threshold_of(eth) == SignalConfig().threshold_for(["egm", "ild", "rol", "pio"])


def test_watch_filters_keep_every_event_the_screen_needs_and_no_book_or_trade():
    events = [e for phase in scenario() for e in phase]
    fs = watch.filters()
    read = watch.WatchState(None, SignalConfig())
    for seq, e in enumerate(events, 1):
        if any(topology.matches(x, subjects.for_event(e)) for x in fs):
            read.apply(e, seq)
    assert screen(read) == screen(fold(events))
    assert topology.types_of(fs) >= watch.SHOWN
    assert ev.BookSnapshot not in topology.types_of(fs) and ev.TradeBatch not in topology.types_of(fs)


# --- the screen ---------------------------------------------------------------------------------------


def unrealized(one: list[ev.Event], price: float = 103.5) -> tuple[str, str]:
    """The open long's unrealized P&L and R-multiple at ``price`` as the screen writes them."""
    p = next(e for e in one if isinstance(e, ev.PositionOpened))
    return (
        f"{(price - p.entry_price) * p.qty:+,.2f}",
        f"{(price - p.entry_price) / (p.entry_price - p.stop_loss):+.2f}R",
    )


def test_render_140_columns_shows_every_section():
    one, _, _ = scenario()
    text = screen(fold(one, ["BTCUSDT", "ETHUSDT"]))
    for expected in ("event time 2025-05-30 16:41:01 UTC", "bus: live", "trading: ON", "BTCUSDT", "103.5000 last",
                     "LOCKED 16:40:30", "approve long 0.70 rules", "trend still up", "long 0.5 @ 100.0500",
                     *unrealized(one), "suppressed", "locked_same_side", "threshold ≥ 8.0", "max_positions",
                     "veto: funding", "EGM", "+0.62", "+6.9/±6.4"):  # fmt: skip
        assert expected in text, f"{expected!r} not on the screen:\n{text}"
    assert "SOLUSDT" not in text


@pytest.mark.parametrize("width", [100, 80, 60])
def test_render_narrow_keeps_symbol_lock_and_position_within_the_width(width: int):
    one, _, _ = scenario()
    text = screen(fold(one), width)
    assert max(len(line) for line in text.splitlines()) <= width
    for expected in ("BTCUSDT", "LOCKED", "long 0.5", "suppressed"):
        assert expected in text, f"{expected!r} not on the {width}-column screen:\n{text}"
    assert ("EGM" in text) == (width >= watch.MEDIUM_WIDTH)


def test_render_before_any_event_says_so():
    text = screen(watch.WatchState(["BTCUSDT"]), bus_="connecting")
    assert "bus: connecting" in text and "BTCUSDT" in text


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["BTC-USDT", ",", "btcusdt,ETH/USDT"])
def test_watch_bad_symbols_exit_2_with_a_message(bad: str):
    result = CliRunner().invoke(app, ["watch", "--symbols", bad])
    assert result.exit_code == 2, result.output
    assert "--symbols: expected comma-separated exchange symbols" in result.output


def test_watch_parse_since_takes_durations_and_utc_times():
    assert watch.parse_since("90m") == ("ago", 90 * MINUTE_NS)
    assert watch.parse_since("2025-05-30T16:39") == ("at", f.T0_NS)
    with pytest.raises(ValueError, match="--since: expected a duration"):
        watch.parse_since("yesterday")


def test_watch_no_server_exits_1_with_a_message():
    result = CliRunner().invoke(app, ["watch", "--nats-url", f"nats://127.0.0.1:{infra.free_port()}"])
    assert result.exit_code == 1 and "could not connect to NATS" in result.output


# --- against the log ----------------------------------------------------------------------------------


async def _publish(js: object, events: list[ev.Event]) -> None:
    await bus.Publisher(js).publish_many(events)  # type: ignore[arg-type]


async def test_watch_start_of_since_finds_the_first_event_in_the_window(js_fresh):
    bars = [f.bar(i) for i in range(120)]  # two hours of 1m bars
    await _publish(js_fresh, bars)
    assert await watch.start_of(js_fresh, ("ago", 60 * MINUTE_NS)) == 60  # bar 59 closes an hour before bar 119
    assert await watch.start_of(js_fresh, ("at", bars[9].ts_event)) == 10
    assert await watch.start_of(js_fresh, ("at", bars[-1].ts_event + 1)) == 121


async def test_watch_reader_seeds_the_lock_and_position_from_before_the_window(js_fresh, nats_url):
    one, _, _ = scenario()
    await _publish(js_fresh, one)
    start = next(i for i, e in enumerate(one, 1) if isinstance(e, ev.IntentProposed) and e.ts_event > f.bar(0).ts_event)
    nc = await nats.connect(nats_url)
    try:
        state = watch.WatchState(["BTCUSDT"])
        reader = watch.LogReader(nc, nc.jetstream(timeout=10), state)
        await reader.seed(start)
        seeded = state.last_seq
        await reader.follow(start)
        deadline = time.monotonic() + 10
        while state.last_seq != len(one) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await reader.close()
    finally:
        await nc.close()
    btc = state.symbols["BTCUSDT"]
    engaged = next(e for e in one if isinstance(e, ev.LockEngaged))
    assert seeded is not None and seeded < start and state.last_seq == len(one)
    assert btc.lock == "LOCKED" and btc.lock_since_ns == engaged.ts_event  # from the last exec.lock before the start
    assert btc.position is not None and btc.position.qty == 0.5
    assert state.window_start_ns == one[start - 1].ts_event


class Tmux:
    """A tmux server of its own (socket ``nertz-test-<pid>-<test>``) running one command in a 140 × 45 pane."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"nertz-test-{os.getpid()}-{tmp.name}"
        self.base = ["tmux", "-u", "-L", self.socket, "-f", os.devnull]
        self.rc = tmp / "exit-status"

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        envs = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        # a shell writes the command's exit status (tmux at times leaves an exited pane's process unreaped,
        # with no status); its trap only keeps it alive past the Ctrl-C meant for the command, which gets
        # the default SIGINT; remain-on-exit in the same tmux command keeps the last screen to read
        rc = shlex.quote(str(self.rc))
        script = f"trap true INT; {shlex.join(argv)}; echo $? > {rc}.part && mv {rc}.part {rc}"
        subprocess.run([*self.base, "new-session", "-d", "-s", "watch", "-x", "140", "-y", "45", *envs, "--", "sh",
                        "-c", script, ";", "set-option", "-w", "-t", "watch", "remain-on-exit", "on"],
                       check=True)  # fmt: skip

    def screen(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "watch"], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "watch", *keys], check=True)

    def exit_status(self) -> str | None:
        """The command's exit status; None while it runs."""
        return self.rc.read_text().strip() if self.rc.exists() else None

    def wait_for(self, what: str, cond: Callable[[str], bool], timeout_s: float = 15.0) -> str:
        """Poll the screen until ``cond`` holds; fail showing the last screen."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.screen()
            if cond(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"the screen did not show {what} within {timeout_s} s; last screen:\n{text}")
            time.sleep(0.1)  # a poll interval, not a stand-in for the condition

    def kill(self) -> None:
        """Stop the server and remove its socket file (tmux leaves it behind)."""
        socket = subprocess.run([*self.base, "display-message", "-p", "#{socket_path}"], capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        subprocess.run([*self.base, "kill-server"], capture_output=True)
        if socket:
            Path(socket).unlink(missing_ok=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("NERTZ_SKIP_TMUX") == "1":
            pytest.skip(HOW_TO_GET_TMUX)
        pytest.fail(f"tmux is not installed: {HOW_TO_GET_TMUX}")
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def _env(nats_url: str) -> dict[str, str]:
    return {"NATS_URL": nats_url, "TERM": "xterm-256color", "LANG": "C.UTF-8", "COLUMNS": "", "LINES": ""}


def _row(text: str, symbol: str, table: str) -> str:
    """The line of ``symbol`` in the table titled ``table``."""
    _, _, rest = text.partition(table)
    return next((line for line in rest.splitlines() if line.lstrip().startswith(symbol)), "")


async def test_watch_in_tmux_follows_the_log_filters_symbols_and_exits_0_on_ctrl_c(js_fresh, nats_url, tmux):
    one, two, three = scenario()
    await _publish(js_fresh, one)
    tmux.start([NERTZ, "watch", "--symbols", "BTCUSDT,ETHUSDT", "--since", "1h"], _env(nats_url))
    # a capture can catch a frame half drawn: every expectation is part of the condition polled for
    opened = ["bus: live", "event time 2025-05-30 16:41:01 UTC", "approve long 0.70 rules", "trend still up",
              "locked_same_side", "threshold ≥ 8.0", "max_positions"]  # fmt: skip
    # the first screen waits for the interpreter's start-up too (seconds on a loaded machine)
    text = tmux.wait_for("the open long, locked", lambda s: "LOCKED" in _row(s, "BTCUSDT", "markets")
                         and all(x in s for x in opened)
                         and "long 0.5" in (row := _row(s, "BTCUSDT", "verdicts and positions"))
                         and unrealized(one)[1] in row, timeout_s=START_S)  # fmt: skip
    assert "SOLUSDT" not in text and "SOLVERDICTREASON" not in text

    await _publish(js_fresh, two)
    closed = next(e for e in two if isinstance(e, ev.PositionClosed))
    realized = f"{closed.realized_pnl_usdt:+,.2f} (1)"
    tmux.wait_for("the take-profit and the cooldown", lambda s: "COOLDOWN" in _row(s, "BTCUSDT", "markets")
                  and "closed take_profit" in (row := _row(s, "BTCUSDT", "verdicts and positions"))
                  and realized in row)  # fmt: skip

    await _publish(js_fresh, three)
    tmux.wait_for("the lock released", lambda s: "FLAT" in _row(s, "BTCUSDT", "markets"))

    tmux.keys("C-c")
    tmux.wait_for("the exit", lambda s: tmux.exit_status() is not None)
    assert tmux.exit_status() == "0"


async def test_watch_in_tmux_shows_reconnecting_while_nats_is_down_and_follows_after(tmp_path, tmux):
    srv = infra.start_nats(tmp_path / "nats")
    try:
        nc = await nats.connect(srv.url)
        js = nc.jetstream(timeout=10)
        await topology.apply(js)
        one, two, _ = scenario()
        await _publish(js, one)
        await nc.close()
        tmux.start([NERTZ, "watch", "--symbols", "BTCUSDT", "--from-seq", "1", "--refresh", "10"], _env(srv.url))
        tmux.wait_for("the open long", lambda s: "LOCKED" in _row(s, "BTCUSDT", "markets") and "bus: live" in s,
                      timeout_s=START_S)  # fmt: skip
        srv.kill()
        tmux.wait_for("the outage", lambda s: "bus: reconnecting" in s)
        srv.restart()
        nc = await nats.connect(srv.url)
        await _publish(nc.jetstream(timeout=10), two)
        await nc.close()
        tmux.wait_for("the close after the outage", lambda s: "COOLDOWN" in _row(s, "BTCUSDT", "markets")
                      and "bus: live" in s)  # fmt: skip
        assert tmux.exit_status() is None
    finally:
        with contextlib.suppress(Exception):
            tmux.kill()
        srv.stop()
