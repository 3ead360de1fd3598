"""One endpoint-name limit everywhere (issue 11, item 7): a name the keystore cannot hold a
device record for is not registered either, and the other way round. 255 characters: ``ep=`` is
one CoAP Uri-Query option, at most 255 bytes (RFC 7252 §5.10)."""

from __future__ import annotations

import pytest

from keystore.credentials import CredentialError, check_endpoint
from lwm2m_server.core.registration import RegistrationRequest
from object_models.errors import Lwm2mError, ResponseCode

LENGTHS = (1, 64, 254, 255, 256, 300, 1024, 1025)


def core_accepts(name: str) -> bool:
    try:
        RegistrationRequest.parse([f"ep={name}"], b"</3/0>")
    except Lwm2mError as exc:
        assert exc.code is ResponseCode.BAD_REQUEST
        return False
    return True


def keystore_accepts(name: str) -> bool:
    try:
        check_endpoint(name)
    except CredentialError:
        return False
    return True


@pytest.mark.parametrize("length", LENGTHS)
def test_core_and_keystore_agree(length: int) -> None:
    for name in ("x" * length, "é" * length):  # characters, not bytes
        assert core_accepts(name) == keystore_accepts(name) == (length <= 255)


def test_the_refusal_says_the_limit() -> None:
    with pytest.raises(Lwm2mError, match="longer than 255 characters"):
        RegistrationRequest.parse(["ep=" + "x" * 256], b"</3/0>")
    with pytest.raises(CredentialError, match="longer than 255 characters"):
        check_endpoint("x" * 256)
