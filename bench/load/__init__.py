"""Server load benchmark: a hand-built CoAP codec, a many-client generator in one process, a
raw UDP echo server giving the ceiling, and the scenario that runs them against the LwM2M
server. See ``bench/README.md`` and the "Server load" section of ``docs/performance.md``."""
