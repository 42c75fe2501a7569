"""Fixtures of the market-ingest tests: the bundled real Bybit data (see data/SOURCES.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nertz_ingest.adapters.recording import RawFrame, SourceFile

DATA = Path(__file__).resolve().parents[2] / "data"
RECORDING = DATA / "cryptofeed" / "BYBIT.linear.jsonl.xz"
CSVS = tuple(DATA / "bybit_kline_1m" / f"{s}_1m.csv.xz" for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT"))


@pytest.fixture(scope="session")
def recording() -> Path:
    """The bundled linear recording (cryptofeed format 2, xz)."""
    return RECORDING


@pytest.fixture(scope="session")
def csvs() -> tuple[Path, ...]:
    """The bundled 30-day 1m kline CSVs of BTCUSDT, ETHUSDT, SOLUSDT (xz)."""
    return CSVS


@pytest.fixture(scope="session")
def frames() -> list[RawFrame]:
    """Every linear frame of the bundled recording, in receive order."""
    out = [r for r in SourceFile(RECORDING).records() if isinstance(r, RawFrame)]
    assert len(out) == 2546
    return out


@pytest.fixture(scope="session")
def first_frame(frames: list[RawFrame]) -> Callable[..., RawFrame]:
    """Return the first real frame whose topic starts with ``prefix`` (and matches ``when``)."""

    def find(prefix: str, when: Callable[[dict], bool] = lambda m: True) -> RawFrame:
        for f in frames:
            m = json.loads(f.raw)
            if m.get("topic", "").startswith(prefix) and when(m):
                return f
        raise LookupError(prefix)

    return find
