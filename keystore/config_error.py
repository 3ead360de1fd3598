"""``ConfigError``: a configuration problem, named by ``source`` (file, environment variable,
flag, request), ``key`` (the dotted/indexed place in the document) and ``reason``.

Both servers' settings (``lwm2m_runtime.settings``), the profile documents and the bootstrap
configurations raise it, and the CLIs and HTTP APIs turn it into exit status 2 or HTTP 400.
It lives here, in ``keystore``, because the lowest layer that reads configuration documents is
the keystore's bootstrap-configuration parser (``keystore.bootstrap_config``); ``object_models``
reads no configuration. It is not ``keystore.dtls.ConfigError`` (a DTLS engine setting that
cannot work, raised by the sans-IO engine).
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem: ``source`` (file, env var, flag), ``key`` and ``reason``."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")
