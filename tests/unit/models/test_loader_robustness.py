"""The model loaders never crash (issue 11, item 3): every bad file is refused with a
``ModelError`` naming the file, the line and/or field, and the reason, and every other model
still loads, at start (built-in or user folder) and on reload.

The vectors in ``vectors/`` are the inputs that once escaped as ``ValueError`` (an integer over
Python's 4,300-digit limit), ``LookupError``/``ValueError`` (an XML encoding expat cannot use) or
``UnicodeDecodeError`` (a file that is not UTF-8); ``vectors/make_vectors.py`` regenerates them
from the two real seeds. The property test mutates the seeds byte by byte and holds the loaders
to raising nothing but ``ModelError``.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models import cli, json_models
from object_models.ddf import parse_ddf_located
from object_models.errors import ModelError
from object_models.registry import ModelRegistry, load_file, read_builtin

VECTORS = Path(__file__).parent / "vectors"
SEED_DDF = (VECTORS / "seeds" / "3303.xml").read_bytes()
SEED_JSON = (VECTORS / "seeds" / "3303.json").read_bytes()

#: file -> (line, field, words the reason must contain)
EXPECTED: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "json-object-id-5000-digits.json": (5, "objects[0].id", ("5000 digits", "at most 4300")),
    "json-resource-id-5000-digits.json": (76, "objects[0].resources[5].id", ("5000 digits",)),
    "json-latin1.json": (6, "", ("not UTF-8",)),
    "json-utf16.json": (1, "", ("not UTF-8",)),
    "ddf-unknown-encoding.xml": (1, "xml@encoding", ("'x-klingon'", "unknown encoding")),
    "ddf-utf32-declared.xml": (1, "xml@encoding", ("'UTF-32'", "multi-byte")),
    "ddf-base64-declared.xml": (1, "xml@encoding", ("'base64'", "not a text encoding")),
    "ddf-latin1-undeclared.xml": (36, "", ("not UTF-8",)),
    "ddf-object-id-5000-digits.xml": (38, "Object[0].ObjectID", ("outside 0..65535",)),
    "ddf-item-id-5000-digits.xml": (45, "Object[0].Resources.Item[0]@ID", ("outside 0..65535",)),
}


def test_every_vector_is_listed() -> None:
    on_disk = {p.name for p in VECTORS.iterdir() if p.suffix in (".json", ".xml")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_is_refused_with_file_line_field_and_reason(name: str) -> None:
    line, field, words = EXPECTED[name]
    path = VECTORS / name
    with pytest.raises(ModelError) as info:
        load_file(path)
    error = info.value
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert all(word in error.reason for word in words), error.reason
    text = str(error)
    assert text.startswith(f"{path}:{line}: ") and "\n" not in text and len(text) < 300


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith(".json")))
def test_json_vector_without_validation_is_refused_too(name: str) -> None:
    """The built-ins are loaded without the schema pass; the same inputs must fail the same
    way there (a damaged installation must not stop the server either)."""
    with pytest.raises(ModelError) as info:
        json_models.loads((VECTORS / name).read_bytes(), name, validate=False)
    assert info.value.line == EXPECTED[name][0]


def test_user_folder_skips_each_bad_file_and_loads_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in EXPECTED:
        shutil.copy(VECTORS / name, folder / name)
    good = SEED_DDF.replace(b"<ObjectID>3303</ObjectID>", b"<ObjectID>33030</ObjectID>")
    (folder / "zz-good.xml").write_bytes(good)
    registry = ModelRegistry([folder])
    assert sorted(Path(e.file).name for e in registry.errors) == sorted(EXPECTED)
    assert registry.get(33030) is not None and registry.get(33030, "1.1") is not None
    assert registry.get(3303) is not None and registry.get(3) is not None  # built-ins intact


def test_a_damaged_builtin_is_reported_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "builtin"
    folder.mkdir()
    shutil.copy(VECTORS / "seeds" / "3303.json", folder / "3303.json")
    shutil.copy(VECTORS / "json-latin1.json", folder / "3304.json")
    (folder / "3305.json").write_bytes(b'{"objects": [{"id": ' + b"7" * 4400 + b"}]}")
    entries, errors = read_builtin(folder)
    assert {e.model.id for e in entries} == {3303}
    assert [(e.file, e.line) for e in errors] == [
        ("builtin/3304.json", 6),
        ("builtin/3305.json", 1),
    ]
    assert "not UTF-8" in errors[0].reason and "4400 digits" in errors[1].reason


def test_reload_meeting_a_bad_file_keeps_the_previous_models(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "a.xml").write_bytes(
        SEED_DDF.replace(b"<ObjectID>3303</ObjectID>", b"<ObjectID>33031</ObjectID>")
    )
    registry = ModelRegistry([folder])
    assert registry.errors == () and registry.get(33031) is not None
    (folder / "a.xml").unlink()
    shutil.copy(VECTORS / "ddf-unknown-encoding.xml", folder / "b.xml")
    errors = registry.reload()
    assert [(Path(e.file).name, e.field) for e in errors] == [("b.xml", "xml@encoding")]
    assert registry.get(33031) is not None  # kept: nothing changed
    (folder / "b.xml").unlink()
    assert registry.reload() == [] and registry.get(33031) is None


def test_an_unforeseen_exception_still_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry's last line: a loader bug becomes a ``ModelError`` for that file only."""

    def broken(path: object, **_: object) -> object:
        raise ZeroDivisionError("a loader bug")

    monkeypatch.setattr(json_models, "load", broken)
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ModelError) as info:
        load_file(bad)
    assert str(info.value) == f"{bad}: cannot load: ZeroDivisionError: a loader bug"


