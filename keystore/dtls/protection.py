"""Record payload protection for the two bulk ciphers, with and without a connection id.

Why one small class per cipher: after the handshake the session keeps exactly two of these
(read and write), so their size is most of the idle footprint: they hold a key object and a
salt/MAC key, nothing else.

Wire details that are easy to get wrong (and are why this module exists as its own unit):

* AES-128-CCM-8 (RFC 6655 §3, RFC 7251): nonce = 4-byte salt from the key block + 8-byte
  explicit nonce; in DTLS the explicit nonce is epoch(2) || sequence_number(6) and it is sent in
  clear in front of the ciphertext. The additional data is ``epoch||seq || type || version ||
  plaintext length`` (13 bytes).
* CBC + HMAC-SHA256 with encrypt-then-MAC (RFC 7366): IV || ENC(content || padding) || MAC,
  the MAC covering ``epoch||seq || type || version || len(IV||ENC) || IV || ENC``. Verified
  *before* decrypting, so no padding oracle.
* CBC with MAC-then-encrypt (RFC 5246 §6.2.3.2): only when configured. Python cannot be
  constant-time; we always compute the MAC even on bad padding, which is the best we can do.
* Connection ID records (RFC 9146 §5): the plaintext becomes DTLSInnerPlaintext (content ||
  real type || zero padding), the wire type is tls12_cid(25), and the MAC/AEAD input begins with
  ``seq_num_placeholder (8 x 0xff) || 25 || cid_length || 25 || version || epoch || seq || cid``
  followed by the length (inner plaintext length for AEAD and MtE; len(IV||ENC) for EtM).
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from .constants import ContentType
from .errors import DtlsError
from .record import Record

_PLACEHOLDER = b"\xff" * 8
_CID_TYPE = bytes([ContentType.TLS12_CID])
_MAC_LEN = 32
_BLOCK = 16


class BadRecordMac(DtlsError):
    """A protected record failed authentication or decoding; RFC 6347: drop it silently."""


def _seq_bytes(epoch: int, seq: int) -> bytes:
    return epoch.to_bytes(2, "big") + seq.to_bytes(6, "big")


def _auth_prefix(
    content_type: int, version: int, epoch: int, seq: int, cid: bytes | None, length: int
) -> bytes:
    """The bytes authenticated ahead of the payload (RFC 5246 §6.2.3 / RFC 9146 §5)."""
    if cid is None:
        return (
            _seq_bytes(epoch, seq)
            + bytes([content_type])
            + version.to_bytes(2, "big")
            + length.to_bytes(2, "big")
        )
    return (
        _PLACEHOLDER
        + _CID_TYPE
        + bytes([len(cid)])
        + _CID_TYPE
        + version.to_bytes(2, "big")
        + _seq_bytes(epoch, seq)
        + cid
        + length.to_bytes(2, "big")
    )


def _inner_plaintext(content_type: int, payload: bytes) -> bytes:
    # RFC 9146 DTLSInnerPlaintext without padding: we do not hide lengths (LwM2M messages are
    # not length-sensitive and every byte matters on constrained links).
    return payload + bytes([content_type])


def _split_inner_plaintext(inner: bytes) -> tuple[int, bytes]:
    stripped = inner.rstrip(b"\x00")
    if not stripped:
        raise BadRecordMac("inner plaintext without content type")
    return stripped[-1], stripped[:-1]


class Protection:
    """Interface of a read or write cipher state of one epoch."""

    __slots__ = ()

    #: Worst-case bytes added to a payload; used to size records to the path MTU.
    overhead = 0

    def seal(
        self, content_type: int, version: int, epoch: int, seq: int, payload: bytes, cid: bytes
    ) -> tuple[int, bytes]:
        """Protect ``payload``; returns (wire content type, fragment). Empty cid: no CID."""
        raise NotImplementedError

    def open(self, record: Record) -> tuple[int, bytes]:
        """Authenticate and decrypt; returns (real content type, plaintext) or raises."""
        raise NotImplementedError


class CcmProtection(Protection):
    """AES-128-CCM with an 8-byte tag."""

    __slots__ = ("_aead", "_salt")
    overhead = 8 + 8 + 1

    def __init__(self, key: bytes, salt: bytes) -> None:
        self._aead = AESCCM(key, tag_length=8)
        self._salt = salt

    def seal(
        self, content_type: int, version: int, epoch: int, seq: int, payload: bytes, cid: bytes
    ) -> tuple[int, bytes]:
        explicit = _seq_bytes(epoch, seq)
        if cid:
            inner = _inner_plaintext(content_type, payload)
            aad = _auth_prefix(content_type, version, epoch, seq, cid, len(inner))
            wire_type = int(ContentType.TLS12_CID)
        else:
            inner = payload
            aad = _auth_prefix(content_type, version, epoch, seq, None, len(payload))
            wire_type = content_type
        return wire_type, explicit + self._aead.encrypt(self._salt + explicit, inner, aad)

    def open(self, record: Record) -> tuple[int, bytes]:
        frag = record.fragment
        if len(frag) < 16:
            raise BadRecordMac("record shorter than nonce + tag")
        explicit, ciphertext = frag[:8], frag[8:]
        plain_len = len(ciphertext) - 8
        aad = _auth_prefix(
            record.content_type, record.version, record.epoch, record.seq, record.cid, plain_len
        )
        try:
            plain = self._aead.decrypt(self._salt + explicit, ciphertext, aad)
        except InvalidTag:
            raise BadRecordMac("authentication failed") from None
        if record.cid is not None:
            return _split_inner_plaintext(plain)
        return record.content_type, plain


class CbcProtection(Protection):
    """AES-128-CBC with HMAC-SHA256, encrypt-then-MAC by default."""

    __slots__ = ("_algorithm", "_etm", "_mac_key")
    overhead = _BLOCK + _BLOCK + _MAC_LEN + 1

    def __init__(self, key: bytes, mac_key: bytes, encrypt_then_mac: bool) -> None:
        self._algorithm = algorithms.AES(key)
        self._mac_key = mac_key
        self._etm = encrypt_then_mac

    def _encrypt(self, iv: bytes, data: bytes) -> bytes:
        enc = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def _decrypt(self, iv: bytes, data: bytes) -> bytes:
        dec = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()

    @staticmethod
    def _pad(data: bytes) -> bytes:
        pad = _BLOCK - 1 - (len(data) % _BLOCK)
        return data + bytes([pad]) * (pad + 1)

    def _mac(self, data: bytes) -> bytes:
        return hmac.digest(self._mac_key, data, "sha256")

    def seal(
        self, content_type: int, version: int, epoch: int, seq: int, payload: bytes, cid: bytes
    ) -> tuple[int, bytes]:
        cid_or_none = cid if cid else None
        if cid:
            inner = _inner_plaintext(content_type, payload)
            wire_type = int(ContentType.TLS12_CID)
        else:
            inner = payload
            wire_type = content_type
        iv = os.urandom(_BLOCK)
        if self._etm:
            enc = self._encrypt(iv, self._pad(inner))
            prefix = _auth_prefix(wire_type, version, epoch, seq, cid_or_none, _BLOCK + len(enc))
            return wire_type, iv + enc + self._mac(prefix + iv + enc)
        prefix = _auth_prefix(wire_type, version, epoch, seq, cid_or_none, len(inner))
        mac = self._mac(prefix + inner)
        return wire_type, iv + self._encrypt(iv, self._pad(inner + mac))

    def open(self, record: Record) -> tuple[int, bytes]:
        frag = record.fragment
        if self._etm:
            if len(frag) < 2 * _BLOCK + _MAC_LEN or (len(frag) - _MAC_LEN) % _BLOCK:
                raise BadRecordMac("bad CBC record length")
            body, tag = frag[:-_MAC_LEN], frag[-_MAC_LEN:]
            prefix = _auth_prefix(
                record.content_type, record.version, record.epoch, record.seq, record.cid, len(body)
            )
            if not hmac.compare_digest(self._mac(prefix + body), tag):
                raise BadRecordMac("authentication failed")
            plain = self._decrypt(body[:_BLOCK], body[_BLOCK:])
            pad = plain[-1]
            if pad + 1 > len(plain) or plain[-pad - 1 :] != bytes([pad]) * (pad + 1):
                raise BadRecordMac("bad padding")
            inner = plain[: -pad - 1]
        else:
            if len(frag) < _BLOCK + 3 * _BLOCK or len(frag) % _BLOCK:
                raise BadRecordMac("bad CBC record length")
            plain = self._decrypt(frag[:_BLOCK], frag[_BLOCK:])
            pad = plain[-1]
            good = pad + 1 + _MAC_LEN <= len(plain) and plain[-pad - 1 :] == bytes([pad]) * (
                pad + 1
            )
            if not good:
                pad = 0  # keep going: compute the MAC anyway to narrow the timing side channel
            inner = plain[: len(plain) - pad - 1 - _MAC_LEN]
            tag = plain[len(plain) - pad - 1 - _MAC_LEN : len(plain) - pad - 1]
            prefix = _auth_prefix(
                record.content_type,
                record.version,
                record.epoch,
                record.seq,
                record.cid,
                len(inner),
            )
            ok = hmac.compare_digest(self._mac(prefix + inner), tag)
            if not (ok and good):
                raise BadRecordMac("authentication failed")
        if record.cid is not None:
            return _split_inner_plaintext(inner)
        return record.content_type, inner
