"""``python -m nertz_api``: migrate, project the log into Postgres and serve the API (one process)."""

from __future__ import annotations

import argparse
import sys

from nertz_api.app import serve
from nertz_api.settings import ApiSettings
from nertz_common.runtime import run_service
from nertz_common.settings import load

EPILOG = """environment:
  DATABASE_URL        Postgres URL (postgresql://user:pass@host:5432/db)
  NATS_URL            NATS server URL (nats://127.0.0.1:4222)
  NERTZ_SYMBOLS       configured symbols, JSON list (["BTCUSDT","ETHUSDT","SOLUSDT"])
  NERTZ_API__HOST     interface to bind (127.0.0.1)
  NERTZ_API__PORT     HTTP port of the API and its /metrics (8081)
  NERTZ_API__TOKEN    bearer token of POST /start and /stop (unset: disabled)
  NERTZ_API__BATCH    messages per projector transaction (1000)
  NERTZ_LOG_LEVEL     INFO, DEBUG...
"""


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and the environment, then run the service; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_api",
        description="Nertz api: apply the SQL migrations, project the NERTZ log into Postgres (durable consumer "
        "'projector') and serve the monitoring API, until SIGTERM.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--migrate-only", action="store_true", help="apply the migrations and exit")
    args = parser.parse_args(argv)
    settings = load(ApiSettings)  # exits 2 listing every bad setting
    return run_service(serve(settings, migrate_only=args.migrate_only))


if __name__ == "__main__":
    sys.exit(main())
