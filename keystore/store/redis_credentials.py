"""``RedisCredentialStore``: ``CredentialStore`` (device credentials, server identity, trusted
CAs) on Redis, for several server processes and hosts sharing one store.

Keys (``P`` is the prefix; all in one hash-tag group, ``{P:cred}``, so one Lua script can
change them together, also on Redis Cluster):

* ``{P:cred}:dev``    hash  endpoint → the device record (JSON, secrets hex-encoded as the sqlite
  engine keeps them as BLOBs), including its index values (``idx``);
* ``{P:cred}:psk``    hash  PSK identity (hex) → endpoint;
* ``{P:cred}:rpk``    hash  SubjectPublicKeyInfo DER (hex) → endpoint;
* ``{P:cred}:cert``   hash  pinned certificate's SHA-256 → endpoint;
* ``{P:cred}:server`` string  the server identity (JSON);
* ``{P:cred}:ca``     hash  CA certificate SHA-256 → the trusted CA (JSON);
* ``{P:cred}:version`` string  a counter every write moves (``data_version()``, below).

Why one group and not a key per endpoint: "one identity, one endpoint" is a constraint across
all devices (a PSK identity may belong to one endpoint only), so every write must see and change
the indexes of every device atomically. Redis runs a Lua script as one isolated step, but only
over keys of one Cluster slot. Credentials are written by operators (CLI, API, imports) and read
at handshakes, never at traffic rate, so one slot is no bottleneck; the per-endpoint tags are for
the state devices write (registrations, observations, device state).

Every write is one script (``_APPLY``) that first checks every uniqueness rule for every change
against the stored indexes, then writes: a change that conflicts writes nothing. ``batch()``
collects writes (reads inside it see them) and sends them as one script at the end, so an import
is all or nothing as with sqlite. A script that finds a conflict another process created since
the batch checked raises the same ``CredentialError``.

**Change detection** (``keystore.credential_cache``; docs/cluster.md, "Credential cache"): the
script that writes also moves ``{P:cred}:version`` (INCR), in the same atomic step, so "did any
process anywhere change a credential?" is one GET, which the resolver's cache makes at most once
per event-loop iteration instead of one HGET per request — and on the server, where the
iterations that look credentials up are the ones that group-commit, no round trip of its own:
the GET rides the commit's pipeline (``follow_commits``). When the key does not exist (a new or
flushed Redis) it starts from Redis's clock in microseconds, so a version seen before a FLUSHALL
is never met again after it. Writes through this process also move ``local_writes()`` at once
(before and after the script): a lookup in the same iteration as a write made here sees it.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, Any

from ..credentials import (
    CredentialError,
    DeviceCredentials,
    ServerIdentity,
    TrustedCa,
    fingerprint,
    format_psk_identity,
    normalize_spki,
    short_fingerprint,
)
from ..modes import SecurityMode
from .errors import StoreError
from .redis_database import DEFAULT_PREFIX, CommitRead, RedisDatabase, text

if TYPE_CHECKING:
    from ..credential_cache import CommitVersions

#: index kind in the script → the ``CredentialError`` field the sqlite engine names
_FIELDS = {"psk": "psk_identity", "rpk": "rpk_public_key", "cert": "certificate"}

_APPLY = """
local ops = cjson.decode(ARGV[1])
local IDX = {psk = KEYS[2], rpk = KEYS[3], cert = KEYS[4]}
local KINDS = {'psk', 'rpk', 'cert'}
local recs = {}
local owners = {psk = {}, rpk = {}, cert = {}}
local changed = {psk = {}, rpk = {}, cert = {}}
local puts = {}
local function idx_of(ep)
  if recs[ep] == nil then
    local raw = redis.call('HGET', KEYS[1], ep)
    local idx = false
    if raw then idx = cjson.decode(raw)['idx'] or {} end
    recs[ep] = idx
  end
  return recs[ep]
end
local function owner(kind, value)
  local o = owners[kind][value]
  if o == nil then
    o = redis.call('HGET', IDX[kind], value) or false
    owners[kind][value] = o
  end
  return o
end
local function set_owner(kind, value, ep)
  owners[kind][value] = ep
  changed[kind][value] = true
