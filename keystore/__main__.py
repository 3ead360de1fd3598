"""``python -m keystore``: the ``lwm2m-keystore`` command."""

import sys

from .cli import main

sys.exit(main())
