"""``python -m itmroute``."""

import sys

from .cli import main

sys.exit(main())
