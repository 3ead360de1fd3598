"""The HTTP API (aiohttp) of the LwM2M server: ``create_app(ops)``, ``create_server_app(server)``;
see ``app``."""

from .app import create_app, create_server_app

__all__ = ["create_app", "create_server_app"]
