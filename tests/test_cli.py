"""The `gradchain` CLI (gradchain/cli/), run as a real subprocess against real nodes."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from ledger.genesis import COIN, DEVNET_BALANCE, devnet_keys
from ledger.keys import address_hex
from gradchain.cli.args import parse_amount
from gradchain.cli.errors import CliError
from gradchain.units import format_grad
from tests.nodeproc import ROOT, free_port

DEV0, DEV1, DEV2 = (address_hex(k.address) for k in devnet_keys(3))


def cli(*args: str, url: str | None = None, cwd=None, env: dict | None = None, check: bool = True
        ) -> subprocess.CompletedProcess:
    """Run `python -m gradchain.cli [--rpc url] args...`; with check, expect success."""
    full_env = {k: v for k, v in os.environ.items() if k != "GRADCHAIN_RPC"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    argv = [sys.executable, "-m", "gradchain.cli"] + (["--rpc", url] if url else []) + list(args)
    p = subprocess.run(argv, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, f"{args} failed ({p.returncode}): {p.stderr}"
    return p


def cli_json(*args: str, url: str | None = None, **kw) -> object:
    return json.loads(cli("--json", *args, url=url, **kw).stdout)


def fails(*args: str, url: str | None = None, **kw) -> str:
    """Run the CLI expecting a user error: exit 1, one `error:` line on stderr, no stdout."""
    p = cli(*args, url=url, check=False, **kw)
    assert p.returncode == 1, f"{args}: exit {p.returncode}\n{p.stdout}{p.stderr}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert p.stdout == ""
    return lines[0]


# ---- without a node ---------------------------------------------------------------------

def test_amounts_parse_and_print_exactly():
    assert parse_amount("1.5") == 1_500_000_000
    assert parse_amount("1500000000u") == 1_500_000_000
    assert parse_amount("0.000000001") == 1
    assert parse_amount("1000000.000000021") == 1_000_000 * COIN + 21
    assert format_grad(1_000_000 * COIN + 21) == "1000000.000000021 GRAD"
    assert format_grad(DEVNET_BALANCE) == "1000000 GRAD"
    assert format_grad(0) == "0 GRAD"
    assert format_grad(2**64 - 1) == "18446744073.709551615 GRAD"
    for bad in ("-1", "1.0000000001", "abc", "1e5", "", "1.", ".5.", "0x10", "1.5u", "18446744074"):
        with pytest.raises(CliError):
            parse_amount(bad)


def test_keys_new_and_show(tmp_path):
    out = cli("keys", "new", "--insecure-plaintext", cwd=tmp_path).stdout  # default ./key.json (keystores: test_keystore.py)
    path = tmp_path / "key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["address"] in out and str(path.name) in out and doc["seed"] not in out

    before = path.read_text()
    err = fails("keys", "new", cwd=tmp_path)
    assert "already exists" in err and path.read_text() == before

    other = tmp_path / "sub" / "alice.json"
    made = cli_json("keys", "new", "--out", str(other), "--insecure-plaintext")
    assert made["file"] == str(other) and stat.S_IMODE(other.stat().st_mode) == 0o600

    shown = cli("keys", "show", str(path)).stdout
    assert doc["address"] in shown and doc["public_key"] in shown and doc["seed"] not in shown
    priv = cli_json("keys", "show", str(path), "--private")
    assert priv == {"address": doc["address"], "public_key": doc["public_key"], "private_key": doc["seed"],
                    "encrypted": False}
    assert cli_json("keys", "show", str(other))["address"] == made["address"]

    assert "does not exist" in fails("keys", "show", str(tmp_path / "missing.json"))
    (tmp_path / "junk.json").write_text("not json")
    assert "junk.json" in fails("keys", "show", str(tmp_path / "junk.json"))


def test_devnet_accounts():
    accts = cli_json("devnet", "accounts")
    assert [a["address"] for a in accts] == [address_hex(k.address) for k in devnet_keys()]
    assert accts[3]["key"] == "dev:3" and "private_key" not in accts[3]
    text = cli("devnet", "accounts").stdout
    assert f"dev:0  {DEV0}" in text and f"dev:9  {address_hex(devnet_keys()[9].address)}" in text


def test_node_down_and_bad_urls():
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status"], ["balance", DEV0], ["block"], ["tx", "00" * 32], ["rpc", "status"],
                 ["transfer", "--key", "dev:0", "--to", DEV1, "--amount", "1"]):
        err = fails(*args, url=url)
        assert "cannot reach a node" in err and url in err, err
    err = fails("status", env={"GRADCHAIN_RPC": url})  # the environment default is used
    assert url in err
    assert "bad RPC URL" in fails("status", url="ftp://example")
    assert "bad RPC URL" in fails("status", url="http://127.0.0.1:99999")


def test_examples_are_written_from_the_package(tmp_path):
    out = tmp_path / "ex"
    got = cli_json("examples", str(out))
    names = sorted(p.name for p in (ROOT / "examples").iterdir() if p.suffix in (".py", ".md"))
    assert got["files"] == names and "token.py" in names
    for n in names:
        assert (out / n).read_bytes() == (ROOT / "examples" / n).read_bytes()
    err = fails("examples", str(out))  # never overwrites without --force
    assert "already holds" in err and "token.py" in err
    (out / "token.py").write_text("changed")
    cli("examples", str(out), "--force")
    assert (out / "token.py").read_bytes() == (ROOT / "examples" / "token.py").read_bytes()
    (tmp_path / "file").write_text("")
    assert "cannot write into" in fails("examples", str(tmp_path / "file" / "sub"))


def test_the_package_metadata_agrees_with_the_readme():
    """gradchain-node is node.main; python_requires is the README's lowest Python; the wheel
    carries examples/ through the gradchain/examples link."""
    from importlib import metadata

    import node
    scripts = {e.name: e for e in metadata.entry_points(group="console_scripts")}
    assert scripts["gradchain-node"].load() is node.main
    assert metadata.metadata("gradchain")["Requires-Python"] == ">=3.11"
    assert "Python 3.11, 3.12 or 3.13" in (ROOT / "README.md").read_text()
    assert (ROOT / "gradchain" / "examples").resolve() == (ROOT / "examples").resolve()
    assert "examples/*.py" in (ROOT / "setup.cfg").read_text()


# ---- against a devnet -------------------------------------------------------------------

def test_the_sdk_reads_gradchain_rpc_as_the_cli_does(devnet, monkeypatch):
    from gradchain import Client
    from gradchain.client import DEFAULT_URL
    monkeypatch.setenv("GRADCHAIN_RPC", devnet.url)
    c = Client()
    assert c.url == devnet.url and c.status()["height"] >= 0
    assert Client("http://127.0.0.1:1").url == "http://127.0.0.1:1"  # an explicit URL wins
    monkeypatch.setenv("GRADCHAIN_RPC", "")
    assert Client().url == DEFAULT_URL
    monkeypatch.setenv("GRADCHAIN_RPC", "ftp://example")
    with pytest.raises(ValueError, match="RPC URL must look like"):
        Client()


def test_transfer_balance_and_reads(devnet):
    url = devnet.url
    b0 = cli_json("balance", DEV0, url=url)["balance"]
    b1 = cli_json("balance", "dev:1", url=url)["balance"]
    assert b0 == b1 == DEVNET_BALANCE

    out = cli("transfer", "--key", "dev:0", "--to", DEV1, "--amount", "1.000000021", url=url).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["Status"] == "success" and fields["Gas used"] == "21000"
    assert fields["Amount"] == "1.000000021 GRAD" and fields["Fee"] == "0.000021 GRAD"
    tx_hash, height = fields["Hash"], int(fields["Block"])

    sent = 1 * COIN + 21
    assert cli_json("balance", DEV1, url=url)["balance"] == b1 + sent
    a0 = cli_json("balance", DEV0, url=url)
    assert a0["balance"] == b0 - sent - 21_000 and a0["nonce"] == 1
    text = cli("balance", DEV1, url=url).stdout
    assert "1000001.000000021 GRAD" in text and str(b1 + sent) in text
    # at an old height the old balance, and with a verified proof
    old = cli_json("balance", DEV1, "--height", str(height - 1), "--prove", url=url)
    assert old["balance"] == b1 and old["proof_verified"] is True and old["height"] == height - 1
    assert "proof verified" in cli("balance", DEV1, "--prove", url=url).stdout
    # an account that never existed proves its absence
    assert cli_json("balance", "0x" + "ab" * 20, "--prove", url=url)["balance"] == 0

    # JSON transfer in base units, to dev:N, with a receipt
    r = cli_json("transfer", "--key", "dev:0", "--to", "dev:2", "--amount", "1500000000u", url=url)
    assert r["receipt"]["status"] == "success" and r["height"] >= height
    assert cli_json("balance", DEV2, url=url)["balance"] == DEVNET_BALANCE + 1_500_000_000
    # --no-wait returns the hash at once; the tx is then found pending or committed
    nw = cli_json("transfer", "--key", "dev:0", "--to", DEV1, "--amount", "0.5", "--no-wait", url=url)
    assert nw["status"] == "pending" and len(nw["hash"]) == 64

    # tx
    t = cli_json("tx", tx_hash, url=url)
    assert t["status"] == "committed" and t["height"] == height and t["tx"]["amount"] == sent
    assert t["tx"]["from"] == DEV0 and t["tx"]["to"] == DEV1
    text = cli("tx", "0x" + tx_hash, url=url).stdout
    assert tx_hash in text and "committed" in text and "1.000000021 GRAD" in text
    assert cli_json("tx", nw["hash"], url=url)["status"] in ("pending", "committed")

    # block
    blk = cli_json("block", str(height), "--full", url=url)
    assert blk["header"]["height"] == height and tx_hash in blk["tx_hashes"]
    assert blk["txs"][blk["tx_hashes"].index(tx_hash)]["amount"] == sent
    by_hash = cli_json("block", "--hash", blk["header"]["hash"], url=url)
    assert by_hash["header"] == blk["header"] and "txs" not in by_hash
    text = cli("block", str(height), "--full", url=url).stdout
    assert f"Block {height}" in text and tx_hash in text and "1.000000021 GRAD" in text
    assert cli_json("block", url=url)["header"]["height"] >= height

    # status
    s = cli_json("status", url=url)
    assert s["chain_id"] == "gradchain-devnet" and s["height"] >= height
    text = cli("status", "--json", url=url).stdout  # --json after the subcommand works too
    assert json.loads(text)["chain_id"] == "gradchain-devnet"
    assert "gradchain-devnet" in cli("status", url=url).stdout

    # raw rpc: positional words, a params object, a params array
    assert json.loads(cli("rpc", "status", url=url).stdout)["chain_id"] == "gradchain-devnet"
    acct = json.loads(cli("rpc", "account", json.dumps({"address": DEV1, "prove": True}), url=url).stdout)
    assert acct["balance"] >= b1 + sent and "proof" in acct
    assert json.loads(cli("rpc", "tx", tx_hash, url=url).stdout)["height"] == height
    assert json.loads(cli("rpc", "block", f"[{height}]", url=url).stdout)["header"]["height"] == height
    assert "-32601" in fails("rpc", "no_such_method", url=url)
    assert "-32602" in fails("rpc", "account", "nothex", url=url)
    assert "bad PARAMS_JSON" in fails("rpc", "block", "[1", url=url)


def test_bad_inputs(devnet, tmp_path):
    url = devnet.url

    def transfer(*args: str) -> str:
        return fails("transfer", *args, url=url)

    base = ["--key", "dev:0", "--to", DEV1]
    assert "bad recipient address" in transfer("--key", "dev:0", "--to", "0x1234", "--amount", "1")
    assert "bad recipient address" in transfer("--key", "dev:0", "--to", "0x" + "zz" * 20, "--amount", "1")
    assert "negative" in transfer(*base, "--amount", "-1")
    assert "negative" in transfer(*base, "--amount=-1u")
    assert "at most 9 decimals" in transfer(*base, "--amount", "1.0000000001")
    assert "bad amount" in transfer(*base, "--amount", "lots")
    assert "bad amount" in transfer(*base, "--amount", "99999999999")
    assert "--amount" in transfer(*base)  # missing
    assert "--gas-price" in transfer(*base, "--amount", "1", "--gas-price", "cheap")
    assert "does not exist" in transfer("--key", str(tmp_path / "nope.json"), "--to", DEV1, "--amount", "1")
    assert "dev:0 to dev:999" in transfer("--key", "dev:1000", "--to", DEV1, "--amount", "1")
    assert "(insufficient_funds)" in transfer("--key", "dev:10", "--to", DEV1, "--amount", "1")  # not funded here
    # refused by the node: the reason code is shown
    assert "(insufficient_funds)" in transfer(*base, "--amount", "2000000")
    assert "(fee_too_low)" in transfer(*base, "--amount", "1", "--gas-price", "0")
    cli("keys", "new", "--out", str(tmp_path / "poor.json"), "--insecure-plaintext")
    assert "(insufficient_funds)" in transfer("--key", str(tmp_path / "poor.json"), "--to", DEV1, "--amount", "1")
    cli("transfer", *base, "--amount", "1", url=url)  # nonce 0 is now used
    assert "(nonce_too_low)" in transfer(*base, "--amount", "2", "--nonce", "0")

    assert "bad address" in fails("balance", "0xnothex", url=url)
    assert "not found" in fails("balance", DEV0, "--height", "99999999", url=url)
    assert "bad transaction hash" in fails("tx", "1234", url=url)
    assert "not found" in fails("tx", "00" * 32, url=url)
    assert "not found" in fails("block", "99999999", url=url)
    assert "bad height" in fails("block", "tip", url=url)
    assert "not both" in fails("block", "1", "--hash", "00" * 32, url=url)
    assert "invalid choice" in fails("frobnicate", url=url)
    assert "required" in fails(url=url)


# ---- answers a devnet does not give easily: a scripted JSON-RPC server ------------------

@pytest.fixture
def fake_node():
    """A JSON-RPC server answering from `answers` (method -> result, or {"error": ...})."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers: dict = {"status": {"chain_id": "gradchain-devnet"},
                     "account": {"address": DEV0, "balance": 10**15, "nonce": 0, "height": 1, "pending_nonce": 0}}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            a = answers[req["method"]]
            body = {"jsonrpc": "2.0", "id": req["id"], **(a if "error" in a else {"result": a})}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", answers
    srv.shutdown()
    srv.server_close()


