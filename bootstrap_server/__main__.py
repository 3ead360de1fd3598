"""``python -m bootstrap_server`` = ``lwm2m-bootstrap``."""

import sys

from .cli import main

sys.exit(main())
