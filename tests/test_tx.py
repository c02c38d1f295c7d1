"""Transactions (ledger/tx.py): wire format, signatures, stateless validation."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.votes import PRECOMMIT, sign_vote, vote_payload
from ledger import errors
from ledger.encoding import decode, encode
from ledger.hashing import hash_bytes
from ledger.keys import TX_DOMAIN, VOTE_DOMAIN, PrivateKey, address_of, verify
from ledger.params import ChainParams
from ledger.sigverify import items_of, verify_items
from ledger.tx import (INTRINSIC_GAS, TX_VERSION, Transfer, TxKind, decode_transaction,
                       sign_transaction, signed_body, transfer, tx_to_json, validate_transaction,
                       verify_signature)

CHAIN = "test-chain"
PARAMS = ChainParams()
MAX_TX = PARAMS.max_tx_bytes
MAX_GAS = PARAMS.max_block_gas
ALICE = PrivateKey.from_label("alice")
BOB = PrivateKey.from_label("bob")


def sample_tx(**kw):
    args = dict(key=ALICE, chain_id=CHAIN, nonce=7, to=BOB.address, amount=123_456_789,
                gas_price=3, gas_limit=30_000)
    args.update(kw)
    return transfer(args.pop("key"), args.pop("chain_id"), args.pop("nonce"), args.pop("to"),
                    args.pop("amount"), gas_price=args.pop("gas_price"), gas_limit=args.pop("gas_limit"))


ORIGINAL = sample_tx()


def wire_fields(tx=ORIGINAL) -> list:
    """The 9 wire fields of tx, as a mutable list."""
    return decode(tx.raw)


def accepted(raw: bytes):
    """The transaction raw decodes to if it is fully acceptable (shape + signature), else None."""
    try:
        tx = decode_transaction(raw, MAX_TX)
    except errors.MalformedTransaction:
        return None
    try:
        verify_signature(tx)
    except errors.BadSignature:
        return None
    return tx


# ---- round trip -------------------------------------------------------------------------

def test_sign_decode_round_trip():
    tx = ORIGINAL
    assert tx.raw == encode(wire_fields())
    assert tx.hash == hash_bytes(tx.raw)
    assert tx.sender == ALICE.public_key and tx.sender_address == ALICE.address == address_of(ALICE.public_key)
    d = decode_transaction(tx.raw, MAX_TX)
    assert d == tx
    assert (d.raw, d.hash, d.sender_address) == (tx.raw, tx.hash, tx.sender_address)
    assert d.payload == Transfer(BOB.address, 123_456_789)
    assert (d.nonce, d.gas_limit, d.gas_price, d.kind, d.chain_id) == (7, 30_000, 3, TxKind.TRANSFER, CHAIN)
    assert d.max_fee == 90_000 and d.value == 123_456_789
    verify_signature(d)
    verify_signature(tx)
    validate_transaction(d, CHAIN, MAX_GAS)
    # the wire layout documented in tx.py
    f = wire_fields()
    assert f[0] == TX_VERSION and f[1] == CHAIN and f[2] == ALICE.public_key and f[7] == [BOB.address, 123_456_789]
    assert encode(f[:8]) == signed_body(tx)
    assert verify(ALICE.public_key, f[8], TX_DOMAIN, CHAIN, signed_body(tx))


def test_default_gas_limit_and_signing_is_deterministic():
    a = transfer(ALICE, CHAIN, 0, BOB.address, 1)
    b = transfer(ALICE, CHAIN, 0, BOB.address, 1)
    assert a.gas_limit == INTRINSIC_GAS[TxKind.TRANSFER] and a.gas_price == 1
    assert a.raw == b.raw and a.hash == b.hash  # ed25519 is deterministic
    assert transfer(ALICE, CHAIN, 1, BOB.address, 1).hash != a.hash


@settings(max_examples=60, deadline=None)
@given(nonce=st.integers(0, 2**64 - 1), amount=st.integers(0, 2**64 - 1),
       gas_limit=st.integers(21_000, 2**64 - 1), gas_price=st.integers(0, 2**64 - 1),
       to=st.binary(min_size=20, max_size=20), chain=st.text(min_size=1, max_size=16))
def test_round_trip_any_fields(nonce, amount, gas_limit, gas_price, to, chain):
    tx = transfer(ALICE, chain, nonce, to, amount, gas_price=gas_price, gas_limit=gas_limit)
    d = decode_transaction(tx.raw, MAX_TX)
    assert d == tx and d.hash == tx.hash
    verify_signature(d)


def test_tx_to_json():
    j = tx_to_json(ORIGINAL)
    assert j["hash"] == ORIGINAL.hash.hex() and j["kind"] == "transfer"
    assert j["to"] == "0x" + BOB.address.hex() and j["amount"] == 123_456_789
    assert j["from"] == "0x" + ALICE.address.hex() and j["nonce"] == 7


# ---- tampering ----------------------------------------------------------------------------

def test_every_position_flipped_is_rejected():
    raw = ORIGINAL.raw
    for i in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[i] ^= mask
            assert accepted(bytes(bad)) is None, f"byte {i} ^ {mask:#x} still accepted"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_rejected(data):
    raw = ORIGINAL.raw
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    b = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]), label="byte")
    bad = bytearray(raw)
    bad[i] = b
    bad = bytes(bad)
    # must raise nothing but these two errors
    try:
        tx = decode_transaction(bad, MAX_TX)
    except errors.MalformedTransaction:
        return
    assert tx.hash != ORIGINAL.hash
    with pytest.raises(errors.BadSignature):
        verify_signature(tx)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=8), st.integers(0, 200), st.integers(0, 200))
def test_insertions_and_deletions_are_rejected(chunk, at, cut):
    raw = ORIGINAL.raw
    at %= len(raw) + 1
    inserted = raw[:at] + chunk + raw[at:]
    if chunk:
        assert accepted(inserted) is None
    cut %= len(raw)
    assert accepted(raw[:cut] + raw[cut + 1:]) is None


def test_signature_of_other_key_or_other_fields_is_rejected():
    f = wire_fields()
    f[2] = BOB.public_key  # claim Bob sent Alice's signed transaction
    with pytest.raises(errors.BadSignature):
        verify_signature(decode_transaction(encode(f), MAX_TX))
    f = wire_fields()
    f[7] = [BOB.address, 123_456_790]  # change the amount, keep the signature
    with pytest.raises(errors.BadSignature):
        verify_signature(decode_transaction(encode(f), MAX_TX))
    f = wire_fields()
    f[8] = os.urandom(64)
    with pytest.raises(errors.BadSignature):
        verify_signature(decode_transaction(encode(f), MAX_TX))


def test_domain_separation_between_chains():
    tx_a = sample_tx(chain_id="chain-A")
    f = wire_fields(tx_a)
    f[1] = "chain-B"  # same signature, replayed on chain B
    replay = decode_transaction(encode(f), MAX_TX)
    with pytest.raises(errors.BadSignature):
        verify_signature(replay)
    assert not verify(ALICE.public_key, tx_a.signature, TX_DOMAIN, "chain-B", signed_body(tx_a))
    assert verify(ALICE.public_key, tx_a.signature, TX_DOMAIN, "chain-A", signed_body(tx_a))
    # prefix ambiguity: chain "ab" + body vs chain "a" + "b" + body cannot collide
    body = signed_body(tx_a)
    sig = ALICE.sign(TX_DOMAIN, "ab", body)
    assert not verify(ALICE.public_key, sig, TX_DOMAIN, "a", b"b" + body)


def test_vote_signatures_are_not_tx_signatures():
    body = signed_body(ORIGINAL)
    # a signature of the very same bytes under the vote domain
    f = wire_fields()
    f[8] = ALICE.sign(VOTE_DOMAIN, CHAIN, body)
    with pytest.raises(errors.BadSignature):
        verify_signature(decode_transaction(encode(f), MAX_TX))
    # a real precommit signature
    f[8] = sign_vote(ALICE, CHAIN, PRECOMMIT, 1, 0, bytes(32))
    with pytest.raises(errors.BadSignature):
        verify_signature(decode_transaction(encode(f), MAX_TX))
    # and the other way round: a tx signature is no vote
    assert not verify(ALICE.public_key, ORIGINAL.signature, VOTE_DOMAIN, CHAIN, body)
    assert not verify(ALICE.public_key, ORIGINAL.signature, VOTE_DOMAIN, CHAIN,
                      vote_payload(PRECOMMIT, 1, 0, bytes(32)))


def test_batch_verifier_agrees():
    good = [sample_tx(nonce=i) for i in range(3)]
    f = wire_fields(good[1])
    f[3] = 99
    bad = decode_transaction(encode(f), MAX_TX)
    assert verify_items(items_of(good + [bad])) == [True, True, True, False]


# ---- stateless validation ---------------------------------------------------------------

def test_wrong_chain_id():
    with pytest.raises(errors.WrongChainId) as e:
        validate_transaction(sample_tx(chain_id="other"), CHAIN, MAX_GAS)
    assert e.value.reason == "wrong_chain_id"


def test_gas_limit_bounds():
    intrinsic = INTRINSIC_GAS[TxKind.TRANSFER]
    validate_transaction(sample_tx(gas_limit=intrinsic), CHAIN, MAX_GAS)
    validate_transaction(sample_tx(gas_limit=MAX_GAS), CHAIN, MAX_GAS)
    with pytest.raises(errors.GasLimitTooLow) as e:
        validate_transaction(sample_tx(gas_limit=intrinsic - 1), CHAIN, MAX_GAS)
    assert e.value.reason == "gas_limit_too_low"
    with pytest.raises(errors.GasLimitTooLow):
        validate_transaction(sample_tx(gas_limit=0), CHAIN, MAX_GAS)
    with pytest.raises(errors.GasLimitTooHigh) as e:
        validate_transaction(sample_tx(gas_limit=MAX_GAS + 1), CHAIN, MAX_GAS)
    assert e.value.reason == "gas_limit_too_high"
    with pytest.raises(errors.GasLimitTooHigh):
        validate_transaction(sample_tx(gas_limit=2**64 - 1), CHAIN, MAX_GAS)


def test_size_limit():
    raw = ORIGINAL.raw
    assert decode_transaction(raw, len(raw)) == ORIGINAL
    with pytest.raises(errors.TransactionTooLarge) as e:
        decode_transaction(raw, len(raw) - 1)
    assert e.value.reason == "too_large"
    # the size check comes first: a huge garbage blob is "too large", not "malformed"
    with pytest.raises(errors.TransactionTooLarge):
        decode_transaction(b"\xff" * (MAX_TX + 1), MAX_TX)


def _with(i, value):
    f = wire_fields()
    f[i] = value
    return encode(f)


def _payload(value):
    return _with(7, value)


SIG = ORIGINAL.signature
MALFORMED = {
    "not msgpack": b"\xc1",
    "trailing byte": ORIGINAL.raw + b"\x00",
    "non-canonical": b"\xdc\x00\x09" + ORIGINAL.raw[1:],  # array16 header instead of fixarray
    "not an array": encode({"version": 1}),
    "a string": encode("tx"),
    "8 fields": encode(wire_fields()[:8]),
    "10 fields": encode(wire_fields() + [b""]),
    "empty": encode([]),
    "version 2": _with(0, 2),
    "version 0": _with(0, 0),
    "version true": _with(0, True),
    "version str": _with(0, "1"),
    "chain id empty": _with(1, ""),
    "chain id bytes": _with(1, CHAIN.encode()),
    "chain id too long": _with(1, "c" * 65),
    "chain id none": _with(1, None),
    "sender short": _with(2, ALICE.public_key[:31]),
    "sender long": _with(2, ALICE.public_key + b"\x00"),
    "sender str": _with(2, ALICE.public_key.hex()),
    "nonce negative": _with(3, -1),
    "nonce bool": _with(3, True),
    "nonce bytes": _with(3, b"\x01"),
    "gas limit negative": _with(4, -21000),
    "gas limit none": _with(4, None),
    "gas price negative": _with(5, -1),
    "gas price bool": _with(5, False),
    "kind unknown": _with(6, 9),
    "kind zero": _with(6, 0),
    "kind negative": _with(6, -1),
    "kind str": _with(6, "transfer"),
    "payload none": _payload(None),
    "payload map": _payload({"to": BOB.address, "amount": 1}),
    "payload 1 field": _payload([BOB.address]),
    "payload 3 fields": _payload([BOB.address, 1, 0]),
    "payload to short": _payload([BOB.address[:19], 1]),
    "payload to long": _payload([BOB.address + b"\x00", 1]),
    "payload to str": _payload(["0x" + BOB.address.hex(), 1]),
    "payload amount negative": _payload([BOB.address, -1]),
    "payload amount bool": _payload([BOB.address, True]),
    "payload amount bytes": _payload([BOB.address, b"\x01"]),
    "signature short": _with(8, SIG[:63]),
    "signature long": _with(8, SIG + b"\x00"),
    "signature str": _with(8, SIG.hex()),
    "signature none": _with(8, None),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_transactions(name):
    with pytest.raises(errors.MalformedTransaction) as e:
        decode_transaction(MALFORMED[name], MAX_TX)
    assert e.value.reason == "malformed"
    assert isinstance(e.value, errors.InvalidTransaction)


def test_error_classes_form_one_tree():
    for cls in (errors.MalformedTransaction, errors.TransactionTooLarge, errors.BadSignature,
                errors.WrongChainId, errors.NonceTooLow, errors.NonceTooHigh,
                errors.InsufficientFunds, errors.GasLimitTooLow, errors.GasLimitTooHigh):
        assert issubclass(cls, errors.InvalidTransaction) and issubclass(cls, errors.LedgerError)
    assert not issubclass(errors.InvalidBlock, errors.InvalidTransaction)
    reasons = [c.reason for c in (errors.MalformedTransaction, errors.TransactionTooLarge,
                                  errors.BadSignature, errors.WrongChainId, errors.NonceTooLow,
                                  errors.NonceTooHigh, errors.InsufficientFunds,
                                  errors.GasLimitTooLow, errors.GasLimitTooHigh, errors.InvalidBlock)]
    assert len(set(reasons)) == len(reasons)


def test_sign_transaction_rejects_unknown_kind():
    with pytest.raises(ValueError):
        sign_transaction(ALICE, CHAIN, 0, 9, Transfer(BOB.address, 1), gas_limit=21_000)


def test_chain_id_longer_than_255_utf8_bytes_is_rejected_cleanly():
    long_id = "\U0001F600" * 64  # 64 characters, 256 UTF-8 bytes
    raw = _with(1, long_id)
    with pytest.raises(errors.InvalidTransaction):
        tx = decode_transaction(raw, MAX_TX)
        verify_signature(tx)


def test_contract_arguments_pay_intrinsic_gas_by_element_not_only_by_byte():
    """[[]] * 60000 is 60 KB but 60,000 lists to decode: it must pay for each."""
    from ledger.tx import Call, arg_units, call, encode_args, intrinsic_gas
    from vm import gas
    flat = Call(BOB.address, "f", encode_args([b"x" * 20, 5]), 0)
    nested = Call(BOB.address, "f", encode_args([[[]] * 60_000]), 0)
    assert arg_units(flat.args) == 3 and arg_units(nested.args) == 60_002
    assert intrinsic_gas(TxKind.CALL, flat) == gas.CALL_TX + (len(flat.args) + 1) * gas.TX_DATA_PER_BYTE + 3_000
    assert intrinsic_gas(TxKind.CALL, nested) > 60_000 * gas.TX_ARG_PER_UNIT
    tx = call(ALICE, CHAIN, 0, BOB.address, "f", [[[]] * 60_000], gas_limit=1_000_000)  # bytes alone would pay
    with pytest.raises(errors.GasLimitTooLow):
        validate_transaction(tx, CHAIN, 10**9)


def test_signed_body_from_the_wire_bytes_is_the_encoded_body_for_every_kind():
    """signed_body cuts the signature off the canonical wire bytes instead of re-encoding;
    it must give exactly the bytes a fresh encoding gives, for every kind and size."""
    import dataclasses

    from ledger import tx as txs
    key = PrivateKey.from_label("signed body")
    to = PrivateKey.from_label("signed body to").address
    samples = [txs.decode_transaction(t.raw, 1 << 20) for t in (
        txs.transfer(key, "c", 0, to, 5),
        txs.transfer(key, "c", 2**64 - 1, to, 2**64 - 1, gas_price=2**40),
        txs.deploy(key, "c", 1, "x = 1\n" * 3000, (1, "a", b"b"), 7, 10**6),
        txs.call(key, "c", 2, to, "f", [list(range(100))], 0, 10**6),
        txs.bond(key, "c", 3, 9), txs.unbond(key, "c", 4, 9))]
    for t in samples:
        body = txs.encode(txs._body(t.chain_id, t.sender, t.nonce, t.gas_limit, t.gas_price, t.kind,
                                    txs._payload_to_wire(t.kind, t.payload)))
        assert txs.signed_body(t) == body
        assert txs.signed_body(dataclasses.replace(t, raw=b"")) == body  # no wire bytes: encoded
        txs.verify_signature(t)


def test_a_block_decoded_with_known_transactions_is_the_same_block():
    from ledger.block import Block, Header, decode_block, encode_block
    key = PrivateKey.from_label("known txs")
    ts = tuple(transfer(key, "c", n, key.address, 1) for n in range(5))
    h = Header("c", 1, 1, bytes(32), bytes(20), *([bytes(32)] * 6))
    raw = encode_block(Block(h, ts, None))
    plain = decode_block(raw, 1 << 20, 1 << 16)
    mine = {t.hash: t for t in ts[:3]}
    reused = decode_block(raw, 1 << 20, 1 << 16, mine.get)
    assert reused == plain and [t.hash for t in reused.txs] == [t.hash for t in ts]
    assert all(reused.txs[i] is ts[i] for i in range(3)) and reused.txs[3] is not ts[3]
