"""``python -m lwm2m_server``: the same as the ``lwm2m-server`` command."""

import sys

from .cli import main

sys.exit(main())
