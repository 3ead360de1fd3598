"""The HTTP API (aiohttp) of the LwM2M server: ``create_app(ops)``; see ``app``."""

from .app import create_app

__all__ = ["create_app"]
