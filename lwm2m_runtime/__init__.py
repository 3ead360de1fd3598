"""The runtime both servers share: our sans-IO CoAP layer (``lwm2m_runtime.coap``), its asyncio
drivers (``udp`` for NoSec, ``coaps`` over the DTLS endpoint of ``keystore.coaps``), and the
server facade (``server.CoapServer``); later config loading and HTTP error mapping.

Layering: this package sits above ``object_models`` and ``keystore`` and below ``lwm2m_server`` and
``bootstrap_server``; it never imports either server (nor ``lwm2m_client``).
"""
