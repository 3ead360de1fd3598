"""The bootstrap server's CoAP side, on the runtime's ``CoapServer``: the ``/bs`` and ``/bspack``
handler and the downlink that carries a session's requests to the client."""
