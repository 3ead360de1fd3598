"""LwM2mPath parsing, validation and navigation."""

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from object_models.errors import InvalidPathError, ResponseCode
from object_models.path import LwM2mPath


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("/", ()),
        ("", ()),
        ("/3", (3,)),
        ("3/0", (3, 0)),
        ("/3/0/1", (3, 0, 1)),
        ("/3/0/7/1", (3, 0, 7, 1)),
        ("/3/0/", (3, 0)),
        ("/65535/65534/65535/65535", (65535, 65534, 65535, 65535)),
    ],
)
def test_parse_valid(text: str, ids: tuple[int, ...]) -> None:
    path = LwM2mPath.parse(text)
    assert path.ids == ids
    assert path.depth == len(ids)


@pytest.mark.parametrize(
    "text",
    [
        "/a",
        "/3//1",
        "/3/0/1/2/3",
        "/-1",
        "/65536",
        "/3/65535",
        "/03",
        "/3/0x1",
        "//",
        "/3 /0",
        "/1/2/3/99999",
    ],
)
def test_parse_invalid_is_a_400(text: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        LwM2mPath.parse(text)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert text.strip() in str(info.value) or "outside" in str(info.value)


def test_ids_must_be_given_left_to_right() -> None:
    with pytest.raises(InvalidPathError):
        LwM2mPath(3, None, 1)


def test_kind_predicates_and_navigation() -> None:
    res = LwM2mPath.parse("/3/0/7")
    assert res.is_resource and not res.is_object_instance
    assert res.parent == LwM2mPath(3, 0)
    assert res.child(2) == LwM2mPath(3, 0, 7, 2)
    assert res.starts_with(LwM2mPath(3)) and res.starts_with(LwM2mPath())
    assert not res.starts_with(LwM2mPath(3, 1))
    assert LwM2mPath().is_root
    with pytest.raises(InvalidPathError):
        _ = LwM2mPath().parent


def test_paths_sort_by_ids() -> None:
    paths = [LwM2mPath.parse(p) for p in ["/3/0/10", "/3/0/2", "/1", "/3/0"]]
    assert [str(p) for p in sorted(paths)] == ["/1", "/3/0", "/3/0/2", "/3/0/10"]


@given(st.lists(st.integers(0, 65534), max_size=4))
def test_str_parse_roundtrip(ids: list[int]) -> None:
    path = LwM2mPath.from_ids(*ids)
    assert LwM2mPath.parse(str(path)) == path
    assert hash(path) == hash(LwM2mPath.parse(str(path)))


@given(st.lists(st.integers(0, 65534), max_size=4))
def test_ids_and_depth_are_the_given_ids(ids: list[int]) -> None:
    path = LwM2mPath.from_ids(*ids)
    assert path.ids == tuple(ids) == tuple(i for i in path.ids_with_none() if i is not None)
    assert path.depth == len(ids)


@given(st.lists(st.integers(0, 65534), max_size=4))
def test_a_path_hashes_as_its_ids_do_however_it_was_made(ids: list[int]) -> None:
    """The remembered hash: equal paths built apart (constructed, parsed, copied, unpickled)
    hash alike, and differently from a path one id away, as dict keys and sets need."""
    padded = [*ids, *[None] * (4 - len(ids))]
    path = LwM2mPath(*padded)
    twins = [
        LwM2mPath.parse(str(path)),
        copy.copy(path),
        copy.deepcopy(path),
        pickle.loads(pickle.dumps(path)),
    ]
    hash(path)  # remembered before the copies are made from it
    twins += [copy.copy(path), pickle.loads(pickle.dumps(path))]
    for twin in twins:
        assert twin == path and hash(twin) == hash(path)
    assert {path: 1}[twins[-1]] == 1
    if ids:
        other = LwM2mPath(*[*ids[:-1], (ids[-1] + 1) % 65535], *[None] * (4 - len(ids)))
        assert other != path and other not in {path}
