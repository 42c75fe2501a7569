import sys

from nertz_validator.app import main

sys.exit(main())
