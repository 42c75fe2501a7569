"""Sweeps: grid parsing, walk-forward windows and figures, and sweeps on a local Dask cluster checked
against an in-process backtest of the same settings."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from distributed import LocalCluster
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.progress import Progress

from nertz_cli import config, report, sweep, tools
from nertz_cli.config import PipelineSettings
from nertz_common import events as ev
from nertz_common.errors import ConfigurationError
from nertz_common.node.log import Record

DATA = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
N_RECORDS = 15_000
FOLDS = 3
GRID: dict[str, list[Any]] = {"signal.entry_threshold": [9.0, 9.5], "executor.cooldown_s": [0, 1800]}
REFERENCE = {"signal.entry_threshold": 9.0, "executor.cooldown_s": 1800}


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return tools.load_inputs([DATA]).records[:N_RECORDS]


@pytest.fixture(scope="module")
def base() -> PipelineSettings:
    return config.load()


@pytest.fixture(scope="module")
def swept(records: list[Record], base: PipelineSettings) -> tuple[sweep.SweepResult, Progress]:
    progress = Progress(console=Console(quiet=True))
    result = sweep.run(records, base, GRID, folds=FOLDS, workers=2, progress=progress)
    return result, progress


@pytest.fixture(scope="module")
def reference(records: list[Record], base: PipelineSettings) -> tuple[tools.Run, list[ev.PositionClosed]]:
    settings = config.load([f"{k}={json.dumps(v)}" for k, v in REFERENCE.items()], base.decisions())
    run = tools.backtest(records, settings)
    return run, [e for e in run.events("executor") if isinstance(e, ev.PositionClosed)]


def row_of(result: sweep.SweepResult, params: dict[str, Any]) -> sweep.Row:
    [row] = [r for r in result.rows if r.params == params]
    return row


# --- parse_grid -------------------------------------------------------------------------------------


def test_parse_grid_values_read_as_json_else_strings():
    grid = sweep.parse_grid(["signal.entry_threshold=6,7,8.5", "signal.stop_mode=atr, fixed", "executor.cooldown_s=0"])
    assert grid == {
        "signal.entry_threshold": [6, 7, 8.5],
        "signal.stop_mode": ["atr", "fixed"],
        "executor.cooldown_s": [0],
    }
    assert sweep.parse_grid(['signal.weights={"egm": 1, "ild": 0},{"egm": 0.5}']) == {
        "signal.weights": [{"egm": 1, "ild": 0}, {"egm": 0.5}]
    }


def test_parse_grid_bad_items_every_one_listed():
    items = [
        "signal.entry_threshold",  # no =
        "executor.cooldown_s=",  # empty values
        "signal.atr_period=14,,20",  # an empty value
        "risk.max_positions=1,2",  # not a group
        "signal.=1",  # empty key
        "signal.ema_fast=5,5",  # a value twice
        "executor.cooldown_s=0,900",
        "executor.cooldown_s=1800",  # a key twice
    ]
    with pytest.raises(ConfigurationError) as e:
        sweep.parse_grid(items)
    message = str(e.value)
    assert message.startswith("7 bad --grid item(s)")
    for item in items[:6] + items[7:]:
        assert repr(item) in message


def test_parse_grid_no_items_raises():
    with pytest.raises(ConfigurationError, match="expected at least one --grid item"):
        sweep.parse_grid([])


def test_expand_bad_values_every_distinct_error_listed(base: PipelineSettings):
    grid = {"signal.entry_threshold": [9, 11], "executor.cooldown_s": [0, -1], "signal.no_such_key": [1]}
    with pytest.raises(ConfigurationError) as e:
        sweep.expand(base, grid)
    message = str(e.value)
    assert "4 of 4 parameter sets are invalid" in message
    assert "entry_threshold" in message and "(was 11)" in message
    assert "cooldown_s" in message and "(was -1)" in message
    assert "no_such_key" in message


def test_expand_grid_order_last_key_fastest(base: PipelineSettings):
    sets = sweep.expand(base, GRID)
    assert [p for p, _ in sets] == [dict(zip(GRID, v, strict=True)) for v in itertools.product(*GRID.values())]
    assert [(s.signal.entry_threshold, s.executor.cooldown_s) for _, s in sets] == [
        (9.0, 0), (9.0, 1800), (9.5, 0), (9.5, 1800)
    ]  # fmt: skip


# --- windows and figures ----------------------------------------------------------------------------


@given(data=st.data(), first=st.integers(0, 2**62), span=st.integers(10, 10**15), folds=st.integers(1, 8))
def test_window_bounds_every_time_in_exactly_one_window(data: st.DataObject, first: int, span: int, folds: int):
    last = first + span
    bounds = sweep.window_bounds(first, last, folds)
    assert len(bounds) == folds + 2 and bounds[0] == first and bounds[-1] == last
    widths = [b - a for a, b in itertools.pairwise(bounds)]
    assert min(widths) > 0 and max(widths) - min(widths) <= 1
    times = data.draw(st.lists(st.integers(first, last), max_size=30))
    m = sweep.measure([(t, 1.0) for t in times], 100.0, bounds)
    assert [w.trades for w in m.windows] == [
        sum(1 for t in times if a <= t < b or (j == folds and t == last))
        for j, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


def test_window_bounds_bad_folds_raise():
    for folds in (0, -1):
        with pytest.raises(ConfigurationError, match=f"expected --walk-forward K >= 1 folds, was {folds}"):
            sweep.window_bounds(0, 10**12, folds)
    with pytest.raises(ConfigurationError, match="expected a time range of at least 4 ns"):
        sweep.window_bounds(5, 7, 3)


def test_measure_known_trades_figures_per_segment():
    trades = [(5, 100.0), (15, -50.0), (25, -100.0), (30, 20.0)]  # the last one closes at the last time
    m = sweep.measure(trades, 1000.0, [0, 10, 20, 30])
    assert [w.pnl_usdt for w in m.windows] == [100.0, -50.0, -80.0]
    assert [w.trades for w in m.windows] == [1, 1, 2]
    assert m.in_sample == sweep.Figures(50.0, 0.05, 2, 1, pytest.approx(50 / 1100))
    assert m.out_of_sample == sweep.Figures(-130.0, -0.13, 3, 1, pytest.approx(150 / 1100))
    assert m.total == sweep.Figures(-30.0, -0.03, 4, 2, pytest.approx(150 / 1100))
    assert m.fold_returns(1) == pytest.approx((0.1, -0.05))
    assert m.fold_returns(2) == pytest.approx((0.05, -0.08))
    with pytest.raises(ValueError, match=r"expected a fold in 1\.\.2, was 3"):
        m.fold_returns(3)


# --- run on a local cluster -------------------------------------------------------------------------


def test_run_grid_rows_ranked_by_oos_return_non_increasing(swept: tuple[sweep.SweepResult, Progress]):
    result, progress = swept
    assert len(result.rows) == 4 and result.workers == 2
    assert [r.rank for r in result.rows] == [1, 2, 3, 4]
    assert sorted(r.index for r in result.rows) == [0, 1, 2, 3]
    assert {json.dumps(r.params, sort_keys=True) for r in result.rows} == {
        json.dumps(dict(zip(GRID, v, strict=True)), sort_keys=True) for v in itertools.product(*GRID.values())
    }
    scores = [r.metrics.out_of_sample.return_fraction for r in result.rows if r.metrics.out_of_sample]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    [task] = progress.tasks
    assert task.total == 4 and task.completed == 4


def test_run_row_equals_in_process_backtest(
    swept: tuple[sweep.SweepResult, Progress], reference: tuple[tools.Run, list[ev.PositionClosed]]
):
    result, _ = swept
    run, closed = reference
    row = row_of(result, REFERENCE)
    equity = run.settings.executor.equity_usdt
    pnl = sum(e.realized_pnl_usdt for e in closed)
    assert row.metrics.total.trades == len(closed) > 0
    assert row.metrics.total.pnl_usdt == pytest.approx(pnl, abs=1e-9)
    assert row.metrics.total.return_fraction == pytest.approx(pnl / equity, abs=1e-12)
    assert row.config_hash == run.settings.decisions_hash()
    total = report.summarize(run.events("executor"), equity_usdt=equity)["total"]
    assert row.metrics.total.max_drawdown == pytest.approx(total["max_drawdown"])
    assert row.metrics.total.win_rate == pytest.approx(total["win_rate"])
    assert row.metrics.bars == run.bars


def test_run_walk_forward_windows_partition_trades(
    swept: tuple[sweep.SweepResult, Progress],
    reference: tuple[tools.Run, list[ev.PositionClosed]],
    records: list[Record],
):
    result, _ = swept
    run, closed = reference
    row = row_of(result, REFERENCE)
    first, last = records[0].event.ts_event, records[-1].event.ts_event
    edge = [first + Fraction((last - first) * j, FOLDS + 1) for j in range(FOLDS + 2)]
    equity = run.settings.executor.equity_usdt
    assert len(result.folds) == FOLDS and len(row.metrics.windows) == FOLDS + 1
    for k in range(1, FOLDS + 1):
        in_sample = [e for e in closed if e.ts_event < edge[k]]
        out = [e for e in closed if edge[k] <= e.ts_event < edge[k + 1] or (k == FOLDS and e.ts_event == last)]
        assert sum(w.trades for w in row.metrics.windows[:k]) == len(in_sample)
        assert row.metrics.windows[k].trades == len(out)
        is_ret, oos_ret = row.metrics.fold_returns(k)
        assert is_ret == pytest.approx(sum(e.realized_pnl_usdt for e in in_sample) / equity)
        assert oos_ret == pytest.approx(sum(e.realized_pnl_usdt for e in out) / equity)
        assert result.folds[k - 1].out_of_sample_ns == (result.bounds[k], result.bounds[k + 1])
        if k == FOLDS:
            assert len(in_sample) + len(out) == len(closed)
    oos = [e for e in closed if e.ts_event >= edge[1]]
    assert row.metrics.out_of_sample is not None and row.metrics.in_sample is not None
    assert row.metrics.out_of_sample.trades == len(oos)
    assert row.metrics.out_of_sample.pnl_usdt == pytest.approx(sum(e.realized_pnl_usdt for e in oos))
    assert row.metrics.in_sample.trades == sum(1 for e in closed if e.ts_event < edge[FOLDS])
    assert sum(w.trades for w in row.metrics.windows) == len(closed)


def test_run_selection_best_in_sample_per_fold(swept: tuple[sweep.SweepResult, Progress]):
    result, _ = swept
    assert [p.fold for p in result.selection] == list(range(1, FOLDS + 1))
    for p in result.selection:
        best = max(r.metrics.fold_returns(p.fold)[0] for r in result.rows)
        picked = next(r for r in result.rows if r.index == p.index)
        assert p.params == picked.params
        assert p.in_sample_return == best
        assert (p.in_sample_return, p.out_of_sample_return) == picked.metrics.fold_returns(p.fold)
    chained = math.prod(1 + p.out_of_sample_return for p in result.selection) - 1
    assert result.chained_oos_return == pytest.approx(chained)


def test_run_as_dict_is_json(swept: tuple[sweep.SweepResult, Progress]):
    result, _ = swept
    d = json.loads(json.dumps(result.as_dict()))
    assert d["sets"] == 4 and d["ranked_by"] == "out_of_sample.return"
    assert d["walk_forward"]["k"] == FOLDS and len(d["walk_forward"]["windows"]) == FOLDS + 1
    assert [r["rank"] for r in d["rows"]] == [1, 2, 3, 4]
    assert len(d["rows"][0]["folds"]) == FOLDS
    assert len(d["selection"]["picks"]) == FOLDS
    assert d["selection"]["chained_out_of_sample_return"] == pytest.approx(result.chained_oos_return)


def test_print_table_rows_selection_and_wall_time(swept: tuple[sweep.SweepResult, Progress]):
    result, _ = swept
    console = Console(record=True, width=240)
    sweep.print_table(result, console)
    text = console.export_text()
    assert "OOS return" in text and "IS return" in text and "max DD" in text
    assert "signal.entry_threshold=9.5, executor.cooldown_s=1800" in text
    assert "walk-forward selection, chained out-of-sample return" in text
    assert "4 parameter sets over 15,000 records" in text and "s wall on 2 worker(s)" in text


def test_run_bad_grid_value_fails_before_any_cluster(
    monkeypatch: pytest.MonkeyPatch, records: list[Record], base: PipelineSettings
):
    def no_cluster(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cluster was started before the grid was validated")

    monkeypatch.setattr(sweep, "LocalCluster", no_cluster)
    monkeypatch.setattr(sweep, "Client", no_cluster)
    with pytest.raises(ConfigurationError, match=r"1 of 2 parameter sets are invalid.*entry_threshold.*\(was 11\)"):
        sweep.run(records, base, {"signal.entry_threshold": [9, 11]}, folds=FOLDS, workers=2)
    with pytest.raises(ConfigurationError, match="expected --walk-forward K >= 1 folds, was 0"):
        sweep.run(records, base, {"signal.entry_threshold": [9]}, folds=0, workers=2)
    with pytest.raises(ConfigurationError, match="expected --workers >= 1, was 0"):
        sweep.run(records, base, {"signal.entry_threshold": [9]}, workers=0)


def test_run_scheduler_without_folds_ranked_by_total_return(
    records: list[Record], base: PipelineSettings, reference: tuple[tools.Run, list[ev.PositionClosed]]
):
    _, closed = reference
    grid = {"signal.entry_threshold": [9.5, 9.0], "executor.cooldown_s": [1800]}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        result = sweep.run(records, base, grid, scheduler=cluster.scheduler_address)
        assert len(cluster.workers) == 2  # the sweep closed its client only
    assert result.scheduler == cluster.scheduler_address and result.workers == 2
    assert result.folds == [] and result.selection == [] and result.chained_oos_return is None
    assert all(r.metrics.in_sample is None and r.metrics.out_of_sample is None for r in result.rows)
    totals = [r.metrics.total.return_fraction for r in result.rows]
    assert totals == sorted(totals, reverse=True)
    assert row_of(result, REFERENCE).metrics.total.pnl_usdt == pytest.approx(sum(e.realized_pnl_usdt for e in closed))
    d = result.as_dict()
    assert d["ranked_by"] == "total.return" and d["walk_forward"] is None and d["selection"] is None
