import sys

from nertz_executor.app import main

sys.exit(main())
