"""The CoAP adapter of the LwM2M server, on the runtime's own CoAP layer (``lwm2m_runtime``).

``site`` serves ``/rd`` and ``/dp`` (the ``CoapServer`` request handler), ``uplink`` runs the
flows for what devices send (and decides on notifications), ``requests``/``downlink``/
``formats`` build, send and decode what the server asks of them.
"""
