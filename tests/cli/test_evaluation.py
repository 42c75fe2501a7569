"""The walk-forward evaluation: the strategy beside buy-and-hold and random entries with the same exits
and sizing, in and out of sample, on a local Dask cluster, checked against in-process backtests."""

from __future__ import annotations

import json
import lzma
import statistics
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from nertz_cli import config, evaluation, sweep, tools
from nertz_cli.main import app
from nertz_common import events as ev
from nertz_common.errors import ConfigurationError
from nertz_common.node.log import Record

DATA = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m"
ROWS = 12_000  # 8 1/3 days per symbol
FOLDS = 2
SEEDS = 6
SETS = ["signal.entry_threshold=8.5"]  # more trades in a short slice


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    d = tmp_path_factory.mktemp("eval")
    files = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        with lzma.open(DATA / f"{sym}_1m.csv.xz", "rt") as fh:
            (d / f"{sym}_1m.csv").write_text("".join(next(fh) for _ in range(ROWS + 1)))
        files.append(d / f"{sym}_1m.csv")
    return tools.load_inputs(files).records


@pytest.fixture(scope="module")
def evaluated(records: list[Record]) -> evaluation.Evaluation:
    progress = Progress(console=Console(quiet=True))
    return evaluation.evaluate(records, config.load(SETS), FOLDS, seeds=SEEDS, workers=2, progress=progress)


def rows(result: evaluation.Evaluation) -> dict[str, evaluation.SegmentRow]:
    return {r.name: r for r in result.rows}


def test_the_strategy_row_is_the_in_process_backtest_of_the_settings(records, evaluated):
    settings = config.load(SETS)
    alone = sweep.evaluate(records, settings, evaluated.bounds)
    r = rows(evaluated)
    assert alone.total.trades >= 3, "the slice must trade for the comparison to mean something"
    assert r["in sample"].strategy == alone.in_sample and r["out of sample"].strategy == alone.out_of_sample
    assert [r[f"w{j}"].strategy for j in range(FOLDS + 1)] == alone.windows
    assert evaluated.settings_hash == settings.decisions_hash()


def test_random_runs_are_the_seeds_backtests_with_random_entries_and_the_same_exits(records, evaluated):
    r = rows(evaluated)
    assert len(r["in sample"].random) == SEEDS
    totals = [sum(r[f"w{j}"].random[i].pnl_usdt for j in range(FOLDS + 1)) for i in range(SEEDS)]
    assert len(set(totals)) > 1, "different seeds must draw different entries"
    # seed 2 again, in process: its windows are the evaluation's, and its entries are random ones
    settings = config.load(
        [*SETS, "signal.random_entries.enabled=true", f"signal.random_entries.rate={evaluated.rate!r}",
         "signal.random_entries.seed=2"],
    )  # fmt: skip
    again = sweep.evaluate(records, settings, evaluated.bounds)
    assert [r[f"w{j}"].random[2] for j in range(FOLDS + 1)] == again.windows
    run = tools.backtest(records, settings)
    intents = [e for e in run.events("signal") if isinstance(e, ev.IntentProposed)]
    assert intents and all(i.reasons[0].startswith("random entry: the baseline's draw (seed 2") for i in intents)
    assert all(i.net_risk_reward >= settings.signal.min_risk_reward for i in intents)  # the strategy's stops
    # calibrated: the random runs close about as many trades as the strategy
    strat = sum(r[f"w{j}"].strategy.trades for j in range(FOLDS + 1))
    made = statistics.median(sum(r[f"w{j}"].random[i].trades for j in range(FOLDS + 1)) for i in range(SEEDS))
    assert abs(made - strat) <= max(2, 0.35 * strat), (made, strat, evaluated.rate)


def test_segments_partition_the_windows_and_buy_and_hold_is_of_their_closes(records, evaluated):
    r = rows(evaluated)
    ins, oos = r["in sample"], r["out of sample"]
    assert ins.windows == (0, FOLDS - 1) and oos.windows == (1, FOLDS)
    for i in range(SEEDS):
        assert ins.random[i].trades == sum(r[f"w{j}"].random[i].trades for j in range(FOLDS))
        assert oos.random[i].trades == sum(r[f"w{j}"].random[i].trades for j in range(1, FOLDS + 1))
    assert sum(r[f"w{j}"].bars for j in range(FOLDS + 1)) == sum(
        1 for rec in records if isinstance(rec.event, ev.Bar) and rec.event.closed
    )
    closes: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        if isinstance(e := rec.event, ev.Bar):
            closes.setdefault(e.symbol, []).append((e.ts_event, e.close))
    lo, hi = r["w1"].span_ns
    want = []
    for pts in closes.values():
        inside = [c for t, c in pts if lo <= t < hi]
        want.append(inside[-1] / inside[0] - 1)
    assert r["w1"].buy_and_hold == pytest.approx(sum(want) / len(want))


def test_quantiles_and_beats_random_of_a_segment():
    figs = [sweep.Figures(return_fraction=x) for x in (0.03, -0.01, 0.01, 0.02, 0.0)]
    row = evaluation.SegmentRow("w0", (0, 0), (0, 1), 10, sweep.Figures(return_fraction=0.01), None, figs)
    assert row.random_quantile(0.5) == 0.01 and row.random_quantile(0.0) == -0.01
    assert row.random_quantile(0.9) == pytest.approx(0.026)
    assert row.beats_random == pytest.approx(2.5 / 5)  # two below, one tie
    empty = evaluation.SegmentRow("w0", (0, 0), (0, 1), 0, sweep.Figures(), None, [])
    assert empty.random_quantile(0.5) is None and empty.beats_random is None


def test_bad_evaluations_fail_before_any_cluster(records):
    with pytest.raises(ConfigurationError, match="random N >= 1"):
        evaluation.evaluate(records, config.load(), 2, seeds=0)
    with pytest.raises(ConfigurationError, match="strategy's settings"):
        evaluation.evaluate(records, config.load(["signal.random_entries.enabled=true"]), 2)
    with pytest.raises(ConfigurationError, match="walk-forward K >= 1"):
        evaluation.evaluate(records, config.load(), 0)


def test_cli_walk_forward_alone_writes_the_evaluation_and_its_page(tmp_path: Path):
    head = tmp_path / "BTCUSDT_1m.csv"
    with lzma.open(DATA / "BTCUSDT_1m.csv.xz", "rt") as fh:
        head.write_text("".join(next(fh) for _ in range(8_001)))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["backtest", str(head), "--walk-forward", "2", "--random", "2", "--workers", "2", "--out", str(out),
              *(x for s in SETS for x in ("--set", s))],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "walk-forward evaluation (2 folds, anchored)" in result.output and "out of sample" in result.output
    data = json.loads((out / "evaluation.json").read_text())
    assert [s["segment"] for s in data["segments"]] == ["in sample", "out of sample", "w0", "w1", "w2"]
    assert all(len(s["random"]["returns"]) == 2 for s in data["segments"])
    page = (out / "evaluation.html").read_text()
    assert "random entries (median, p10..p90)" in page and "plotly" in page


def test_print_table_warns_of_windows_without_bars():
    fig = sweep.Figures()
    rows = [evaluation.SegmentRow(n, (0, 0), (0, 1), b, fig, None, []) for n, b in (("w0", 5), ("w1", 0))]
    result = evaluation.Evaluation(rows, [0, 1, 2], "h", 0.01, 5, 0, 1.0)
    console = Console(record=True, width=200)
    evaluation.print_table(result, console)
    text = console.export_text()
    assert "warning: w1 hold no bars" in text and "w0 hold" not in text
