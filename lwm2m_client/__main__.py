"""``python -m lwm2m_client``: the demo device (see ``cli``)."""

from .cli import main

raise SystemExit(main())
