"""``nertz data fetch``: the pure part (pagination plan, Bybit rows to CSV lines, merge, gaps), and the real
command against the fake Bybit on 127.0.0.1 through the real pybit: a fetched file equals the bundled
rows byte for byte, a second run resumes, ``nertz backtest`` reads it, and the error paths."""

from __future__ import annotations

import asyncio
import itertools
import json
import lzma
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from nertz_cli import data, tools
from nertz_cli import main as cli
from nertz_common import events as ev
from nertz_common.storage import Storage
from nertz_common.testing.fake_bybit import BybitError, FakeBybit, KlineStore, loopback_only
from nertz_common.testing.s3 import LocalS3
from nertz_ingest.adapters.recording import csv_symbol_interval
from nertz_ingest.core import csv_bars

DATA = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m"
BTC, ETH = DATA / "BTCUSDT_1m.csv.xz", DATA / "ETHUSDT_1m.csv.xz"
M = 60_000
SINCE = "2025-05-31T00:00"
SINCE_MS = int(datetime(2025, 5, 31, tzinfo=UTC).timestamp() * 1000)
N = 2_500  # bars of a fetch: three pages of ≤ 1000
ROWS = 8_000  # bundled rows served by the fake (from 2025-05-30 16:39)
KLINE = "/v5/market/kline"


def ms_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


# --- the pure part ----------------------------------------------------------------------------------


def test_plan_pages_forward_cover_the_range_once_in_pages_of_at_most_1000() -> None:
    pages = data.plan_pages(SINCE_MS, SINCE_MS + N * M, M)
    assert [p.bars for p in pages] == [1000, 1000, 500]
    assert pages[0].start_ms == SINCE_MS and pages[-1].end_ms == SINCE_MS + (N - 1) * M
    assert all(b.start_ms == a.end_ms + M for a, b in itertools.pairwise(pages))
    assert all(p.end_ms - p.start_ms == (p.bars - 1) * M for p in pages)


def test_plan_pages_backwards_newest_first_same_windows_from_the_top() -> None:
    pages = data.plan_pages(SINCE_MS, SINCE_MS + N * M, M, backwards=True)
    assert [p.bars for p in pages] == [1000, 1000, 500]
    assert pages[0].end_ms == SINCE_MS + (N - 1) * M and pages[-1].start_ms == SINCE_MS
    assert all(a.start_ms == b.end_ms + M for a, b in itertools.pairwise(pages))


def test_plan_pages_unaligned_bounds_snap_to_the_interval_grid() -> None:
    five = 5 * M
    pages = data.plan_pages(SINCE_MS + 1, SINCE_MS + 3 * five + 1, five)
    assert pages == [data.Page(SINCE_MS + five, SINCE_MS + 3 * five, 3)]  # opens at +5, +10, +15 min
    assert data.plan_pages(SINCE_MS, SINCE_MS, M) == [] == data.plan_pages(SINCE_MS + M, SINCE_MS, M)


def test_plan_pages_bad_limit_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"limit in 1\.\.1000"):
        data.plan_pages(0, M, M, limit=1001)


def test_closed_before_now_leaves_the_open_candle_out() -> None:
    assert data.closed_before(SINCE_MS + 30_000, M) == SINCE_MS  # the candle opened at SINCE is open
    assert data.closed_before(SINCE_MS + M, M) == SINCE_MS + M  # it closed exactly now: its end ≤ now
    pages = data.plan_pages(SINCE_MS - 10 * M, data.closed_before(SINCE_MS + 30_000, M), M)
    assert pages[-1].end_ms == SINCE_MS - M


def test_kline_line_bybit_row_gives_the_bundled_line_verbatim_without_turnover() -> None:
    row = ["1748623140000", "104217.5", "104402.7", "104200.0", "104337.8", "477.605", "49832911.1"]
    assert data.kline_line(row, "BTCUSDT", 1) == (
        1748623140000, "2025-05-30 16:39:00+00:00,104217.5,104402.7,104200.0,104337.8,477.605"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (["1748623140000", "1", "2"], "expected a kline row"),
        (["soon", "1", "2", "1", "1", "5", "5"], "startTime in epoch ms"),
        (["1748623140000", "1", "2", "1", "nan", "5", "5"], "nan"),
        (["1748623140000", "3", "1", "2", "1", "5", "5"], "high_below_low"),
        (["1748623141000", "1", "2", "1", "1", "5", "5"], "a multiple of 60000 ms"),
    ],
)
def test_kline_line_bad_row_raises_bad_kline(row: list[str], match: str) -> None:
    with pytest.raises(data.BadKline, match=match):
        data.kline_line(row, "BTCUSDT", 1)