# -- mutation fuzzing -----------------------------------------------------------------------------

#: fragments that reach the code paths the vectors came from and their neighbours
INTERESTING = [
    b"1" * 4301,
    b"-" + b"9" * 5000,
    b"1e99999",
    b"NaN",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\\ud800",
    b'encoding="x-klingon"',
    b'encoding="UTF-32"',
    b'encoding="base64"',
    b'encoding="idna"',
    b'encoding="undefined"',
    b'encoding="utf-16"',
    b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
    b"&a;",
    b"[" * 3000,
    b"{" * 3000,
    b"<a>" * 3000,
    b'"id": ',
    b'"resources": ',
    b"<Item ID=",
    b"]]>",
    b"\xef\xbb\xbf",
]

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 30), st.integers(1, 64)),
    st.tuples(st.just("splice"), st.integers(0, 1 << 30), st.sampled_from(INTERESTING)),
    st.tuples(st.just("repeat"), st.integers(0, 1 << 30), st.integers(1, 200)),
)


def mutate(seed: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    data = bytearray(seed)
    for kind, where, arg in mutations:
        at = where % (len(data) + 1)
        if kind == "flip" and data:
            at %= len(data)
            data[at] ^= int(arg)  # type: ignore[call-overload]
        elif kind in ("insert", "splice"):
            data[at:at] = bytes(arg)  # type: ignore[call-overload]
        elif kind == "delete":
            del data[at : at + int(arg)]  # type: ignore[call-overload]
        elif kind == "repeat":
            data[at:at] = data[at : at + int(arg)] * 3  # type: ignore[call-overload]
    return bytes(data)


MUTATIONS = st.lists(_mutation, min_size=1, max_size=6)


@settings(max_examples=400)
@given(MUTATIONS, st.booleans())
def test_mutated_json_model_raises_only_model_error(
    mutations: list[tuple[str, int, object]], validate: bool
) -> None:
    data = mutate(SEED_JSON, mutations)
    try:
        json_models.loads(data, "mutated.json", validate=validate)
    except ModelError as exc:
        assert exc.file == "mutated.json" and exc.reason


@settings(max_examples=400)
@given(MUTATIONS)
def test_mutated_ddf_raises_only_model_error(mutations: list[tuple[str, int, object]]) -> None:
    data = mutate(SEED_DDF, mutations)
    try:
        parse_ddf_located(data, "mutated.xml")
    except ModelError as exc:
        assert exc.file == "mutated.xml" and exc.reason


def test_lwm2m_models_reports_bad_vectors_and_lists_the_rest(tmp_path: Path) -> None:
    """``lwm2m-models list`` / ``convert``: exit 1, one ``file:line: field: reason`` line per
    bad file on stderr, everything else still listed."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("ddf-utf32-declared.xml", "json-resource-id-5000-digits.json"):
        shutil.copy(VECTORS / name, folder / name)
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(["list", "--models-dir", str(folder)], out, err) == cli.EXIT_BROKEN_FILE
    assert err.getvalue().splitlines() == sorted(
        [
            f"{folder / 'ddf-utf32-declared.xml'}:1: xml@encoding: the XML declaration names "
            "encoding 'UTF-32', which cannot be read (multi-byte encodings are not supported); "
            "DDF files are UTF-8",
            f"{folder / 'json-resource-id-5000-digits.json'}:76: objects[0].resources[5].id: "
            "an integer of 5000 digits (at most 4300)",
        ]
    )
    assert "3303" in out.getvalue()
    err = io.StringIO()
    converted = tmp_path / "out"
    args = ["convert", str(VECTORS / "ddf-base64-declared.xml"), "-o", str(converted)]
    assert cli.run(args, io.StringIO(), err) == cli.EXIT_BROKEN_FILE
    assert "encoding 'base64'" in err.getvalue() and not converted.exists()
