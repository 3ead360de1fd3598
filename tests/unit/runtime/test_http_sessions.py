"""``SessionStore``: the browser sessions behind the web UI's cookie are bounded, expire, and
map to the token's digest (so the token's revocation ends them; see the integration tests)."""

from __future__ import annotations

from keystore.api_tokens import ApiToken, Role, digest
from lwm2m_runtime.http_auth import SessionStore

TOKEN = ApiToken("ui", Role.READ, digest("a-secret-that-is-long-enough-0123"))


def test_a_session_id_is_opaque_and_maps_to_the_digest() -> None:
    sessions = SessionStore()
    first, second = sessions.open(TOKEN), sessions.open(TOKEN)
    assert first != second and len(first) >= 40
    assert "a-secret" not in first
    assert sessions.digest_of(first) == TOKEN.sha256
    assert sessions.digest_of("made-up") is None
    sessions.close(first)
    assert sessions.digest_of(first) is None
    assert sessions.digest_of(second) == TOKEN.sha256


def test_sessions_expire() -> None:
    sessions = SessionStore(ttl=0.0)
    session = sessions.open(TOKEN)
    assert sessions.digest_of(session) is None
    assert len(sessions) == 0  # forgotten, not only refused


def test_the_oldest_session_goes_when_full() -> None:
    sessions = SessionStore(limit=3)
    opened = [sessions.open(TOKEN) for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.digest_of(s) is not None for s in opened] == [False, False, True, True, True]