def test_page_lines_newest_first_sorted_window_and_open_candle_dropped() -> None:
    page = data.Page(SINCE_MS, SINCE_MS + 2 * M, 3)
    rows = [[str(SINCE_MS + k * M), "1", "2", "1", "1.5", "3", "4"] for k in (3, 2, 1, 0, -1)]  # newest first
    got = data.page_lines(rows, page, open_before_ms=SINCE_MS + 2 * M, symbol="BTCUSDT", minutes=1)
    assert [s for s, _ in got] == [SINCE_MS, SINCE_MS + M]  # +3 and -1 outside the window, +2 still open


def test_merge_overlaps_are_deduplicated_and_kept_bars_stay() -> None:
    kept = {2 * M: "kept-2", 1 * M: "kept-1"}
    rows, added = data.merge(kept, [(2 * M, "new-2"), (3 * M, "new-3"), (3 * M, "again-3"), (0, "new-0")])
    assert rows == {0: "new-0", M: "kept-1", 2 * M: "kept-2", 3 * M: "new-3"} and list(rows) == [0, M, 2 * M, 3 * M]
    assert added == 2


def test_find_gaps_reports_missing_ranges_never_fills_them() -> None:
    assert data.find_gaps([0, M, 2 * M], M) == []
    assert data.find_gaps([0, M, 5 * M, 6 * M, 8 * M], M) == [data.Gap(2 * M, 4 * M, 3), data.Gap(7 * M, 7 * M, 1)]
    assert data.find_gaps([], M) == [] == data.find_gaps([M], M)


@pytest.mark.parametrize("opens", [[0, M, M], [0, 2 * M, M], [0, 90_000]])
def test_find_gaps_unordered_or_off_grid_raises_value_error(opens: list[int]) -> None:
    with pytest.raises(ValueError, match="ascending by multiples of 60000 ms"):
        data.find_gaps(opens, M)


def test_render_and_parse_existing_round_trip_and_the_reader_takes_it() -> None:
    rows = dict(
        data.kline_line([str(SINCE_MS + k * M), "1", "2", "1", "1.5", "3", "0"], "BTCUSDT", 1) for k in range(3)
    )
    text = data.render(rows)
    assert text.splitlines()[0] == csv_bars.HEADER and text.endswith("\n")
    assert data.parse_existing(text.splitlines(keepends=True), "x.csv") == rows
    bars = list(csv_bars.parse_lines(text.splitlines(keepends=True), "BTCUSDT"))
    assert [b.open_time_ns // 1_000_000 for b in bars if isinstance(b, ev.Bar)] == list(rows)


def test_parse_existing_out_of_order_or_bad_timestamp_raises_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"f\.csv:3: expected open times ascending"):
        data.parse_existing(
            [csv_bars.HEADER, "2025-05-31 00:01:00+00:00,1,1,1,1,1", "1748649600000,1,1,1,1,1"], "f.csv"
        )
    with pytest.raises(ValueError, match=r"f\.csv:1: expected an ISO timestamp"):
        data.parse_existing(["yesterday,1,1,1,1,1"], "f.csv")


@pytest.mark.parametrize(("text", "minutes"), [("1", 1), ("5", 5), ("60", 60), ("5m", 5), ("1h", 60), ("4h", 240)])
def test_parse_interval_bybit_names_and_units_give_minutes(text: str, minutes: int) -> None:
    assert data.parse_interval(text) == minutes
    name = data.file_name("BTCUSDT", minutes, xz=True)
    assert csv_symbol_interval(name) == ("BTCUSDT", minutes)  # the reader's name for that interval


@pytest.mark.parametrize("text", ["D", "W", "M", "7", "0", "3h", "soon"])
def test_parse_interval_not_a_minute_interval_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="expected a Bybit interval of minutes"):
        data.parse_interval(text)


# --- the command against the fake Bybit ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_only() as refused:
        yield
    assert refused == [], f"traffic beyond loopback was attempted: {refused}"


@pytest.fixture(scope="module")
def bundled() -> dict[str, dict[int, str]]:
    """The first ROWS lines of the bundled BTC and ETH files by open time (ms)."""
    out = {}
    for path in (BTC, ETH):
        with lzma.open(path, "rt") as f:
            out[path.name.split("_")[0]] = data.parse_existing(itertools.islice(f, ROWS + 1), path.name)
    return out


