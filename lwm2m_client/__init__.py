"""A real LwM2M client over aiocoap: the demo device and the peer of the server's integration tests.

The package is split by LwM2M interface (as Wakaama does) so each module has one job:

- ``objects``: the in-memory object tree (values typed by the object models),
- ``attributes``: Write-Attributes storage and the effective notification attributes,
- ``link_format``: the CoRE link-format text of Register, Update and Discover,
- ``management``: the Device Management interface, free of aiocoap (request in, response out),
- ``observe``: observations and the pmin/pmax/gt/lt/st notification policy,
- ``coap_resource``: the one aiocoap resource that serves every LwM2M path,
- ``registration``: Register/Update/De-register parameters,
- ``bootstrap``: the Bootstrap interface's requests (Discover, Read, Write, Delete, Finish),
  free of aiocoap; ``bootstrap_session`` runs one bootstrap (``POST /bs`` or ``GET /bspack``)
  over the network; ``accounts`` turns the Security/Server instances into server URIs and DTLS
  credentials,
- ``queue_mode``: the sleeping-device simulation, ``outage``: the vanished-device simulation,
- ``firmware`` (object 5) and ``software`` (object 9): the update state machines, with
  ``firmware_image`` (the demo image format and its digest), ``package_download`` (pull over
  CoAP Block2 and HTTP) and ``update_host`` (how they reach the network through the client),
- ``transport``: the aiocoap context chosen from the server URI scheme,
- ``client``: ``Lwm2mClient``, tying it all together, and ``cli`` for ``lwm2m-client``.
"""

from __future__ import annotations

__all__ = ["Lwm2mClient", "ObjectTree"]


def __getattr__(name: str) -> object:
    # Lazy so that ``import lwm2m_client.objects`` works without pulling aiocoap and the codecs.
    if name == "Lwm2mClient":
        from .client import Lwm2mClient

        return Lwm2mClient
    if name == "ObjectTree":
        from .objects import ObjectTree

        return ObjectTree
    raise AttributeError(name)
