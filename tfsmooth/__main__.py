"""``python -m tfsmooth``: the command line interface."""

import sys

from tfsmooth.cli import main

sys.exit(main())
