"""Bootstrap configurations: what the bootstrap server writes into a client (``model``) and the
parser of their documents (``loader``: YAML/JSON files, API bodies, profiles' ``bootstrap:``
sections).

Shared data, so it lives below both servers: the bootstrap server serves these configurations,
the LwM2M server validates the bootstrap sections of the device profiles it stores.
"""