def store_of(rows: dict[int, str], symbol: str = "BTCUSDT", store: KlineStore | None = None) -> KlineStore:
    """A kline store serving ``rows`` (bundled lines by open time) as Bybit's REST rows."""
    store = store or KlineStore()
    store.add_rows(symbol, [[str(k), *line.split(",")[1:], "0"] for k, line in rows.items()])
    return store


@pytest.fixture(scope="module")
def store(bundled: dict[str, dict[int, str]]) -> KlineStore:
    return store_of(bundled["ETHUSDT"], "ETHUSDT", store_of(bundled["BTCUSDT"]))


@pytest.fixture
async def fake(store: KlineStore) -> AsyncIterator[FakeBybit]:
    async with FakeBybit(klines=store) as f:
        yield f


async def nertz(fake: FakeBybit | None, *args: str, env: dict[str, str] | None = None) -> Result:
    env = {**({"NERTZ_BYBIT__REST_URL": fake.base_url} if fake else {}), **(env or {})}
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=env, catch_exceptions=False)


def flat(result: Result) -> str:
    """The output with every run of white space as one space (rich wraps at CliRunner's 80 columns)."""
    return " ".join(result.output.split())


def expected(bundled: dict[int, str], since_ms: int, until_ms: int) -> str:
    return csv_bars.HEADER + "\n" + "".join(v + "\n" for k, v in bundled.items() if since_ms <= k < until_ms)


def fetch_args(
    out: Path | str, until_ms: int, *more: str, symbols: str = "BTCUSDT", since: str | None = SINCE
) -> list[str]:
    since_args = ["--since", since] if since else []
    return ["data", "fetch", "--symbols", symbols, *since_args, "--until", ms_text(until_ms), "--out", str(out), *more]


