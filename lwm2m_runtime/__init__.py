"""The runtime both servers share: our sans-IO CoAP layer (``coap``), its asyncio drivers
(``udp`` for NoSec, ``coaps`` over the DTLS endpoint of ``keystore.coaps``), the server facade
(``server.CoapServer``), settings loading (``settings``: YAML with ``${ENV:default}``,
environment, flags; ``listeners``: security modes and DTLS keys), the peer ``Address``
(``address``), HTTP error mapping (``http_errors``), the operator HTTP API client
(``api_client``) and log filters (``log_filters``).

Layering: this package sits above ``object_models`` and ``keystore`` and below ``lwm2m_server`` and
``bootstrap_server``; it never imports either server (nor ``lwm2m_client``), as
``tests/test_layers.py`` checks.
"""
