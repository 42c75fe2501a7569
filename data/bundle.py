"""Rebuild the bundled market data under ``data/`` from the provenance snapshots (see ``data/SOURCES.md``).

Usage: ``python data/bundle.py [SOURCE_DIR]`` with ``SOURCE_DIR`` the folder holding
``crypto_backtester/commit_33c8800/`` and ``cryptofeed/v3_57d5f18d/`` (default ``/work/shared/data``).
Writes the kline CSVs, the linear WebSocket recording and the instruments-info answer of the
recording's symbols (``bybit_instruments_linear.json``).
Prints the counts and spans that ``SOURCES.md`` quotes. Standard library only; output is byte-for-byte
reproducible (xz preset 9e, no timestamps in the container).
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
LINEAR_CONN = "BYBIT.ws.2"
LINEAR_ADDR = "wss://stream.bybit.com/v5/public/linear"
PRESET = 9 | lzma.PRESET_EXTREME
#: the symbols of the recording (and of the CSVs): their instruments-info entries are bundled
INSTRUMENT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")


def bundle_csv(src: Path) -> None:
    out_dir = HERE / "bybit_kline_1m"
    out_dir.mkdir(exist_ok=True)
    for sym in SYMBOLS:
        raw = (src / "crypto_backtester" / "commit_33c8800" / f"{sym}_1m.csv").read_bytes()
        lines = raw.decode().splitlines()
        out = out_dir / f"{sym}_1m.csv.xz"
        out.write_bytes(lzma.compress(raw, preset=PRESET))
        span = f"{lines[1][:25]} .. {lines[-1][:25]}"
        print(f"{out.relative_to(HERE)}: {len(lines) - 1} rows, {span}, {out.stat().st_size} B")


def bundle_recording(src: Path) -> None:
    kept: list[str] = []
    recv = 0
    first_ts = last_ts = 0.0
    with open(src / "cryptofeed" / "v3_57d5f18d" / "BYBIT.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            t = rec.get("t")
            if t == "header":
                kept.append(line)
            elif t == "connect" and rec.get("conn") == LINEAR_CONN:
                assert rec["addr"] == LINEAR_ADDR, rec
                kept.append(line)
            elif t == "recv" and rec.get("conn") == LINEAR_CONN:
                kept.append(line)
                recv += 1
                first_ts = first_ts or rec["ts"]
                last_ts = rec["ts"]
    out_dir = HERE / "cryptofeed"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / "BYBIT.linear.jsonl.xz"
    out.write_bytes(lzma.compress("".join(kept).encode(), preset=PRESET))
    span = f"ts {first_ts} .. {last_ts}"
    print(f"{out.relative_to(HERE)}: {len(kept)} lines, {recv} recv frames, {span}, {out.stat().st_size} B")


def bundle_instruments(src: Path) -> None:
    recorded = json.loads(
        (src / "cryptofeed" / "v3_57d5f18d" / "http_v5_market_instruments-info_linear.json").read_text()
    )
    answer = recorded["response"]
    assert answer["retCode"] == 0 and answer["result"]["category"] == "linear", answer["retMsg"]
    entries = [e for e in answer["result"]["list"] if e["symbol"] in INSTRUMENT_SYMBOLS]
    assert sorted(e["symbol"] for e in entries) == sorted(INSTRUMENT_SYMBOLS)
    out = HERE / "bybit_instruments_linear.json"
    doc = {
        "_source": (
            "Bybit GET /v5/market/instruments-info?category=linear&status=Trading&limit=1000, captured by "
            "cryptofeed's raw-data recorder (bmoscon/cryptofeed v3@57d5f18d, sample_data/BYBIT.jsonl.zst); only "
            f"the {', '.join(INSTRUMENT_SYMBOLS)} entries of result.list kept, verbatim; time = the answer's "
            "server time (ms). See data/SOURCES.md section 4."
        ),
        "url": recorded["url"],
        "recv_ts": recorded["recv_ts"],
        "time": answer["time"],
        "list": entries,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    rules = ", ".join(
        f"{e['symbol']} tick {e['priceFilter']['tickSize']} step {e['lotSizeFilter']['qtyStep']}" for e in entries
    )
    print(
        f"{out.relative_to(HERE)}: {len(entries)} of {len(answer['result']['list'])} entries ({rules}), "
        f"{out.stat().st_size} B"
    )


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data")
    bundle_csv(src)
    bundle_recording(src)
    bundle_instruments(src)


if __name__ == "__main__":
    main()
