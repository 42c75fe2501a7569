"""``python -m nertz_signal``: run the signal service (settings from the environment)."""

from __future__ import annotations

import argparse
import json
import sys

from nertz_common.settings import load
from nertz_signal.settings import SignalSettings

_EPILOG = """\
environment (nested with __):
  NATS_URL                          NATS server (default nats://127.0.0.1:4222)
  NERTZ_METRICS_PORT                /metrics port, 0 = off
  NERTZ_LOG_LEVEL                   INFO, DEBUG...
  NERTZ_SIGNAL__ENTRY_THRESHOLD     |combined| for an intent on bar factors only, (0, 10] (default 9.5)
  NERTZ_SIGNAL__ENTRY_THRESHOLD_BOOKS  the same when a book factor is in the score (default 6.4)
  NERTZ_SIGNAL__ENTRY_THRESHOLDS    per exact factor set, JSON: '{"egm+ild+rol+pio": 7}' (default {})
  NERTZ_SIGNAL__WEIGHTS__EGM ...    factor weights (ILD, ROL, PIO, OGM likewise)
  NERTZ_SIGNAL__STOP_MODE           atr | fixed (then NERTZ_SIGNAL__TP_PERCENTAGE, __SL_PERCENTAGE: 4, 1)
  NERTZ_SIGNAL__STOP_TIMEFRAME      bars of the stop's ATR: 1 ... 720, D, W (default 240 = 4 h)
  NERTZ_SIGNAL__STOP_ATR_PERIOD     ATR period in those bars (14); __STOP_ATR_MIN_BARS before a stop (6)
  NERTZ_SIGNAL__SL_MIN, __SL_MAX    stop-loss bounds, fractions (0.015, 0.05); __SL_ATR_MULTIPLE (1.5)
  NERTZ_SIGNAL__RISK_REWARD         TP = this x SL, gross (default 3.5)
  NERTZ_SIGNAL__MIN_RISK_REWARD     net R:R after fees and slippage, else vetoed (default 3)
  NERTZ_SIGNAL__TAKER_FEE           per leg, fraction (0.00055); NERTZ_SIGNAL__SLIPPAGE_BPS per leg (1)
  NERTZ_SIGNAL__RISK_PER_TRADE      fraction of equity at risk (default 0.01)
  NERTZ_SIGNAL__EQUITY_USDT         reference equity (default 10000)
  NERTZ_SIGNAL__MAX_LEVERAGE        leverage cap (default 10)
  see nertz_signal.core.config.SignalConfig for every key
"""


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, and run the service; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_signal",
        description="Nertz signal: factor snapshots per closed bar and trade intents, from md.* in log order.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--print-config", action="store_true", help="print the effective settings as JSON and exit")
    args = parser.parse_args(argv)
    settings = load(SignalSettings)  # exits 2 listing every bad setting
    if args.print_config:
        print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    from nertz_common.runtime import run_service
    from nertz_signal.app import serve

    return run_service(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
