"""The bootstrap server's sans-IO core: configurations, sessions, provisioning (no sockets, no
clock: every time is passed in as ``now``)."""
