"""Protocol numbers of DTLS 1.2 and the extensions we implement, as int enums.

Why enums: wire values show up in logs and test failures by name; the values are copied from
the IANA TLS registries (RFC 5246, 6347, 4279, 6655, 7251, 7250, 7366, 7627, 8422, 9146).
"""

from __future__ import annotations

from enum import IntEnum

#: DTLS 1.2 on the wire (RFC 6347 §4.1: the version is the 1's complement of 1.2).
DTLS_1_2 = 0xFEFD
#: DTLS 1.0; still seen in the record header of the first ClientHello and in HelloVerifyRequest.
DTLS_1_0 = 0xFEFF

#: Largest plaintext fragment of a record (RFC 5246 §6.2.1).
MAX_PLAINTEXT = 2**14
#: Largest ciphertext fragment we accept: plaintext + 2048 (RFC 5246 §6.2.3).
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    #: RFC 9146: records carrying a connection id and an encrypted real content type.
    TLS12_CID = 25


class HandshakeType(IntEnum):
    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class AlertLevel(IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    user_canceled = 90
    no_renegotiation = 100
    unsupported_extension = 110
    unknown_psk_identity = 115


class CipherSuite(IntEnum):
    TLS_PSK_WITH_AES_128_CBC_SHA256 = 0x00AE
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 = 0xC023
    TLS_PSK_WITH_AES_128_CCM_8 = 0xC0A8
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xC0AE
    #: RFC 5746 signalling value, never negotiated.
    TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF


class ExtensionType(IntEnum):
    server_name = 0
    max_fragment_length = 1
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    client_certificate_type = 19
    server_certificate_type = 20
    encrypt_then_mac = 22
    extended_master_secret = 23
    record_size_limit = 28
    session_ticket = 35
    connection_id = 54
    renegotiation_info = 0xFF01


class CertificateType(IntEnum):
    """RFC 7250 certificate types."""

    X509 = 0
    RAW_PUBLIC_KEY = 2


class NamedGroup(IntEnum):
    secp256r1 = 23


class SignatureScheme(IntEnum):
    """TLS 1.2 SignatureAndHashAlgorithm as one uint16 (hash << 8 | signature)."""

    ecdsa_secp256r1_sha256 = 0x0403


class ClientCertificateType(IntEnum):
    """certificate_types of CertificateRequest (RFC 8422 §5.5)."""

    ecdsa_sign = 64


#: ECParameters.curve_type named_curve (RFC 8422 §5.4).
EC_CURVE_TYPE_NAMED = 3
#: ECPointFormat uncompressed.
EC_POINT_UNCOMPRESSED = 0
