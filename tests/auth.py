"""The admin API token the tests' real servers are started with (``api_auth.admin_token``), so a
test's HTTP calls authenticate like an operator's (docs/http-api.md, Authentication)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVER_ENV = {"LWM2M_SERVER_API_AUTH_ADMIN_TOKEN": ADMIN_TOKEN}
BOOTSTRAP_ENV = {"LWM2M_BOOTSTRAP_API_AUTH_ADMIN_TOKEN": ADMIN_TOKEN}
CLI_ENV = {"LWM2M_API_TOKEN": ADMIN_TOKEN}


@contextmanager
def token_env() -> Iterator[None]:
    """``$LWM2M_API_TOKEN`` set for an operator command run in this process (a thread)."""
    before = os.environ.get("LWM2M_API_TOKEN")
    os.environ["LWM2M_API_TOKEN"] = ADMIN_TOKEN
    try:
        yield
    finally:
        if before is None:
            del os.environ["LWM2M_API_TOKEN"]
        else:
            os.environ["LWM2M_API_TOKEN"] = before