def test_commit_timeout_and_failed_receipt(fake_node):
    url, answers = fake_node
    args = ("transfer", "--key", "dev:0", "--to", DEV1, "--amount", "1")
    answers["broadcast_tx_commit"] = {"error": {"code": -32002, "message": "not committed within 30 s",
                                                "data": {"hash": "ab" * 32}}}
    err = fails(*args, url=url)
    assert "not committed within 30 s" in err and "gradchain tx " + "ab" * 32 in err

    answers["broadcast_tx_commit"] = {"hash": "cd" * 32, "height": 7, "index": 0, "receipt": {
        "status": "failed", "gas_used": 21000, "error": "out of luck", "events": [], "output": None}}
    p = cli(*args, url=url, check=False)
    assert p.returncode == 1 and "out of luck" in p.stdout and "cd" * 32 in p.stdout
    assert p.stderr.startswith("error: ") and "failed in block 7: out of luck" in p.stderr

    answers["status"] = {"error": {"code": -32603, "message": "internal error"}}
    assert fails("status", url=url) == "error: RPC error -32603: internal error"


def test_bad_proof_is_an_error(fake_node):
    url, answers = fake_node
    root = "11" * 32
    answers["account"] = {"address": DEV0, "balance": 10**15, "nonce": 0, "height": 1, "state_root": root,
                          "proof": {"key": "61" + DEV0[2:], "value": None, "proof": "c0"}}
    answers["block"] = {"header": {"state_root": root, "height": 1}}
    err = fails("balance", DEV0, "--prove", url=url)
    assert "proof check FAILED" in err
    assert cli_json("balance", DEV0, url=url)["balance"] == 10**15  # without --prove it is believed
