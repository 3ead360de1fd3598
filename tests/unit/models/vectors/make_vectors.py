"""Regenerates the bad model files of this folder from the two seeds (a real OMA DDF and the
built-in JSON model of object 3303). Each reproduces an input that once stopped
``lwm2m-server`` with a traceback (issue 11, item 3); ``test_vectors.py`` says what each must be
refused with. Run from anywhere: ``python tests/unit/models/vectors/make_vectors.py``."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
DDF = (HERE / "seeds" / "3303.xml").read_bytes()
JSON = (HERE / "seeds" / "3303.json").read_bytes()
HUGE = b"1" * 5000  # over Python's 4300-digit int-string limit (ValueError in int())


def once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


VECTORS: dict[str, bytes] = {
    # JSON
    "json-object-id-5000-digits.json": once(JSON, b'"id": 3303', b'"id": ' + HUGE),
    "json-resource-id-5000-digits.json": once(JSON, b'"id": 5700', b'"id": ' + HUGE),
    "json-latin1.json": once(
        JSON, b'"name": "Temperature"', '"name": "Température"'.encode("latin-1")
    ),
    "json-utf16.json": JSON.decode("utf-8").encode("utf-16"),
    # DDF
    "ddf-unknown-encoding.xml": once(DDF, b'encoding="UTF-8"', b'encoding="x-klingon"'),
    "ddf-utf32-declared.xml": once(DDF, b'encoding="UTF-8"', b'encoding="UTF-32"'),
    "ddf-base64-declared.xml": once(DDF, b'encoding="UTF-8"', b'encoding="base64"'),
    "ddf-latin1-undeclared.xml": once(
        DDF, b"<Name>Temperature</Name>", "<Name>Température</Name>".encode("latin-1")
    ),
    "ddf-object-id-5000-digits.xml": once(
        DDF, b"<ObjectID>3303</ObjectID>", b"<ObjectID>" + HUGE + b"</ObjectID>"
    ),
    "ddf-item-id-5000-digits.xml": once(DDF, b'<Item ID="5700">', b'<Item ID="' + HUGE + b'">'),
}


if __name__ == "__main__":
    for name, data in VECTORS.items():
        (HERE / name).write_bytes(data)
        print(name, len(data))
