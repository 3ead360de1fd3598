"""The store engines the contract tests and the shared-store core tests run over (the
``engine`` fixture is in conftest.py).

An engine is a factory of *handles* on one store: ``open()`` returns a new handle on the same
data (a second sqlite connection to the file; for the memory engine, the same object), the way
a second server process sees the store (for Redis, a second connection). The Redis engines
(``redis``, and ``redis-cluster`` on a three-node Redis Cluster) run against a real
``redis-server`` (tests/redis_fixture.py; skipped with the reason when there is none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import attrs

from keystore.resolver import IdentityBinding
from keystore.store.redis_database import RedisDatabase
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.store.base import CoreStore
from lwm2m_server.store.redis import RedisStore
from object_models.path import LwM2mPath

ENGINES = ["memory", "sqlite", "redis", "redis-cluster"]


@attrs.define
class Engine:
    name: str
    open: Callable[[], CoreStore]
    """Another handle on the same store (another process's view)."""


def reg(
    n: int = 0,
    *,
    endpoint: str | None = None,
    last_update: float = 1000.0,
    lifetime: int = 300,
    address: Address | None = None,
    identity: IdentityBinding | None = None,
    **kw: object,
) -> Registration:
    fields: dict[str, object] = {
        "registration_id": f"id{n}",
        "endpoint": endpoint or f"ep{n}",
        "address": address or Address("192.0.2.1", 5683 + n),
        "lifetime": lifetime,
        "lwm2m_version": "1.1",
        "binding": "U",
        "object_links": ObjectLinks.parse("</1/0>,</3/0>,</3303/0>"),
        "transport": "coap" if identity is None else "coaps",
        "identity": identity,
        "registered_at": last_update,
        "last_update": last_update,
    }
    fields.update(kw)
    return Registration(**fields)  # type: ignore[arg-type]


def obs(token: bytes, registration: Registration, path: str = "/3303/0/5700") -> Observation:
    return Observation(
        token,
        registration.endpoint,
        registration.registration_id,
        (LwM2mPath.parse(path),),
        content_format=112,
        created_at=registration.last_update,
    )


@contextlib.contextmanager
def redis_node_pair(
    url: str, prefix: str, *, asynchronous: bool = False
) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two Redis stores on one database: ``node`` with the group commit on (``asynchronous``:
    the asynchronous commit), ``other`` a second node that reads what ``node`` committed."""
    node, other = (RedisStore(RedisDatabase(url, prefix=prefix)) for _ in range(2))
    node.enable_group_commit(asynchronous=asynchronous)
    try:
        yield node, other
    finally:
        node.close()
        other.close()
