"""The session table on its own (no sockets): LRU order, idle selection, CID index and
collisions, re-keying after an address change and the remembered old address."""

from __future__ import annotations

from keystore.coaps import Session, SessionTable, address_key
from keystore.dtls import ClientConfig, DtlsEngine


def session(port: int, now: float = 0.0) -> Session:
    engine = DtlsEngine.client(ClientConfig(psk_identity=b"i", psk=b"k"))
    return Session(("127.0.0.1", port), ("127.0.0.1", port), engine, now)


def test_address_key_normalizes_v4_mapped() -> None:
    assert address_key(("::ffff:127.0.0.1", 5684, 0, 0)) == ("127.0.0.1", 5684)
    assert address_key(("2001:db8:0::1", 1)) == ("2001:db8::1", 1)


def test_lru_order_and_idle_selection() -> None:
    table = SessionTable()
    a, b, c = session(1, 0.0), session(2, 1.0), session(3, 2.0)
    for s in (a, b, c):
        table.add(s)
    table.touch(a, 5.0)
    assert table.oldest() is b
    assert table.idle_since(3.0) == [b, c]
    assert table.idle_since(0.5) == []
    assert len(table) == 3 and a in table


def test_cid_index_refuses_a_collision_and_follows_removal() -> None:
    table = SessionTable()
    a, b = session(1), session(2)
    table.add(a)
    table.add(b)
    assert table.add_cid(a, b"\x01" * 6)
    assert not table.add_cid(b, b"\x01" * 6)
    assert table.by_cid(b"\x01" * 6) is a
    table.remove(a)
    assert table.by_cid(b"\x01" * 6) is None and a not in table


def test_move_rekeys_displaces_and_remembers_the_old_address() -> None:
    table = SessionTable()
    a, squatter = session(1), session(9)
    table.add(a)
    table.add(squatter)
    displaced = table.move(a, ("127.0.0.1", 9))
    assert displaced is squatter and squatter not in table
    assert table.get(("127.0.0.1", 9)) is a and table.get(("127.0.0.1", 1)) is None
    assert table.find(("127.0.0.1", 1)) is a  # the downlink still finds it at the old address
    table.remove(a)
    assert table.find(("127.0.0.1", 1)) is None


def test_adding_at_an_address_returns_the_previous_session() -> None:
    table = SessionTable()
    old, new = session(1), session(1)
    assert table.add(old) is None
    assert table.add(new) is old
    assert table.get(("127.0.0.1", 1)) is new and len(table) == 1
