"""The demo image format and Package URI parsing: what the device accepts, and why not."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_client.firmware import corrupt
from lwm2m_client.firmware_image import (
    IntegrityError,
    UnsupportedImage,
    make_image,
    parse_image,
)
from lwm2m_client.package_download import (
    DownloadError,
    DownloadFailure,
    expected_sha256,
    parse_package_uri,
)


@given(st.text(max_size=40), st.text(max_size=40), st.binary(max_size=2000))
def test_round_trip(name: str, version: str, body: bytes) -> None:
    image = parse_image(make_image(name, version, body))
    assert (image.name, image.version, image.body) == (name, version, body)
    assert image.digest == hashlib.sha256(body).digest()
    image.verify()


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_cleanly(data: bytes) -> None:
    with contextlib.suppress(UnsupportedImage, IntegrityError):
        parse_image(data).verify()


def test_a_corrupted_image_fails_its_own_digest() -> None:
    data = make_image("fw", "1", b"x" * 100)
    with pytest.raises(IntegrityError):
        parse_image(corrupt(data)).verify()
    with pytest.raises(IntegrityError):
        parse_image(data[:-1]).verify()
    with pytest.raises(IntegrityError):
        parse_image(data + b"extra").verify()


@pytest.mark.parametrize(
    "data",
    [b"", b"PYF", b"XXXX\x01", b"PYFW\x02", b"PYFW\x01\x05ab", b"PYFW\x01\x00\x00" + b"\x00" * 10],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        parse_image(data)


def test_names_are_limited_to_255_bytes() -> None:
    with pytest.raises(ValueError):
        make_image("n" * 256, "1", b"")


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("ftp://h/x", DownloadFailure.UNSUPPORTED_PROTOCOL),
        ("coaps://h/x", DownloadFailure.UNSUPPORTED_PROTOCOL),  # not in the supported list
        ("//h/x", DownloadFailure.INVALID_URI),
        ("http://", DownloadFailure.INVALID_URI),
        ("coap://h:70000/x", DownloadFailure.INVALID_URI),
        ("http://[::1/x", DownloadFailure.INVALID_URI),
    ],
)
def test_package_uri_refusals(uri: str, kind: DownloadFailure) -> None:
    with pytest.raises(DownloadError) as info:
        parse_package_uri(uri, ("coap", "http"))
    assert info.value.kind is kind


def test_package_uri_accepted_and_its_digest() -> None:
    uri = "COAP://127.0.0.1:5683/fw/abc?sha256=ABCDEF&x=1"
    assert parse_package_uri(uri, ("coap",)).hostname == "127.0.0.1"
    assert expected_sha256(uri) == "abcdef"
    assert expected_sha256("http://h/fw") is None
