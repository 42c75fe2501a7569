"""The short chaos suite (``make chaos`` runs the long one): faults injected into the services as
processes on their own NATS and Postgres, compared with an uninterrupted run of the same input.

Also: the comparison itself, on logs changed by hand, so a zero below means something.
"""

from __future__ import annotations

import msgspec
import pytest

from nertz_cli import chaos

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]


def _log(*ids: str, key: str = "exec.BTCUSDT") -> list[tuple[str, str, bytes]]:
    return [(key, i, msgspec.json.encode({"id": i})) for i in ids]


@pytest.fixture
def base() -> chaos.Snapshot:
    return chaos.Snapshot(_log("a", "b", "c") + _log("x", "y", key="exec.ETHUSDT"), {"orders": 3})


def test_compare_counts_nothing_for_the_same_log_even_with_symbols_interleaved_otherwise(base):
    run = chaos.Snapshot(_log("x") + _log("a", "b") + _log("y", key="exec.ETHUSDT") + _log("c"), {"orders": 3})
    run.log[0] = ("exec.ETHUSDT", *run.log[0][1:])
    assert chaos.compare(base, run, chaos.Outcome("same")).ok


@pytest.mark.parametrize(
    ("change", "field", "n"),
    [
        (lambda log, rows: log.pop(1), "lost", 1),
        (lambda log, rows: log.append(log[0]), "duplicated", 1),
        (lambda log, rows: log.append(("exec.BTCUSDT", "z", b"{}")), "divergent", 1),
        (lambda log, rows: log.__setitem__(0, ("exec.BTCUSDT", "a", b"{}")), "divergent", 1),
        (lambda log, rows: log.insert(0, log.pop(2)), "divergent", 3),  # c, a, b against a, b, c
        (lambda log, rows: rows.__setitem__("orders", 2), "lost", 1),
        (lambda log, rows: rows.__setitem__("orders", 5), "duplicated", 2),
    ],
    ids=["missing", "twice", "extra", "other-payload", "reordered", "row-missing", "rows-twice"],
)
def test_compare_counts_each_kind_of_damage(base, change, field, n):
    run = chaos.Snapshot(list(base.log), dict(base.rows))
    change(run.log, run.rows)
    outcome = chaos.compare(base, run, chaos.Outcome("damaged"))
    assert getattr(outcome, field) == n and not outcome.ok


def test_short_chaos_suite_loses_duplicates_and_changes_nothing(tmp_path):
    lab = chaos.open_lab(tmp_path / "chaos", rows=3000, say=print)
    try:
        base, outcomes = chaos.run_suite(lab, chaos.short_suite(seed=7), timeout_s=300)
    finally:
        lab.stop()
    assert len(base.log) > 10_000 and any(k.startswith("exec.") for k, _, _ in base.log)
    for o in outcomes:
        assert o.ok, f"{o.fault}: {o}"
        killed = next(n for n in o.notes if n.startswith("killed"))
        assert all(s in killed for s in ("signal", "market-ingest", "executor")), killed
