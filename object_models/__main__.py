"""``python -m object_models``: the ``lwm2m-models`` command."""

import sys

from .cli import main

sys.exit(main())
