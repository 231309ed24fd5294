"""python -m model_export: the same program as gan-export."""

import sys

from model_export.cli import main

sys.exit(main())
