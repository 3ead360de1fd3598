"""libcoap's ``coap-client`` (4.3.1, Debian ``libcoap3-bin``) registering over CoAPs, built on
OpenSSL and on GnuTLS: ``POST coaps://127.0.0.1:PORT/rd?ep=NAME&lt=60`` with link-format
``</3/0>`` gets 2.01 with a Location-Path, and 4.03 when ``ep`` is another endpoint's name.

Facts of libcoap 4.3.1: ``-k`` is the key as text (no hex form), so the test PSK is printable;
RPK (``-M``) exists only in the GnuTLS build, and its CLI has no way to pin the server's raw
public key, so ``-n`` (no server check) goes with it; ``-v 7`` prints every PDU as
``v:1 t:ACK c:2.01 i:… {token} [ Location-Path:rd, Location-Path:… ]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lwm2m_server.service import Lwm2mServer

from .conftest import coaps_port, need, run_tool
from .pki import PSK_IDENTITY, PSK_KEY, Pki

RESPONSE = re.compile(rb"t:(?:ACK|CON|NON) c:(\d\.\d\d) i:\w+ \{\w*\} \[ ([^\]]*)\]")


def security(mode: str, pki: Pki) -> list[str | Path]:
    if mode == "psk":
        return ["-u", PSK_IDENTITY.decode(), "-k", PSK_KEY.decode()]
    if mode == "x509":
        device = pki.x509_device
        assert device.cert_file is not None
        return ["-c", device.cert_file, "-j", device.key_file, "-C", pki.ca_file]
    assert mode == "rpk"
    return ["-M", pki.rpk_device.rpk_file, "-n"]


ENDPOINT = {"psk": "dev-psk", "x509": "dev-x509", "rpk": "dev-rpk"}
CASES = [
    ("coap-client-openssl", "psk"),
    ("coap-client-openssl", "x509"),
    ("coap-client-gnutls", "psk"),
    ("coap-client-gnutls", "x509"),
    ("coap-client-gnutls", "rpk"),
]


async def register(
    binary: str, mode: str, endpoint: str, server: Lwm2mServer, pki: Pki
) -> tuple[str, str]:
    tool = need(binary)
    uri = f"coaps://127.0.0.1:{coaps_port(server)}/rd?ep={endpoint}&lt=60"
    status, output = await run_tool(
        tool, "-v", "7", "-B", "10", "-m", "post", "-t", "40", "-e", "</3/0>",
        *security(mode, pki), uri,
    )  # fmt: skip
    found = RESPONSE.findall(output)
    assert found, (
        f"{binary} exited {status} without a response:\n{output.decode(errors='replace')[-2000:]}"
    )
    code, options = found[-1]
    return code.decode(), options.decode()


@pytest.mark.parametrize(("binary", "mode"), CASES)
async def test_register(server: Lwm2mServer, pki: Pki, binary: str, mode: str) -> None:
    endpoint = ENDPOINT[mode]
    code, options = await register(binary, mode, endpoint, server, pki)
    assert code == "2.01"
    registration = server.client(endpoint)
    assert f"Location-Path:rd, Location-Path:{registration.registration_id}" in options
    assert registration.transport == "coaps"
    assert registration.identity is not None and registration.identity.mode == mode


@pytest.mark.parametrize(("binary", "mode"), CASES)
async def test_other_endpoint_name_is_forbidden(
    server: Lwm2mServer, pki: Pki, binary: str, mode: str
) -> None:
    code, _ = await register(binary, mode, "someone-else", server, pki)
    assert code == "4.03"
    assert server.clients() == []
