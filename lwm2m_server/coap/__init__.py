"""The CoAP adapter of the LwM2M server: the only package that imports aiocoap.

``transport`` builds the context (and holds the aiocoap workarounds), ``site`` serves ``/rd``
and ``/dp``, ``uplink`` runs the flows for what devices send, ``requests``/``downlink``/
``formats`` build, send and decode what the server asks of them.
"""
