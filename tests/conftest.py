"""Suite-wide test settings.

Hypothesis: CI machines are shared and at times slow, so no property test may fail on time. Two
profiles with the same example counts; neither has a deadline (speed is measured in ``bench/``,
never asserted by a test). ``ci`` (chosen when the ``CI`` environment variable is set, as
``.ci/run`` runs) also suppresses the ``too_slow`` health check, which fires when example
*generation* is slow on a loaded machine — a fact about the machine, not about the code.
``HYPOTHESIS_PROFILE`` picks one explicitly.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# a real redis-server (``redis_url``) and every store engine (``engine``) for the store tests
pytest_plugins = ["tests.redis_fixture", "tests.store_engines"]
