"""``python -m bench.load``: the server load benchmark (see ``bench.load.scenario``)."""

import sys

from .scenario import main

sys.exit(main())
