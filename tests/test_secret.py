"""The secret connection (net/secret.py) without sockets: key agreement, the roles of the two
directions, and every way a sealed frame can be refused; the handshake's transcript
signature against a man in the middle who swaps ephemeral keys (net/p2p.py over an
in-memory stream)."""
from __future__ import annotations

import asyncio

import pytest

from ledger.hashing import hash_bytes
from ledger.keys import PrivateKey
from net import p2p, secret
from net.secret import COUNTER_LIMIT, TAG_SIZE, Direction, Ephemeral, SecretError, derive

CHAIN = "secret-test"
GENESIS = hash_bytes(b"secret-test genesis")
A_KEY, B_KEY = PrivateKey.from_label("secret-test a"), PrivateKey.from_label("secret-test b")

# Curve25519 points of small order (and their non-canonical encodings), as listed by
# libsodium and RFC 7748's discussion: X25519 with any of them gives a known result.
LOW_ORDER = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)]


def pair() -> tuple[secret.SecretLink, secret.SecretLink]:
    """Both ends of one exchange (hellos are any bytes here: only their hash matters)."""
    a, b = Ephemeral.generate(), Ephemeral.generate()
    return derive(a, b"hello a", b.public, b"hello b"), derive(b, b"hello b", a.public, b"hello a")


def split(wire: bytes) -> tuple[bytes, bytes]:
    return wire[:4], wire[4:]


def test_both_sides_derive_the_same_keys_with_opposite_roles():
    a, b = pair()
    assert a.transcript == b.transcript and len(a.transcript) == 32
    assert a.send.key == b.recv.key and a.recv.key == b.send.key
    assert a.send.key != a.recv.key
    for msg in (b"", b"vote", bytes(1 << 20)):
        assert b.recv.open(*split(a.send.seal(msg))) == msg
        assert a.recv.open(*split(b.send.seal(msg))) == msg
    assert (a.send.counter, b.recv.counter) == (3, 3)


def test_a_fresh_exchange_gives_fresh_keys_and_a_different_hello_a_different_transcript():
    (a1, _), (a2, _) = pair(), pair()
    assert a1.send.key != a2.send.key and a1.transcript != a2.transcript
    x, y = Ephemeral.generate(), Ephemeral.generate()
    assert derive(x, b"hello", y.public, b"other").transcript != derive(x, b"hello!", y.public, b"other").transcript


def test_the_wire_layout_is_length_of_the_sealed_payload_then_the_sealed_payload():
    a, b = pair()
    wire = a.send.seal(b"status")
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4 == len(b"status") + TAG_SIZE
    assert b"status" not in wire
    assert secret.nonce(1) == bytes(4) + (1).to_bytes(8, "little")


def test_a_flipped_byte_anywhere_in_the_sealed_payload_is_refused():
    a, b = pair()
    wire = bytearray(a.send.seal(b"block_request 7"))
    for i in range(4, len(wire)):
        tampered = bytearray(wire)
        tampered[i] ^= 0x01
        fresh = Direction(b.recv.key)   # the same counter each time: only the byte differs
        with pytest.raises(SecretError, match="frame 0 failed authentication"):
            fresh.open(*split(bytes(tampered)))
    assert b.recv.open(*split(bytes(wire))) == b"block_request 7"


def test_a_tampered_length_prefix_is_refused_it_is_the_associated_data():
    a, b = pair()
    prefix, sealed = split(a.send.seal(b"status"))
    with pytest.raises(SecretError, match="failed authentication"):
        b.recv.open((int.from_bytes(prefix, "big") ^ 0x0100).to_bytes(4, "big"), sealed)


def test_a_replayed_frame_is_refused():
    a, b = pair()
    wire = a.send.seal(b"vote")
    assert b.recv.open(*split(wire)) == b"vote"
    with pytest.raises(SecretError, match="frame 1 failed authentication"):
        b.recv.open(*split(wire))


def test_reordered_frames_are_refused():
    a, b = pair()
    first, second = a.send.seal(b"one"), a.send.seal(b"two")
    with pytest.raises(SecretError, match="frame 0 failed authentication"):
        b.recv.open(*split(second))
    assert Direction(b.recv.key).open(*split(first)) == b"one"


def test_a_frame_sealed_with_the_other_directions_key_is_refused():
    """A frame reflected back at its sender, or a side using the wrong key: refused."""
    a, b = pair()
    wire = a.send.seal(b"status")
    with pytest.raises(SecretError, match="failed authentication"):
        a.recv.open(*split(wire))
    with pytest.raises(SecretError, match="failed authentication"):   # another link's key
        pair()[1].recv.open(*split(wire))


@pytest.mark.parametrize("point", LOW_ORDER, ids=[f"low-order-{i}" for i in range(len(LOW_ORDER))])
def test_a_low_order_ephemeral_key_is_refused(point):
    with pytest.raises(SecretError, match="low-order point"):
        derive(Ephemeral.generate(), b"hello a", point, b"hello b")