async def test_data_fetch_two_symbols_three_pages_each_equal_the_bundled_rows(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    until = SINCE_MS + N * M
    result = await nertz(fake, *fetch_args(tmp_path, until, "--interval", "1", symbols="BTCUSDT,ETHUSDT"))
    assert result.exit_code == 0, result.output
    for sym in ("BTCUSDT", "ETHUSDT"):
        assert (tmp_path / f"{sym}_1m.csv").read_text() == expected(bundled[sym], SINCE_MS, until)
    calls = fake.calls_to(KLINE)
    assert len(calls) == 6 and {c.query["limit"] for c in calls} == {"1000", "500"}
    assert [int(c.query["end"]) for c in calls[:3]] == [until - M, until - 1001 * M, until - 2001 * M]  # backwards
    assert "2025-05-31 00:00" in flat(result) and "2025-06-01 17:39" in flat(result) and "2,500" in flat(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTCUSDT_1m.csv", "ETHUSDT_1m.csv"]  # no temp file left


async def test_data_fetch_second_run_resumes_from_the_last_bar_without_refetching(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    u1, u2 = SINCE_MS + 1200 * M, SINCE_MS + N * M
    assert (await nertz(fake, *fetch_args(tmp_path, u1))).exit_code == 0
    before = len(fake.calls_to(KLINE))
    result = await nertz(fake, *fetch_args(tmp_path, u2, since=None))  # no --since: from the file's last bar
    assert result.exit_code == 0, result.output
    assert "resuming" in flat(result) and "1,200 bars" in flat(result)
    calls = fake.calls_to(KLINE)[before:]
    assert [int(c.query["start"]) for c in calls] == [u1, u1 + 1000 * M]  # forwards from the last bar + 1
    path = tmp_path / "BTCUSDT_1m.csv"
    assert path.read_text() == expected(bundled["BTCUSDT"], SINCE_MS, u2)

    stamp = path.stat().st_mtime_ns
    result = await nertz(fake, *fetch_args(tmp_path, u2))
    assert result.exit_code == 0 and "up to date" in flat(result)
    assert len(fake.calls_to(KLINE)) == before + 2 and path.stat().st_mtime_ns == stamp  # nothing fetched or written

    earlier = SINCE_MS - 300 * M  # bars before the file's first: fetched backwards from it
    result = await nertz(fake, *fetch_args(tmp_path, u2, since=ms_text(earlier)))
    assert result.exit_code == 0, result.output
    [call] = fake.calls_to(KLINE)[before + 2 :]
    assert (int(call.query["start"]), int(call.query["end"])) == (earlier, SINCE_MS - M)
    assert path.read_text() == expected(bundled["BTCUSDT"], earlier, u2)


async def test_data_fetch_xz_file_is_read_by_nertz_backtest(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    until = SINCE_MS + N * M
    assert (await nertz(fake, *fetch_args(tmp_path / "fetched", until, "--xz"))).exit_code == 0
    path = tmp_path / "fetched" / "BTCUSDT_1m.csv.xz"
    assert lzma.decompress(path.read_bytes()).decode() == expected(bundled["BTCUSDT"], SINCE_MS, until)
    result = await nertz(None, "backtest", str(path), "--out", str(tmp_path / "bt"), "--no-html")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "bt" / "report.json").read_text())["run"]
    assert run["bars"] == N

    result = await nertz(fake, *fetch_args(tmp_path / "fetched", until))  # the plain .csv beside it: refused
    assert result.exit_code == 2 and "BTCUSDT_1m.csv.xz exists" in flat(result)


async def test_data_fetch_to_s3_writes_the_object_and_resumes_from_it(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], local_s3: LocalS3
) -> None:
    out = f"s3://{local_s3.bucket()}/fetched"
    u1, u2 = SINCE_MS + 500 * M, SINCE_MS + 1500 * M
    result = await nertz(fake, *fetch_args(out, u1, "--xz"), env=local_s3.env())  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    result = await nertz(fake, *fetch_args(out, u2, "--xz"), env=local_s3.env())  # type: ignore[arg-type]
    assert result.exit_code == 0 and "resuming" in flat(result), result.output
    assert [int(c.query["start"]) for c in fake.calls_to(KLINE)[1:]] == [u1]
    body = Storage(local_s3.settings()).read_bytes(f"{out}/BTCUSDT_1m.csv.xz")
    assert lzma.decompress(body).decode() == expected(bundled["BTCUSDT"], SINCE_MS, u2)


async def test_data_fetch_five_minute_bars_go_to_a_5m_file_the_reader_takes(fake: FakeBybit, tmp_path: Path) -> None:
    until = SINCE_MS + 3000 * M
    result = await nertz(fake, *fetch_args(tmp_path, until, "--interval", "5m"))
    assert result.exit_code == 0, result.output
    inputs = tools.load_inputs([tmp_path / "BTCUSDT_5m.csv"], instruments="none")
    bars = [r.event for r in inputs.records if isinstance(r.event, ev.Bar)]
    assert len(bars) == 600 and {b.interval for b in bars} == {"5"} and not inputs.rejected
    starts, rows = fake.klines.series("BTCUSDT", "5")
    first = rows[starts.index(SINCE_MS)]
    assert (tmp_path / "BTCUSDT_5m.csv").read_text().splitlines()[1] == data.kline_line(first, "BTCUSDT", 5)[1]


async def test_data_fetch_open_candle_of_the_server_is_not_written(fake: FakeBybit, tmp_path: Path) -> None:
    fake.now_ms = SINCE_MS + 2000 * M + 30_000  # Bybit's clock: the candle opened at +2000 min is still open
    result = await nertz(fake, *fetch_args(tmp_path, SINCE_MS + N * M))
    assert result.exit_code == 0, result.output
    last = (tmp_path / "BTCUSDT_1m.csv").read_text().splitlines()[-1]
    assert last.startswith(data.iso_utc(SINCE_MS + 1999 * M))


async def test_data_fetch_gaps_reported_not_invented_and_history_start_found(
    bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    kept = {k: v for k, v in bundled["BTCUSDT"].items() if SINCE_MS <= k < SINCE_MS + 4000 * M}
    holed = store_of({k: v for k, v in kept.items() if not SINCE_MS + 1000 * M <= k < SINCE_MS + 3000 * M})
    async with FakeBybit(klines=holed) as fake:
        since = SINCE_MS - 5000 * M  # the fake's history starts at SINCE
        result = await nertz(fake, *fetch_args(tmp_path, SINCE_MS + 4000 * M, since=ms_text(since)))
        assert result.exit_code == 0, result.output
        # 9 pages planned; fetched: 3000-3999, 2000-2999 empty → probe finds 999 → 1000-1999 skipped,
        # 0-999, then -1000..-1 empty → probe finds nothing older: stop
        assert len(fake.calls_to(KLINE)) == 6
    text = (tmp_path / "BTCUSDT_1m.csv").read_text()
    assert len(text.splitlines()) == 1 + 2000
    assert "nothing older to fetch" in flat(result)
    assert "gap BTCUSDT: 2025-05-31 16:40 → 2025-06-02 01:59 UTC missing (2,000 bars)" in flat(result)


async def test_data_fetch_unknown_symbol_shows_bybit_retcode_and_exits_1(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    until = SINCE_MS + 100 * M
    result = await nertz(fake, *fetch_args(tmp_path, until, symbols="NOPEUSDT,BTCUSDT"))
    assert result.exit_code == 1
    assert "NOPEUSDT" in flat(result) and "retCode 10001 Not supported symbols" in flat(result)
    assert len([c for c in fake.calls_to(KLINE) if c.query["symbol"] == "NOPEUSDT"]) == 1  # a refusal: no retry
    assert (tmp_path / "BTCUSDT_1m.csv").read_text() == expected(bundled["BTCUSDT"], SINCE_MS, until)
    assert not (tmp_path / "NOPEUSDT_1m.csv").exists()


async def test_data_fetch_failing_half_way_keeps_the_contiguous_part_and_the_next_run_completes_it(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    kline = fake.rest_routes[("GET", KLINE)]
    seen = []

    async def second_call_refused(request: Any, q: dict[str, str]) -> Any:
        seen.append(q)
        if len(seen) == 2:
            raise BybitError(10001, "params error: refused once by the test")
        return await kline(request, q)

    fake.rest_routes[("GET", KLINE)] = second_call_refused
    until = SINCE_MS + N * M
    result = await nertz(fake, *fetch_args(tmp_path, until))
    assert result.exit_code == 1 and "kept the 1,000 bars fetched before" in flat(result)
    path = tmp_path / "BTCUSDT_1m.csv"
    assert path.read_text() == expected(bundled["BTCUSDT"], until - 1000 * M, until)  # the newest page

    result = await nertz(fake, *fetch_args(tmp_path, until))
    assert result.exit_code == 0, result.output
    assert path.read_text() == expected(bundled["BTCUSDT"], SINCE_MS, until)
    assert [int(q["end"]) for q in seen[2:]] == [until - 1001 * M, until - 2001 * M]  # backwards from its first


async def test_data_fetch_rate_limited_waits_the_reset_and_completes(
    fake: FakeBybit, bundled: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    fake.fault(KLINE, "rate_limit", times=2, reset_in_ms=200)
    until = SINCE_MS + N * M
    result = await nertz(fake, *fetch_args(tmp_path, until))
    assert result.exit_code == 0, result.output
    assert [c.answer for c in fake.calls_to(KLINE)] == ["rate_limit", "rate_limit", "ok", "ok", "ok"]
    assert "rate limited (tried up to 5 times in all)" in flat(result)
    assert (tmp_path / "BTCUSDT_1m.csv").read_text() == expected(bundled["BTCUSDT"], SINCE_MS, until)


async def test_data_fetch_network_down_retries_then_fails_with_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    args = [*fetch_args(tmp_path, SINCE_MS + N * M), "--attempts", "2", "--rest-url", f"http://127.0.0.1:{port}"]
    result = await nertz(None, *args)
    assert result.exit_code == 1
    assert "failed after 2 attempts: could not connect to http://127.0.0.1:" in flat(result)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "D"], "expected a Bybit interval of minutes"),
        (["--since", "2025-06-01", "--until", "2025-05-01"], "expected --since before --until"),
        (["--symbols", "BTC-USDT"], "expected a symbol of 2-30"),
        (["--since", "yesterday"], "--since: expected a UTC time"),
        (["--env", "moon"], "--env: expected one of mainnet, testnet, demo"),
        ([], "--since is needed"),
    ],
)
async def test_data_fetch_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    base = {"--symbols": "BTCUSDT", "--out": str(tmp_path)}
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    result = await nertz(None, "data", "fetch", *(x for kv in {**base, **pairs}.items() for x in kv))
    assert result.exit_code == 2 and message in flat(result), result.output


async def test_data_fetch_help_explains_with_an_example() -> None:
    result = await nertz(None, "data", "fetch", "--help")
    assert result.exit_code == 0
    text = flat(result)
    assert "nertz data fetch --symbols BTCUSDT,ETHUSDT --interval 1 \\ --since 2025-05-01 --until 2025-06-01" in text
    assert "extended from its last bar" in text and "retCode 10001" in text
