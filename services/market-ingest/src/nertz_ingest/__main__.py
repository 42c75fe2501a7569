"""``python -m nertz_ingest``: see :mod:`nertz_ingest.app`."""

from __future__ import annotations

import sys

from nertz_ingest.app import main

if __name__ == "__main__":
    sys.exit(main())
