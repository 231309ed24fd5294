"""python -m service: the same program as gan-serve."""

import sys

from service.cli import main

sys.exit(main())