end
for i, op in ipairs(ops) do
  if op.op == 'put' or op.op == 'del' then
    local old = idx_of(op.ep)
    if old then
      for _, kind in ipairs(KINDS) do
        local v = old[kind]
        if type(v) == 'string' and owner(kind, v) == op.ep then set_owner(kind, v, false) end
      end
    end
    if op.op == 'put' then
      for _, kind in ipairs(KINDS) do
        local v = op.idx[kind]
        if type(v) == 'string' then
          local o = owner(kind, v)
          if o and o ~= op.ep then return {'conflict', tostring(i - 1), kind, o} end
          set_owner(kind, v, op.ep)
        end
      end
      recs[op.ep] = op.idx
      puts[op.ep] = op.rec
    else
      recs[op.ep] = false
      puts[op.ep] = false
    end
  end
end
for kind, values in pairs(changed) do
  for v, _ in pairs(values) do
    local ep = owners[kind][v]
    if ep then redis.call('HSET', IDX[kind], v, ep) else redis.call('HDEL', IDX[kind], v) end
  end
end
for ep, rec in pairs(puts) do
  if rec then redis.call('HSET', KEYS[1], ep, rec) else redis.call('HDEL', KEYS[1], ep) end
end
for _, op in ipairs(ops) do
  if op.op == 'server' then redis.call('SET', KEYS[5], op.value)
  elseif op.op == 'ca' then redis.call('HSET', KEYS[6], op.sha, op.value)
  elseif op.op == 'ca_del' then redis.call('HDEL', KEYS[6], op.sha) end
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('INCR', KEYS[7])
else
  local t = redis.call('TIME')
  redis.call('SET', KEYS[7], t[1] .. string.format('%06d', tonumber(t[2])))
end
return {'ok'}
"""

# KEYS: version. The version, created from Redis's clock if it does not exist yet.
_VERSION = """
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('TIME')
  v = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[1], v, 'NX')
  v = redis.call('GET', KEYS[1])
end
return v
"""

_LOCAL_WRITES: weakref.WeakKeyDictionary[RedisDatabase, int] = weakref.WeakKeyDictionary()
"""Credential writes per ``RedisDatabase`` (every credential store of a process over it)."""


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _unhex(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected hex text, got {type(value).__name__}")
    return bytes.fromhex(value)


def _index(device: DeviceCredentials) -> dict[str, str]:
    """The device's index values, by kind (only those it has)."""
    idx: dict[str, str] = {}
    if device.psk_identity is not None:
        idx["psk"] = bytes(device.psk_identity).hex()
    if device.rpk_spki is not None:
        idx["rpk"] = bytes(device.rpk_spki).hex()
    if device.certificate is not None:
        idx["cert"] = fingerprint(device.certificate)
    return idx


def _conflict(device: DeviceCredentials, kind: str, owner: str) -> CredentialError:
    """The same error, with the same words, as the sqlite engine's unique-index check."""
    if kind == "psk":
        assert device.psk_identity is not None
        shown = repr(format_psk_identity(device.psk_identity))
    elif kind == "rpk":
        assert device.rpk_spki is not None
        shown = f"public key {short_fingerprint(device.rpk_spki)}"
    else:
        assert device.certificate is not None
        shown = f"sha256:{fingerprint(device.certificate)[:16]}"
    return CredentialError(_FIELDS[kind], f"{shown} already belongs to endpoint {owner!r}")


_UNSET: Any = object()


