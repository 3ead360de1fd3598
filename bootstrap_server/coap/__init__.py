"""The bootstrap server's aiocoap code: the ``/bs`` and ``/bspack`` resources and the downlink
that carries a session's requests to the client."""