def test_our_own_ephemeral_key_sent_back_is_refused():
    ours = Ephemeral.generate()
    with pytest.raises(SecretError, match="our own ephemeral key"):
        derive(ours, b"hello a", ours.public, b"hello a")


def test_the_counter_limit_closes_the_link_in_either_direction():
    a, b = pair()
    a.send.counter = b.recv.counter = COUNTER_LIMIT - 1
    assert b.recv.open(*split(a.send.seal(b"last"))) == b"last"   # the last nonce is used once
    with pytest.raises(SecretError, match="frame counter exhausted"):
        a.send.seal(b"one more")
    with pytest.raises(SecretError, match="frame counter exhausted"):
        b.recv.open(b"\x00\x00\x00\x10", bytes(16))


# ---- the handshake's transcript signature ---------------------------------------------------

class Pipe:
    """One direction of an in-memory link: what a writer writes, a reader reads; `tap`
    may rewrite each chunk on the way (the man in the middle)."""

    def __init__(self, tap=None) -> None:
        self.reader = asyncio.StreamReader()
        self.tap = tap or (lambda data: data)

    def write(self, data: bytes) -> None:
        self.reader.feed_data(self.tap(bytes(data)))

    async def drain(self) -> None:
        pass


async def handshake_pair(tap_ab=None, tap_ba=None) -> tuple[object, object]:
    """Both sides of p2p.handshake over two pipes; each result is (hello, link) or the error."""
    ab, ba = Pipe(tap_ab), Pipe(tap_ba)

    async def side(key: PrivateKey, reader: asyncio.StreamReader, writer: Pipe) -> object:
        eph = Ephemeral.generate()
        hello = p2p.Hello(key.public_key, CHAIN, GENESIS, eph.public)
        try:
            return await asyncio.wait_for(p2p.handshake(reader, writer, key, hello, eph, None), 5)
        except p2p.HandshakeRefused as e:
            return e
    return tuple(await asyncio.gather(side(A_KEY, ba.reader, ab), side(B_KEY, ab.reader, ba)))


def test_an_honest_handshake_agrees_on_the_keys():
    (hb, la), (ha, lb) = asyncio.run(handshake_pair())
    assert (ha.public_key, hb.public_key) == (A_KEY.public_key, B_KEY.public_key)
    assert la.send.key == lb.recv.key and la.transcript == lb.transcript
    assert la.send.counter == lb.recv.counter == 1   # the sealed auth frames went first


def test_a_man_in_the_middle_swapping_ephemeral_keys_fails_the_signature():
    """The attacker puts its own ephemeral key in each hello it relays (m_a facing a, m_b
    facing b), so it shares a key with each side, and relays their auth frames re-sealed.
    It cannot sign for either node key, and each side's transcript differs from the one the
    other signed: both sides open the auth (no MAC failure) and refuse its signature."""
    m_a, m_b = Ephemeral.generate(), Ephemeral.generate()
    seen: dict[str, tuple[bytes, bytes, bytes]] = {}   # side: (its hello, its eph key, hello relayed)

    def tap(src: str, dst: str, faces_src: Ephemeral, faces_dst: Ephemeral):
        def rewrite(data: bytes) -> bytes:
            if src not in seen:                          # the hello: our key in place of theirs
                hello = p2p.parse_hello(p2p.decode_message(data[4:])[1])
                swapped = p2p.encode_message(p2p.HELLO, p2p.Hello(hello.public_key, CHAIN, GENESIS,
                                                                   faces_dst.public).body())
                seen[src] = (data[4:], hello.ephemeral_key, swapped)
                return p2p.frame(swapped)
            with_src = derive(faces_src, seen[dst][2], seen[src][1], seen[src][0])
            with_dst = derive(faces_dst, seen[src][2], seen[dst][1], seen[dst][0])
            return with_dst.send.seal(with_src.recv.open(data[:4], data[4:]))
        return rewrite

    a_res, b_res = asyncio.run(handshake_pair(tap("a", "b", m_a, m_b), tap("b", "a", m_b, m_a)))
    for res in (a_res, b_res):
        assert isinstance(res, p2p.HandshakeRefused) and str(res) == "bad handshake signature", res


def test_a_man_in_the_middle_relaying_hellos_unchanged_cannot_read_or_alter_the_link():
    """Without swapping keys the attacker shares no key: altering the sealed auth fails it."""
    chunks = []

    def flip_auth(data: bytes) -> bytes:   # a's writes: its hello, then its sealed auth
        chunks.append(data)
        return data if len(chunks) == 1 else data[:-1] + bytes([data[-1] ^ 1])
    a_res, b_res = asyncio.run(handshake_pair(flip_auth, None))
    assert isinstance(b_res, p2p.HandshakeRefused) and "frame 0 failed authentication" in str(b_res)