class _Batch:
    """Writes collected by ``batch()`` and what reads inside it must see."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        self.devices: dict[str, DeviceCredentials | None] = {}
        self.owners: dict[tuple[str, str], str | None] = {}
        self.server: ServerIdentity | None = _UNSET
        self.cas: dict[str, TrustedCa | None] = {}


class RedisCredentialStore:
    """``CredentialStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase, *, owns_db: bool = False) -> None:
        self._db = db
        self._owns = owns_db
        self.url = db.url
        self._keys = [
            db.group_key("cred", name)
            for name in ("dev", "psk", "rpk", "cert", "server", "ca", "version")
        ]
        self._dev, self._psk, self._rpk, self._cert, self._server, self._ca, self._version = (
            self._keys
        )
        self._idx_keys = {"psk": self._psk, "rpk": self._rpk, "cert": self._cert}
        self._apply_script = db.script(_APPLY)
        self._version_script = db.script(_VERSION)
        self._batch: _Batch | None = None
        self._depth = 0
        self._followers: list[CommitVersions] = []
        """The caches given the version each group commit reads (``follow_commits``)."""

    @classmethod
    def open(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, cluster: bool = False
    ) -> RedisCredentialStore:
        """Connect (``StoreError`` naming the URL if Redis cannot be reached)."""
        db = RedisDatabase(url, prefix=prefix, cluster=cluster)
        try:
            db.ping()
        except StoreError:
            db.close()
            raise
        return cls(db, owns_db=True)

    @property
    def database(self) -> RedisDatabase:
        return self._db

    def close(self) -> None:
        if self._owns:
            self._db.close()

    def __enter__(self) -> RedisCredentialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        """A corrupt record: the reason names the field, never a value (values are secrets)."""
        return StoreError(f"Redis store {self.url}: {what}: {_safe_reason(exc)}")

    # -- writes ----------------------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[object]:
        return self._batched()

    @contextmanager
    def _batched(self) -> Iterator[object]:
        outer = self._depth == 0
        if outer:
            self._batch = _Batch()
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            if outer:
                self._batch = None  # nothing was sent: all or nothing
            raise
        self._depth -= 1
        if outer:
            batch, self._batch = self._batch, None
            if batch is not None and batch.ops:
                self._apply(batch.ops)

    def _apply(self, ops: list[dict[str, Any]]) -> None:
        wire = [{k: v for k, v in op.items() if k != "device"} for op in ops]
        db = self._db
        _LOCAL_WRITES[db] = _LOCAL_WRITES.get(db, 0) + 1  # a lookup during the write re-reads
        try:
            with db.errors("cannot write credentials"):
                result = self._apply_script(keys=self._keys, args=[json.dumps(wire)])
        finally:
            _LOCAL_WRITES[db] = _LOCAL_WRITES.get(db, 0) + 1
        status = [text(r) for r in result]
        if status[0] == "conflict":
            index, kind, owner = int(status[1]), status[2], status[3]
            device = ops[index].get("device")
            assert device is not None
            raise _conflict(device, kind, owner)

    def _write(self, op: dict[str, Any]) -> None:
        if self._batch is not None:
            self._batch.ops.append(op)
        else:
            self._apply([op])

    # -- change detection (keystore.credential_cache) ---------------------------------------------
    def local_writes(self) -> int:
        """Credential writes made through this process's connection so far."""
        return _LOCAL_WRITES.get(self._db, 0)

    def data_version(self) -> int:
        """``{P:cred}:version``: moves with every credential write of any process (the module
        docstring). -1 when Redis cannot be reached or the value is not a number (the cache then
        reads through, and the read reports the error: 5.03 while Redis is down)."""
        try:
            with self._db.errors("cannot read the credentials version"):
                raw = self._db.client.get(self._version)
                if raw is None:
                    raw = self._version_script(keys=[self._version])
            return int(raw)
        except (StoreError, ValueError, TypeError):
            return -1

    def follow_commits(self, follower: CommitVersions) -> None:
        """Read the version with every group commit on this connection (the server's
        ``RedisStore``, one Redis only: ``RedisDatabase.read_with_commits``) while ``follower``
        wants it, and hand it over: ``follower.commit_version(version, sent_at)``, ``version``
        None when the commit failed or the key is missing, ``sent_at`` the ``time.monotonic()``
        at which the commit was sent (Redis read the version after that). The resolver's cache
        then trusts its records in the next loop iteration without a GET of its own
        (keystore.credential_cache, "Versions read by the group commit"). On a Redis Cluster
        there is no group commit: nothing to follow."""
        if not self._followers and not self._db.cluster:
            self._db.read_with_commits(self._read_with_commit)
        self._followers.append(follower)

    def _read_with_commit(self) -> CommitRead | None:
        """One commit's GET of the version, or None when no follower wants one (an iteration
        that looked up no credentials: a notification burst)."""
        followers = self._followers
        if not any(follower.wants_commit_version() for follower in followers):
            return None
        key = self._version
        sent: list[float] = []

        def queue(pipe: Any) -> object:
            sent.append(time.monotonic())
            return pipe.get(key)

        def done(answer: Any) -> None:
            version: int | None = None
            if sent and answer is not None and not isinstance(answer, BaseException):
                with suppress(ValueError, TypeError):
                    version = int(answer)
            at = sent[0] if sent else time.monotonic()
            for follower in followers:
                follower.commit_version(version, at)

        return queue, done

    # -- devices ---------------------------------------------------------------------------------
    def put_device(self, device: DeviceCredentials) -> DeviceCredentials | None:
        if not isinstance(device, DeviceCredentials):
            raise StoreError(f"expected DeviceCredentials, got {type(device).__name__}")
        old = self.get_device(device.endpoint)
        idx = _index(device)
        batch = self._batch
        if batch is not None:
            for kind, value in idx.items():
                owner = self._owner(kind, value)
                if owner is not None and owner != device.endpoint:
                    raise _conflict(device, kind, owner)
        record = {
            "mode": int(device.mode),
            "active": bool(device.active),
            "psk_identity": _hex(device.psk_identity),
            "psk_key": _hex(device.psk_key),
            "rpk_spki": _hex(device.rpk_spki),
            "certificate": _hex(device.certificate),
            "idx": idx,
        }
        op = {
            "op": "put",
            "ep": device.endpoint,
            "rec": json.dumps(record, separators=(",", ":")),
            "idx": idx,
            "device": device,
        }
        self._write(op)
        if batch is not None:
            self._forget(batch, old)
            for kind, value in idx.items():
                batch.owners[(kind, value)] = device.endpoint
            batch.devices[device.endpoint] = device
        return old

    def _forget(self, batch: _Batch, old: DeviceCredentials | None) -> None:
        if old is not None:
            for kind, value in _index(old).items():
                if self._owner(kind, value) == old.endpoint:
                    batch.owners[(kind, value)] = None

    def _owner(self, kind: str, value: str) -> str | None:
        if self._batch is not None and (kind, value) in self._batch.owners:
            return self._batch.owners[(kind, value)]
        with self._db.errors("cannot read credentials"):
            raw = self._db.client.hget(self._idx_keys[kind], value)
        return None if raw is None else text(raw)

    def get_device(self, endpoint: str) -> DeviceCredentials | None:
        if self._batch is not None and endpoint in self._batch.devices:
            return self._batch.devices[endpoint]
        with self._db.errors("cannot read credentials"):
            raw = self._db.client.hget(self._dev, endpoint)
        return None if raw is None else self._decode_device(endpoint, raw)

    def _by_index(self, kind: str, value: str) -> DeviceCredentials | None:
        endpoint = self._owner(kind, value)
        if endpoint is None:
            return None
        device = self.get_device(endpoint)
        # an index entry is trusted only when the record agrees (defence in depth)
        if device is None or _index(device).get(kind) != value:
            return None
        return device

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None:
        return self._by_index("psk", bytes(identity).hex())

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None:
        try:
            canonical = normalize_spki(spki)
        except CredentialError:
            return None
        return self._by_index("rpk", canonical.hex())

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None:
        return self._by_index("cert", fingerprint(der))

    def device_endpoints(self, limit: int) -> frozenset[str] | None:
        """The endpoints that have a device record, or None when there are more than ``limit``
        (an HLEN first, so a large keystore is not listed). For the resolver's cache
        (``keystore.credential_cache``): "no record for this endpoint" without an HGET per new
        endpoint. Inside ``batch()`` it includes the batch's writes, as the other reads do."""
        with self._db.errors("cannot read credentials"):
            if int(self._db.client.hlen(self._dev)) > limit:
                return None
            found = {text(k) for k in self._db.client.hkeys(self._dev)}
        if self._batch is not None:
            for endpoint, device in self._batch.devices.items():
                if device is None:
                    found.discard(endpoint)
                else:
                    found.add(endpoint)
        return frozenset(found) if len(found) <= limit else None

    def devices(self) -> list[DeviceCredentials]:
        with self._db.errors("cannot read credentials"):
            raw = self._db.client.hgetall(self._dev)
        found: dict[str, DeviceCredentials | None] = {
            text(k): self._decode_device(text(k), v) for k, v in raw.items()
        }
        if self._batch is not None:
            found.update(self._batch.devices)
        return [found[ep] for ep in sorted(found) if found[ep] is not None]  # type: ignore[misc]

    def remove_device(self, endpoint: str) -> DeviceCredentials | None:
        old = self.get_device(endpoint)
        if old is None:
            return None
        self._write({"op": "del", "ep": endpoint})
        if self._batch is not None:
            self._forget(self._batch, old)
            self._batch.devices[endpoint] = None
        return old

    def _decode_device(self, endpoint: str, raw: bytes | str) -> DeviceCredentials:
        try:
            data = json.loads(raw)
            return DeviceCredentials(
                endpoint=endpoint,
                mode=SecurityMode(data["mode"]),
                psk_identity=_unhex(data["psk_identity"]),
                psk_key=_unhex(data["psk_key"]),
                rpk_spki=_unhex(data["rpk_spki"]),
                certificate=_unhex(data["certificate"]),
                active=bool(data["active"]),
            )
        except (CredentialError, ValueError, KeyError, TypeError) as exc:
            raise self._fail(f"corrupt credentials of {endpoint!r}", exc) from None

    # -- server identity and trusted CAs --------------------------------------------------------
    def server_identity(self) -> ServerIdentity | None:
        if self._batch is not None and self._batch.server is not _UNSET:
            return self._batch.server
        with self._db.errors("cannot read the server identity"):
            raw = self._db.client.get(self._server)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return ServerIdentity(
                bytes.fromhex(data["private_key_pem"]),
                tuple(bytes.fromhex(c) for c in data["chain"]),
            )
        except (CredentialError, ValueError, KeyError, TypeError) as exc:
            raise self._fail("corrupt server identity", exc) from None

    def put_server_identity(self, identity: ServerIdentity) -> None:
        if not isinstance(identity, ServerIdentity):
            raise StoreError(f"expected ServerIdentity, got {type(identity).__name__}")
        value = json.dumps(
            {
                "private_key_pem": bytes(identity.private_key_pem).hex(),
                "chain": [c.hex() for c in identity.certificate_chain],
            }
        )
        self._write({"op": "server", "value": value})
        if self._batch is not None:
            self._batch.server = identity

    def trusted_cas(self) -> list[TrustedCa]:
        with self._db.errors("cannot read the trusted CAs"):
            raw = self._db.client.hgetall(self._ca)
        found: dict[str, TrustedCa | None] = {}
        for sha, value in raw.items():
            try:
                data = json.loads(value)
                ca = TrustedCa(
                    bytes.fromhex(data["certificate"]),
                    auto_registration=bool(data["auto_registration"]),
                )
            except (CredentialError, ValueError, KeyError, TypeError) as exc:
                raise self._fail("corrupt trusted CA", exc) from None
            found[text(sha)] = ca
        if self._batch is not None:
            found.update(self._batch.cas)
        cas = [ca for ca in found.values() if ca is not None]
        return sorted(cas, key=lambda ca: (ca.subject, ca.fingerprint))

    def put_trusted_ca(self, ca: TrustedCa) -> None:
        if not isinstance(ca, TrustedCa):
            raise StoreError(f"expected TrustedCa, got {type(ca).__name__}")
        value = json.dumps(
            {"certificate": ca.certificate.hex(), "auto_registration": ca.auto_registration}
        )
        self._write({"op": "ca", "sha": ca.fingerprint, "value": value})
        if self._batch is not None:
            self._batch.cas[ca.fingerprint] = ca

    def remove_trusted_ca(self, sha256: str) -> TrustedCa | None:
        prefix = sha256.lower().removeprefix("sha256:").replace(":", "")
        if len(prefix) < 8:
            raise CredentialError("sha256", "give at least 8 hex digits of the fingerprint")
        matches = [ca for ca in self.trusted_cas() if ca.fingerprint.startswith(prefix)]
        if len(matches) > 1:
            raise CredentialError("sha256", f"{prefix!r} matches {len(matches)} CAs")
        if not matches:
            return None
        self._write({"op": "ca_del", "sha": matches[0].fingerprint})
        if self._batch is not None:
            self._batch.cas[matches[0].fingerprint] = None
        return matches[0]


def _safe_reason(exc: BaseException) -> str:
    """A decoding failure's reason without the value that failed (it may be a key)."""
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    if isinstance(exc, CredentialError):
        return f"{exc.field}: invalid"
    return type(exc).__name__
