"""Coverage-guided fuzzing of every parser that takes bytes from outside (issue 11 item 8).

Why in the repository: the hostile-input properties of the test-suite (Hypothesis) explore what
their strategies can build; a coverage-guided fuzzer (atheris, libFuzzer for Python) mutates
towards the branches nobody thought of. Each target is one harness in ``fuzz/targets/`` that
states exactly which exceptions the code under test may raise on bad input; anything else is a
finding. ``python -m fuzz TARGET`` runs one, ``python -m fuzz all`` runs them in turn,
``python -m fuzz.seeds`` writes the seed corpora (generated from the project's own encoders).
docs/reliability.md ("Fuzzing") has the commands, the long run and its figures.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
"""The ``fuzz/`` folder."""
REPO = ROOT.parent
CORPUS = ROOT / "corpus"
"""Generated seeds and what the fuzzer adds to them (gitignored): ``corpus/<target>/``."""
CRASHES = ROOT / "crashes"
"""Where libFuzzer writes crash/timeout/oom inputs (gitignored); triaged ones go to findings/."""
FINDINGS = ROOT / "findings"
"""Committed inputs that made product code fail, one folder per target."""

CODECS = {
    "codec_text": "TEXT",
    "codec_opaque": "OPAQUE",
    "codec_cbor": "CBOR",
    "codec_tlv": "TLV",
    "codec_oma_json": "JSON",
    "codec_senml_json": "SENML_JSON",
    "codec_senml_cbor": "SENML_CBOR",
    "codec_lwm2m_cbor": "LWM2M_CBOR",
}
"""Codec targets and the ``ContentFormat`` member each decodes."""

TARGETS: dict[str, str] = {
    **{name: f"object_models.codecs, {fmt}" for name, fmt in CODECS.items()},
    "link_format": "object_models.codecs.link_format parsers",
    "model_json": "object_models.json_models.loads",
    "model_ddf": "object_models.ddf.parse_ddf",
    "coap_parse": "lwm2m_runtime.coap.message.parse",
    "coap_endpoint": "lwm2m_runtime.coap.endpoint.Endpoint.receive_datagram",
    "dtls_record": "keystore.dtls.record.parse_datagram_checked / pull_record",
    "dtls_handshake": "keystore.dtls.messages pull_* parsers",
    "dtls_engine": "keystore.dtls CookieVerifier + DtlsEngine.server receive_datagram",
}
"""Every target: name -> what it exercises. ``fuzz/targets/<name>.py`` is its harness."""

EXTRA_SEEDS: dict[str, list[Path]] = {
    "model_json": [REPO / "tests/unit/models/vectors"],
    "model_ddf": [REPO / "tests/unit/models/vectors"],
}
"""Committed vectors read as extra (read-only) seed folders."""
