"""``RedisProfileStore``: ``ProfileStore`` (profile documents and which device uses which) on
Redis.

Keys (``P`` is the prefix; one hash-tag group, ``{P:prof}``):

* ``{P:prof}:doc``     hash  profile name → ``{"source", "updated_at", "document"}`` (JSON);
* ``{P:prof}:assign``  hash  endpoint → profile name.

One group, not a key per endpoint: profiles are few, written by operators, and read whole
(``profiles()``, ``assignments()`` at start and on reload), so one slot is no bottleneck and a
listing is one command. A replace or removal that returns the old record runs as one MULTI/EXEC
(read and write in one isolated step), so two processes never both "replace" the same old
record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .database import dumps
from .errors import StoreError
from .profiles import StoredProfile
from .redis_database import MISSING, ReadAhead, RedisDatabase, text


class RedisProfileStore:
    """``keystore.store.profiles.ProfileStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase, group: Any = None) -> None:
        """``group``: the LwM2M server's ``RedisStore`` (one Redis, group commit): the
        assignments of a commit's Registers are read in that commit (``assignments_of`` then
        answers the profile engine's re-read of them, the next loop iteration, without a
        round trip of its own)."""
        self._db = db
        self.url = db.url
        self._docs = db.group_key("prof", "doc")
        self._assign = db.group_key("prof", "assign")
        self._ahead = ReadAhead()
        if group is not None:
            group.read_with_registers(self._read_ahead)

    def _read_ahead(
        self, endpoints: list[str]
    ) -> tuple[Callable[[Any], object], Callable[[Any], None]]:
        def done(answer: Any) -> None:
            if not isinstance(answer, BaseException):
                self._ahead.fill(dict(zip(endpoints, answer, strict=True)))

        return (lambda pipe: pipe.hmget(self._assign, endpoints)), done

    def _decode(self, name: str, raw: bytes | str) -> StoredProfile:
        try:
            data = json.loads(raw)
            return StoredProfile(
                name, data["document"], str(data["source"]), float(data["updated_at"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"Redis store {self.url}: corrupt profile {name!r}: {exc}") from exc

    def _swap(self, name: str, value: str | None) -> StoredProfile | None:
        """Set (or delete, ``None``) a profile and return the one it replaced, atomically."""
        with self._db.errors(f"cannot write profile {name!r}"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.hget(self._docs, name)
            if value is None:
                pipe.hdel(self._docs, name)
            else:
                pipe.hset(self._docs, name, value)
            old: Any = pipe.execute()[0]
        return None if old is None else self._decode(name, old)

    def put_profile(self, profile: StoredProfile) -> StoredProfile | None:
        try:
            value = dumps(
                {
                    "source": profile.source,
                    "updated_at": profile.updated_at,
                    "document": profile.document,
                }
            )
        except (TypeError, ValueError) as exc:
            raise StoreError(f"profile {profile.name!r} is not JSON-ready: {exc}") from exc
        return self._swap(profile.name, value)

    def get_profile(self, name: str) -> StoredProfile | None:
        with self._db.errors(f"cannot read profile {name!r}"):
            raw = self._db.client.hget(self._docs, name)
        return None if raw is None else self._decode(name, raw)

    def profiles(self) -> list[StoredProfile]:
        with self._db.errors("cannot read the profiles"):
            raw = self._db.client.hgetall(self._docs)
        found = {text(k): v for k, v in raw.items()}
        return [self._decode(name, found[name]) for name in sorted(found)]

    def remove_profile(self, name: str) -> StoredProfile | None:
        return self._swap(name, None)

    def assign(self, endpoint: str, profile: str | None) -> None:
        self._ahead.forget(endpoint)  # what was read ahead is older than this
        with self._db.errors(f"cannot assign a profile to {endpoint!r}"):
            if profile is None:
                self._db.client.hdel(self._assign, endpoint)
            else:
                self._db.client.hset(self._assign, endpoint, profile)

    def assignments(self) -> dict[str, str]:
        with self._db.errors("cannot read the profile assignments"):
            raw = self._db.client.hgetall(self._assign)
        found = {text(k): text(v) for k, v in raw.items()}
        return {endpoint: found[endpoint] for endpoint in sorted(found)}

    def assignment(self, endpoint: str) -> str | None:
        with self._db.errors(f"cannot read the profile assignment of {endpoint!r}"):
            raw = self._db.client.hget(self._assign, endpoint)
        return None if raw is None else text(raw)

    def assignments_of(self, endpoints: Sequence[str]) -> dict[str, str]:
        """What the Registers' commit read ahead, and one HMGET for the rest (the assignments
        are one hash: one slot on a cluster)."""
        if not endpoints:
            return {}
        found: dict[str, Any] = {}
        missing: list[str] = []
        for endpoint in endpoints:
            value = self._ahead.take(endpoint)
            if value is MISSING:
                missing.append(endpoint)
            else:
                found[endpoint] = value
        if missing:
            with self._db.errors("cannot read the profile assignments"):
                raw = self._db.client.hmget(self._assign, missing)
            found.update(zip(missing, raw, strict=True))
        return {ep: text(found[ep]) for ep in endpoints if found[ep] is not None}
