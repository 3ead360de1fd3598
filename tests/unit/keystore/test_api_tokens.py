"""The API token store (keystore.api_tokens): only digests are kept, names are checked, a
replaced token stops matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore.api_tokens import (
    ApiToken,
    Role,
    SqliteApiTokenStore,
    check_name,
    digest,
    new_secret,
)
from keystore.store.database import SqliteDatabase
from keystore.store.engines import api_token_store
from tests.store_engines import Engine


def test_roles() -> None:
    assert Role.READ.allows("GET") and Role.READ.allows("HEAD")
    assert not any(Role.READ.allows(m) for m in ("POST", "PUT", "DELETE", "PATCH"))
    assert all(Role.ADMIN.allows(m) for m in ("GET", "POST", "PUT", "DELETE"))


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "tab\t", "semi;colon"])
def test_bad_names(name: str) -> None:
    assert check_name(name) is not None


def test_store_keeps_digests_and_replaces(engine: Engine) -> None:
    """On every keystore engine (sqlite, Redis, Redis Cluster): put, look up by digest,
    replace (the old secret stops matching), refuse a bad name, remove; another store object
    on the same backing store sees the same tokens (the other server process)."""
    store = api_token_store(engine.credentials())
    first, second = new_secret(), new_secret()
    assert first != second and first.startswith("lwm2m_")
    assert store.put_token(ApiToken("ci", Role.READ, digest(first))) is None
    assert store.token_by_digest(digest(first)) == store.tokens()[0]
    replaced = store.put_token(ApiToken("ci", Role.ADMIN, digest(second)))
    assert replaced is not None and replaced.role is Role.READ
    assert store.token_by_digest(digest(first)) is None
    token = store.token_by_digest(digest(second))
    assert token is not None and token.role is Role.ADMIN and token.created_ms > 0
    assert api_token_store(engine.credentials()).token_by_digest(digest(second)) == token
    with pytest.raises(ValueError):
        store.put_token(ApiToken("bad name", Role.READ, digest(first)))
    assert store.remove_token("ci") is not None and store.tokens() == []
    assert store.token_by_digest(digest(second)) is None
    assert store.remove_token("ci") is None


def test_sqlite_keeps_only_the_digest(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "k.sqlite")
    secret = new_secret()
    SqliteApiTokenStore(db).put_token(ApiToken("ci", Role.READ, digest(secret)))
    raw = (tmp_path / "k.sqlite").read_bytes() + (tmp_path / "k.sqlite-wal").read_bytes()
    assert digest(secret).encode() in raw and secret.encode() not in raw
    db.close()
