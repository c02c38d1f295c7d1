"""`gradchain deploy | send | call | storage | events`, run as real subprocesses against one
real node, and the rule that reads contract arguments from the command line."""
from __future__ import annotations

import pytest

from ledger.genesis import devnet_keys
from ledger.keys import address_hex
from gradchain.cli.args import parse_contract_arg
from gradchain.cli.errors import CliError
from tests.nodeproc import NodeProcess
from tests.test_cli import cli, cli_json, fails
from vm.decimals import Decimal

DEV0, DEV1, DEV2 = (address_hex(k.address) for k in devnet_keys(3))

TOKEN = '''"""A small token for the CLI tests."""


@constructor
def init(name: str, supply: int):
    storage["name"] = name
    storage["balance", ctx.sender] = supply
    emit("Mint", to=ctx.sender, amount=supply)


@export
def transfer_to(to: bytes, amount: int) -> bool:
    balance = storage.get(("balance", ctx.sender), 0)
    require(amount > 0 and balance >= amount, "insufficient balance")
    storage["balance", ctx.sender] = balance - amount
    storage["balance", to] = storage.get(("balance", to), 0) + amount
    emit("Transfer", frm=ctx.sender, to=to, amount=amount)
    print("moved", amount)
    return True


@export
def balance_of(owner: bytes) -> int:
    return storage.get(("balance", owner), 0)


@export
def echo(x):
    return x


@export
def whoami() -> bytes:
    return ctx.sender
'''
REVERT_LINE = TOKEN.split("\n").index('    require(amount > 0 and balance >= amount, "insufficient balance")') + 1


# ---- reading arguments (no node) --------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("0x" + "ab" * 20, b"\xab" * 20),      # an address is bytes
    ("0x", b""),
    ("0xABcd", b"\xab\xcd"),
    ("dev:1", devnet_keys(2)[1].address),
    ("10", 10),
    ("-7", -7),
    ("1" + "0" * 1000, 10**1000),           # over json's digit limit, within the VM's
    ("true", True),
    ("null", None),
    ('"10"', "10"),                         # a str that looks like a number: quote it
    ('"0xab"', "0xab"),
    ("hello", "hello"),
    ("hello world", "hello world"),
    ("0x123", "0x123"),                     # odd digit count: not bytes
    ("0xzz", "0xzz"),
    ("dev:x", "dev:x"),
    ("NaN", "NaN"),                         # not JSON: a str
    ("[1, \"0xab\"]", [1, "0xab"]),         # inside JSON "0x.." stays a str
    ('[{"bytes": "0xab"}]', [b"\xab"]),
    ('{"decimal": "1.25"}', Decimal("1.25")),
    ('{"tuple": ["balance", {"bytes": "0x01"}]}', ("balance", b"\x01")),
    ('{"dict": [[1, "one"]]}', {1: "one"}),
    ('{"a": [true, null]}', {"a": [True, None]}),
    ("", ""),
])
def test_contract_args(text, value):
    got = parse_contract_arg(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text, words", [
    ("1.5", "decimal"),
    ("[1e3]", "float"),
    ('{"bytes": "0xabc"}', "hex"),
    ('{"decimal": "one"}', "Decimal literal"),
    ("1" * 1300, "digits"),
    ("dev:1000", "dev:999"),
])
def test_bad_contract_args(text, words):
    with pytest.raises(CliError) as e:
        parse_contract_arg(text)
    assert words in str(e.value)


