"""Fixtures of the market-ingest tests: the bundled real Bybit data (see data/SOURCES.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nertz_common.testing.fake_bybit import FakeBybit, KlineStore, load_instruments, loopback_only
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


# --- the fake Bybit (test_fake_bybit.py, test_live.py) ------------------------------------------

INSTRUMENTS = Path(__file__).parent / "data" / "bybit_instruments_linear.json"
BTC_CSV = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Refuse (and fail the test on) any connection or name lookup beyond loopback."""
    with loopback_only() as refused:
        yield
    assert refused == [], f"traffic beyond loopback was attempted: {refused}"


@pytest.fixture(scope="module")
def klines() -> KlineStore:
    """3,000 real BTCUSDT 1m klines for the fake's REST kline endpoint."""
    store = KlineStore()
    store.add_csv(BTC_CSV, limit=3000)
    return store


@pytest.fixture
async def fake(klines: KlineStore) -> AsyncIterator[FakeBybit]:
    """A fake Bybit V5 server on 127.0.0.1 that the real pybit talks to."""
    async with FakeBybit(instruments=load_instruments(INSTRUMENTS), klines=klines) as f:
        yield f
