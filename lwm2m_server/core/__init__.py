"""The sans-IO core of the LwM2M server: registrations, lifetimes, queue mode, observations and
telemetry mapping. No sockets, no clocks, no CoAP stack: every call takes ``now`` and returns
values and events (``events.py``); the CoAP adapter (``lwm2m_server.coap``) does the I/O.
See docs/architecture-server.md for the adapter flow.
"""