# ---- against a node ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("cli-contracts") / "node", block_time=0.2).start()
    try:
        yield proc.url
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def token(url, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("src") / "token.py"
    path.write_text(TOKEN)
    p = cli("deploy", str(path), "Gradient", "1000000", "--key", "dev:0", url=url)
    rows = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    addr = rows["Address"].strip()
    assert p.stdout.splitlines()[0] == f"Address:  {addr}"
    assert rows["Status"].strip() == "success" and int(rows["Block"]) > 0
    assert f'Mint {{"to": "{DEV0}", "amount": 1000000}}' in p.stdout
    return {"address": addr, "file": str(path)}


def test_deploy_json_and_its_receipt(url, token):
    r = cli_json("deploy", token["file"], "Other", "5", "--key", "dev:1", url=url)
    assert r["address"] == r["receipt"]["contract_address"] and r["receipt"]["status"] == "success"
    assert r["receipt"]["events"][0]["data"] == {"to": DEV1, "amount": 5}
    assert cli("call", r["address"], "balance_of", DEV1, url=url).stdout == "5\n"


def test_send_call_storage_events(url, token):
    addr = token["address"]
    p = cli("send", addr, "transfer_to", "dev:2", "25", "--key", "dev:0", url=url)
    assert "Result:   true" in p.stdout and "Print:    moved 25" in p.stdout
    assert f'Transfer {{"frm": "{DEV0}", "to": "{DEV2}", "amount": 25}}' in p.stdout
    block = int(dict(line.split(":", 1) for line in p.stdout.splitlines())["Block"])

    # call: the value alone on stdout; at a height; as a sender
    assert cli("call", addr, "balance_of", DEV2, url=url).stdout == "25\n"
    assert cli("call", addr, "balance_of", "dev:2", "--height", str(block - 1), url=url).stdout == "0\n"
    assert cli("call", addr, "whoami", url=url).stdout == f'"0x{"00" * 20}"\n'
    assert cli("call", addr, "whoami", "--from", "dev:1", url=url).stdout == f'"{DEV1}"\n'
    assert cli("call", addr, "echo", '{"tuple": [1, {"decimal": "2.5"}]}', url=url).stdout == '[1, "2.5"]\n'
    r = cli_json("call", addr, "balance_of", DEV2, url=url)
    assert r["result"] == 25 and r["gas_used"] > 0

    # storage: KEY parts make a tuple key, as in storage["balance", owner]
    p = cli("storage", addr, "balance", DEV2, "--prove", url=url)
    lines = p.stdout.splitlines()
    assert lines[0] == "25" and lines[1].startswith("proof verified against the state root ")
    assert cli("storage", addr, "name", url=url).stdout == '"Gradient"\n'
    assert cli("storage", addr, "balance", "dev:5", url=url).stdout == "null  (not set)\n"
    s = cli_json("storage", addr, "balance", DEV2, "--prove", "--height", str(block - 1), url=url)
    assert s == {"contract": addr, "key": ["balance", DEV2], "value": None, "present": False,
                 "height": block - 1, "proof_verified": True, "state_root": s["state_root"]}

    # events: one line each, oldest first; filters
    out = cli("events", "--contract", addr, url=url).stdout.splitlines()
    assert out[0].endswith(f'Mint  {{"to": "{DEV0}", "amount": 1000000}}')
    assert out[-1].startswith(f"block {block}  tx ") and "Transfer" in out[-1]
    only = cli("events", "--contract", addr, "--name", "Transfer", "--from", str(block), "--to", str(block),
               url=url).stdout.splitlines()
    assert len(only) == 1 and "Transfer" in only[0]
    assert cli("events", "--name", "Nothing", url=url).stdout.startswith("no events in blocks 0..")
    paged = cli("events", "--contract", addr, "--limit", "1", url=url).stdout.splitlines()
    assert "more follow: continue with --from" in paged[-1]
    j = cli_json("events", "--contract", addr, "--name", "Transfer", url=url)
    assert j["events"][-1]["data"] == {"frm": DEV0, "to": DEV2, "amount": 25}


def test_reverts_name_reason_function_and_line(url, token):
    addr = token["address"]
    # simulated first: nothing is sent
    err = fails("send", addr, "transfer_to", DEV0, "5", "--key", "dev:3", url=url)
    assert err == (f"error: revert: insufficient balance (in transfer_to, line {REVERT_LINE}, contract {addr}); "
                   "not sent: it fails when the node simulates it (give --gas N to send it anyway)")
    # with --gas it is sent and fails in a block
    err = fails("send", addr, "transfer_to", DEV0, "5", "--key", "dev:3", "--gas", "200000", url=url)
    assert err.startswith(f"error: revert: insufficient balance (in transfer_to, line {REVERT_LINE}, contract {addr})"
                          "; transaction ")
    tx_hash = err.split("; transaction ")[1].split()[0]
    r = cli_json("tx", tx_hash, url=url)
    assert r["receipt"]["failure"] == {"code": "revert", "contract": addr, "function": "transfer_to",
                                       "line": REVERT_LINE}
    text = cli("tx", tx_hash, url=url).stdout  # for people: the code, where, and what was called
    assert f"Error:     revert: insufficient balance (in transfer_to, line {REVERT_LINE}, contract {addr})" in text
    assert f'Called:    transfer_to("{DEV0}", 5) on {addr}' in text
    # a read-only call that reverts
    err = fails("call", addr, "transfer_to", DEV0, "5", url=url)
    assert f"revert: insufficient balance (in transfer_to, line {REVERT_LINE}" in err
    assert "no function 'nope'" in fails("call", addr, "nope", url=url)
    err = fails("call", addr, "balance_of", url=url)
    assert "invalid_arguments" in err and "balance_of(owner: bytes) -> int" in err  # the signature to follow


def test_bad_input(url, token, tmp_path):
    addr = token["address"]
    assert "decimal" in fails("call", addr, "echo", "1.5", url=url)
    assert "bad contract address" in fails("call", "0x1234", "f", url=url)
    assert "no contract" in fails("call", "0x" + "ab" * 20, "f", url=url)
    assert "does not exist" in fails("deploy", str(tmp_path / "missing.py"), "--key", "dev:0", url=url)
    (tmp_path / "bin.py").write_bytes(b"\xff\xfe")
    assert "not UTF-8" in fails("deploy", str(tmp_path / "bin.py"), "--key", "dev:0", url=url)
    assert "is not a file" in fails("deploy", str(tmp_path), "--key", "dev:0", url=url)
    # a rejected contract: every issue, one per line, after the error line
    (tmp_path / "bad.py").write_text("import os\n")
    p = cli("deploy", str(tmp_path / "bad.py"), "--key", "dev:0", url=url, check=False)
    assert p.returncode == 1 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert lines[0] == "error: invalid_contract: 2 problems; not sent: the node refused it when it simulated it"
    assert lines[1].startswith("  line 1, column 1: import is not allowed")
    assert lines[2].startswith("  line 1, column 1: the contract exports nothing")
    assert len(lines) == 3
    assert "bad amount" in fails("send", addr, "echo", "1", "--key", "dev:0", "--value", "-1", url=url)
    assert "-32602" in fails("events", "--from", "0", "--to", "20000", url=url)
    assert "not found" in fails("storage", "0x" + "ab" * 20, "k", url=url)
    assert "not found" in fails("call", addr, "echo", "1", "--height", "99999999", url=url)
    assert "required" in fails("send", addr, "echo", url=url)  # no --key
