"""The four cipher suites and what each needs from the key schedule.

Why a table: every suite here is (PSK | ECDHE_ECDSA) x (AES-128-CCM-8 | AES-128-CBC +
HMAC-SHA256) with the SHA-256 PRF, so the state machine asks two questions ("which key exchange",
"which record protection") and never switches on suite numbers.
"""

from __future__ import annotations

from enum import Enum

from .constants import CipherSuite


class KeyExchange(Enum):
    PSK = "psk"
    ECDHE_ECDSA = "ecdhe_ecdsa"


class BulkCipher(Enum):
    AES_128_CCM_8 = "aes_128_ccm_8"
    AES_128_CBC_SHA256 = "aes_128_cbc_sha256"


class SuiteInfo:
    """Static properties of one suite (immutable, shared)."""

    __slots__ = ("bulk", "code", "enc_key_len", "fixed_iv_len", "kex", "mac_key_len")

    def __init__(self, code: CipherSuite, kex: KeyExchange, bulk: BulkCipher) -> None:
        self.code = code
        self.kex = kex
        self.bulk = bulk
        self.enc_key_len = 16
        if bulk is BulkCipher.AES_128_CCM_8:
            self.mac_key_len = 0
            self.fixed_iv_len = 4  # RFC 6655 §3: 4-byte salt from the key block
        else:
            self.mac_key_len = 32  # HMAC-SHA256
            self.fixed_iv_len = 0  # TLS 1.2 CBC uses an explicit per-record IV

    @property
    def is_cbc(self) -> bool:
        return self.bulk is BulkCipher.AES_128_CBC_SHA256

    @property
    def key_block_len(self) -> int:
        return 2 * (self.mac_key_len + self.enc_key_len + self.fixed_iv_len)


SUITES: dict[int, SuiteInfo] = {
    CipherSuite.TLS_PSK_WITH_AES_128_CCM_8: SuiteInfo(
        CipherSuite.TLS_PSK_WITH_AES_128_CCM_8, KeyExchange.PSK, BulkCipher.AES_128_CCM_8
    ),
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: SuiteInfo(
        CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
        KeyExchange.ECDHE_ECDSA,
        BulkCipher.AES_128_CCM_8,
    ),
    CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256: SuiteInfo(
        CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256, KeyExchange.PSK, BulkCipher.AES_128_CBC_SHA256
    ),
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: SuiteInfo(
        CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
        KeyExchange.ECDHE_ECDSA,
        BulkCipher.AES_128_CBC_SHA256,
    ),
}

#: Our preference order: AEAD first, then CBC; within each, PSK and ECDHE as configured.
DEFAULT_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite.TLS_PSK_WITH_AES_128_CCM_8,
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256,
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
)
