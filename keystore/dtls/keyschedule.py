"""TLS 1.2 key schedule: the SHA-256 PRF (RFC 5246 §5), master secrets, Finished.

Why hand-rolled: ``cryptography`` has no TLS PRF, and P_SHA256 is twenty lines of HMAC.
Extended master secret (RFC 7627) binds the master secret to the transcript up to and including
ClientKeyExchange, which defeats the triple-handshake attack; we derive it whenever both sides
offer it.
"""

from __future__ import annotations

import hashlib
import hmac

MASTER_SECRET_LEN = 48
VERIFY_DATA_LEN = 12


def p_sha256(secret: bytes, seed: bytes, length: int) -> bytes:
    """P_SHA256 from RFC 5246 §5: HMAC chaining until ``length`` bytes are produced."""
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, "sha256")
        out += hmac.digest(secret, a + seed, "sha256")
    return bytes(out[:length])


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return p_sha256(secret, label + seed, length)


def psk_premaster_secret(psk: bytes) -> bytes:
    """RFC 4279 §2 plain PSK: uint16 N, N zero bytes, uint16 N, psk."""
    n = len(psk).to_bytes(2, "big")
    return n + bytes(len(psk)) + n + psk


def master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(premaster, b"master secret", client_random + server_random, MASTER_SECRET_LEN)


def extended_master_secret(premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: the seed is the handshake hash through ClientKeyExchange."""
    return prf(premaster, b"extended master secret", session_hash, MASTER_SECRET_LEN)


def key_block(master: bytes, client_random: bytes, server_random: bytes, length: int) -> bytes:
    """Note the order: server_random first here, client_random first for the master secret."""
    return prf(master, b"key expansion", server_random + client_random, length)


def finished_verify_data(master: bytes, is_client: bool, transcript_hash: bytes) -> bytes:
    label = b"client finished" if is_client else b"server finished"
    return prf(master, label, transcript_hash, VERIFY_DATA_LEN)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
