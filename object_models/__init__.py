"""The LwM2M data model: paths, nodes, resource types, object models and codecs.

Pure Python with no I/O and no aiocoap import, so that both servers, the tools and the tests can
use it without a network stack.
"""
