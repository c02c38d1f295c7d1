"""Encrypted key files (ledger/keystore.py, ledger/keys.py load_key/save_key): round trips,
every way a file can be wrong, the password sources, the `gradchain` console script and a
validator node started with a keystore key, all as real files and real processes."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import nacl.secret
import pytest

from ledger import keystore
from ledger.genesis import devnet_keys
from ledger.keys import PrivateKey, address_hex, load_key, read_keystore, save_key
from ledger.keystore import MINIMUM, KeystoreError, WrongPassword
from tests.nodeproc import ROOT, NodeProcess, wait_until

PW = "correct horse battery staple"
GRADCHAIN = Path(sys.executable).parent / "gradchain"  # the console script pip installed


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def ks_file(tmp_path, key) -> Path:
    path = tmp_path / "key.json"
    save_key(key, path, PW, MINIMUM)
    return path


def test_the_sdk_exports_the_key_file_functions(tmp_path, key):
    """`from gradchain import ...` is the one import a user needs: the same functions."""
    import gradchain
    path = tmp_path / "sdk.json"
    gradchain.save_key(key, path, PW, MINIMUM)
    assert gradchain.load_key(path, PW).seed == key.seed
    with pytest.raises(gradchain.WrongPassword):
        gradchain.load_key(path, "not it")


def edited(path: Path, edit) -> Path:
    """A copy of the keystore at `path` with `edit(doc)` applied."""
    doc = json.loads(path.read_text())
    edit(doc)
    out = path.with_name("edited.json")
    out.write_text(json.dumps(doc))
    return out


def flip_hex(s: str) -> str:
    return ("1" if s[0] == "0" else "0") + s[1:]


# ---- the file --------------------------------------------------------------------------------

def test_round_trip_mode_and_limits_recorded(tmp_path, key, ks_file):
    assert stat.S_IMODE(ks_file.stat().st_mode) == 0o600
    doc = json.loads(ks_file.read_text())
    assert doc["type"] == "gradchain-keystore" and doc["version"] == 1
    assert doc["address"] == address_hex(key.address) and doc["public_key"] == key.public_key.hex()
    assert (doc["kdf"]["opslimit"], doc["kdf"]["memlimit"]) == (MINIMUM.opslimit, MINIMUM.memlimit)
    assert key.seed.hex() not in ks_file.read_text()
    for pw in (PW, PW.encode(), lambda p: PW):
        assert load_key(ks_file, pw).seed == key.seed
    asked = []
    assert load_key(ks_file, lambda p: asked.append(p) or PW).seed == key.seed and asked == [ks_file]
    ks = read_keystore(ks_file)  # no password needed to list it
    assert ks is not None and ks.address == key.address and ks.limits == MINIMUM
    other = tmp_path / "interactive.json"
    save_key(key, other, PW, keystore.INTERACTIVE)
    assert json.loads(other.read_text())["kdf"]["memlimit"] == argon2id.MEMLIMIT_INTERACTIVE
    assert load_key(other, PW).seed == key.seed
    with pytest.raises(FileExistsError):
        save_key(PrivateKey.generate(), ks_file, PW, MINIMUM)
    assert load_key(ks_file, PW).seed == key.seed
    two = tmp_path / "two.json"
    save_key(key, two, PW, MINIMUM)  # fresh salt and nonce each time
    assert json.loads(two.read_text())["kdf"]["salt"] != doc["kdf"]["salt"]


def test_the_documented_format_opens_with_plain_libsodium(key, ks_file):
    """What docs/rpc.md says, done by hand: argon2id(password, salt, opslimit, memlimit) -> 32
    bytes, secretbox open of ciphertext (tag || encrypted seed) under cipher.nonce."""
    doc = json.loads(ks_file.read_text())
    kdf, cipher = doc["kdf"], doc["cipher"]
    k = argon2id.kdf(32, PW.encode(), bytes.fromhex(kdf["salt"]), opslimit=kdf["opslimit"],
                     memlimit=kdf["memlimit"])
    seed = nacl.secret.SecretBox(k).decrypt(bytes.fromhex(cipher["ciphertext"]), bytes.fromhex(cipher["nonce"]))
    assert seed == key.seed and len(bytes.fromhex(cipher["ciphertext"])) == 48


def test_wrong_password_is_reported_without_the_seed(key, ks_file):
    for bad in ("wrong", "", PW + " ", PW.upper()):
        with pytest.raises(WrongPassword) as e:
            load_key(ks_file, bad)
        assert str(e.value) == f"wrong password for keystore {ks_file}"
    with pytest.raises(KeystoreError, match="encrypted keystore: give its password"):
        load_key(ks_file)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "salt", "opslimit", "memlimit"])
def test_altered_sealed_parts_fail_authentication(ks_file, field):
    def edit(doc):
        if field in ("salt", "opslimit", "memlimit"):
            doc["kdf"][field] = flip_hex(doc["kdf"][field]) if field == "salt" else \
                doc["kdf"][field] + (1024 if field == "memlimit" else 1)
        else:
            doc["cipher"][field] = flip_hex(doc["cipher"][field][::-1])[::-1]  # the last byte
    with pytest.raises(WrongPassword, match="wrong password for keystore"):
        load_key(edited(ks_file, edit), PW)


@pytest.mark.parametrize("field", ["address", "public_key"])
def test_altered_clear_parts_are_caught_after_opening(ks_file, field):
    other = PrivateKey.generate()
    value = address_hex(other.address) if field == "address" else other.public_key.hex()
    path = edited(ks_file, lambda doc: doc.__setitem__(field, value))
    with pytest.raises(KeystoreError, match="is corrupt: its address .* is not that of the key it holds"):
        load_key(path, PW)


def test_truncated_files_get_a_clear_error(key, ks_file):
    data = ks_file.read_bytes()
    for n in (0, 1, 40, len(data) // 2, len(data) - 3):
        cut = ks_file.with_name(f"cut{n}.json")
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError) as e:
            load_key(cut, PW)
        assert str(cut) in str(e.value) and key.seed.hex() not in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.__setitem__("version", 2), "has version 2; this gradchain reads version 1"),
    (lambda d: d.__setitem__("version", "1"), "has version '1'"),
    (lambda d: d.__setitem__("version", True), "has version True"),
    (lambda d: d.pop("version"), "has version None"),
    (lambda d: d["kdf"].__setitem__("name", "scrypt"), "kdf is not"),
    (lambda d: d["cipher"].__setitem__("name", "aes-gcm"), "cipher is not"),
    (lambda d: d["kdf"].__setitem__("opslimit", 0), "opslimit 0 is out of the range"),
    (lambda d: d["kdf"].__setitem__("opslimit", 17), "opslimit 17 is out of the range"),
    (lambda d: d["kdf"].__setitem__("opslimit", True), "opslimit True is out of the range"),
    (lambda d: d["kdf"].__setitem__("memlimit", 1 << 40), "memlimit 1099511627776 is out of the range"),
    (lambda d: d["kdf"].__setitem__("memlimit", 8191), "memlimit 8191 is out of the range"),
    (lambda d: d["kdf"].__setitem__("memlimit", 8193), "memlimit 8193 is not a whole number of KiB"),
    (lambda d: d["kdf"].__setitem__("memlimit", "8192"), "memlimit '8192' is out of the range"),
    (lambda d: d["kdf"].__setitem__("salt", "00"), "kdf.salt is not 16 bytes"),
    (lambda d: d["cipher"].__setitem__("ciphertext", d["cipher"]["ciphertext"][:-2]), "ciphertext is not 48 bytes"),
    (lambda d: d["cipher"].__setitem__("nonce", "zz" * 24), "cipher.nonce is not 24 bytes"),
    (lambda d: d.__setitem__("address", "0x1234"), "address is not 20 bytes"),
    (lambda d: d.__setitem__("kdf", [1, 2]), "kdf is not"),
])
def test_each_bad_header_gets_its_own_error(key, ks_file, edit, message):
    path = edited(ks_file, edit)
    t = time.monotonic()
    with pytest.raises(KeystoreError) as e:
        load_key(path, PW)
    assert time.monotonic() - t < 1  # refused before any derivation
    assert message in str(e.value) and str(path) in str(e.value) and key.seed.hex() not in str(e.value)
    assert not isinstance(e.value, WrongPassword)


def test_plaintext_files_still_load_without_a_password(tmp_path, key):
    from net.testnet import make_testnet
    plain = tmp_path / "plain.json"
    save_key(key, plain)
    assert json.loads(plain.read_text())["type"] == "ed25519" and stat.S_IMODE(plain.stat().st_mode) == 0o600
    asked = []
    assert load_key(plain, lambda p: asked.append(p) or PW).seed == key.seed and asked == []
    assert read_keystore(plain) is None
    _, nodes = make_testnet(1, tmp_path / "tn", 0, keys=[key])  # the key files `gradchain testnet` writes
    assert load_key(nodes[0].key_file).seed == key.seed


def test_password_sources(tmp_path, monkeypatch, ks_file):
    f = tmp_path / "pw.txt"
    monkeypatch.delenv(keystore.PASSWORD_ENV, raising=False)
    for body in (PW + "\n", PW + "\r\n", PW):
        f.write_text(body, newline="")
        assert keystore.ask_password(ks_file, f) == PW.encode()
    f.write_text(PW + "\n\n")  # only one newline is taken off
    assert keystore.ask_password(ks_file, f) == (PW + "\n").encode()
    monkeypatch.setenv(keystore.PASSWORD_ENV, "from env")
    assert keystore.ask_password(ks_file) == b"from env"
    f.write_text("from file")
    assert keystore.ask_password(ks_file, f) == b"from file"  # the file wins over the environment
    with pytest.raises(KeystoreError, match="cannot read password file"):
        keystore.ask_password(ks_file, tmp_path / "missing")
    f.write_text("\n")
    with pytest.raises(KeystoreError, match="empty password"):
        keystore.ask_password(ks_file, f)
    monkeypatch.setenv(keystore.PASSWORD_ENV, "")  # empty means unset; pytest's stdin is no terminal
    with pytest.raises(KeystoreError, match="no terminal to ask it on: set GRADCHAIN_PASSWORD"):
        keystore.ask_password(ks_file)


# ---- the console script ----------------------------------------------------------------------

def gradchain(*args: str, env: dict | None = None, cwd: Path | None = None, ok: bool = True
              ) -> subprocess.CompletedProcess:
    """Run the installed `gradchain` script (stdin not a terminal); with ok, expect success, else
    the CLI's error: exit 1 and one `error:` line."""
    full = {k: v for k, v in os.environ.items() if k not in ("GRADCHAIN_RPC", keystore.PASSWORD_ENV)}
    full.update(env or {})
    p = subprocess.run([str(GRADCHAIN), *args], cwd=cwd or ROOT, env=full, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr
    if ok:
        assert p.returncode == 0, p.stderr
    else:
        assert p.returncode == 1 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p
        assert p.stderr.startswith("error: ")
    return p


def test_cli_keys_new_writes_a_keystore_and_show_reads_it(tmp_path):
    env = {keystore.PASSWORD_ENV: PW}
    made = json.loads(gradchain("keys", "new", "--kdf-limits", "min", "--json", env=env, cwd=tmp_path).stdout)
    path = tmp_path / "key.json"
    assert made["encrypted"] is True and made["file"] == "key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["type"] == "gradchain-keystore" and doc["address"] == made["address"]
    assert (doc["kdf"]["opslimit"], doc["kdf"]["memlimit"]) == (1, 8192)
    seed = load_key(path, PW).seed.hex()

    shown = gradchain("keys", "show", str(path)).stdout  # no password: the address is in clear
    assert made["address"] in shown and "encrypted keystore (argon2id, opslimit 1, memlimit 8 KiB)" in shown
    pwf = tmp_path / "pw"
    pwf.write_text(PW + "\n")
    priv = json.loads(gradchain("keys", "show", str(path), "--private", "--password-file", str(pwf), "--json").stdout)
    assert priv["private_key"] == seed
    assert json.loads(gradchain("--json", "keys", "show", str(path), "--private", env=env).stdout)["private_key"] == seed

    err = gradchain("keys", "show", str(path), "--private", env={keystore.PASSWORD_ENV: "nope"}, ok=False).stderr
    assert err == f"error: wrong password for keystore {path}\n" and seed not in err
    err = gradchain("keys", "show", str(path), "--private", ok=False).stderr
    assert "no terminal to ask it on: set GRADCHAIN_PASSWORD (or, with the gradchain command, give " \
           "--password-file FILE)" in err
    assert "no password for the new keystore" in gradchain("keys", "new", "--out", str(tmp_path / "b.json"),
                                                          ok=False).stderr
    assert not (tmp_path / "b.json").exists()
    assert "already exists" in gradchain("keys", "new", env=env, cwd=tmp_path, ok=False).stderr
    cut = tmp_path / "cut.json"
    cut.write_text(path.read_text()[:100])
    assert "cut.json" in gradchain("keys", "show", str(cut), ok=False).stderr
    v2 = edited(path, lambda d: d.__setitem__("version", 2))
    assert "has version 2" in gradchain("keys", "show", str(v2), ok=False).stderr


def on_a_terminal(args: list[str], answers: list[str], cwd: Path) -> tuple[int, str]:
    """Run the `gradchain` script with a pseudo-terminal as its controlling terminal, stdin and
    output; each time a password prompt shows, type the next answer.  (exit status, output)."""
    import pty
    import select
    import termios
    master, slave = pty.openpty()

    def controlling_tty() -> None:  # in the child: a new session whose terminal is the pty
        os.setsid()
        import fcntl
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    full = {k: v for k, v in os.environ.items() if k not in ("GRADCHAIN_RPC", keystore.PASSWORD_ENV)}
    p = subprocess.Popen([str(GRADCHAIN), *args], cwd=cwd, env=full, stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=controlling_tty)
    os.close(slave)
    out, pending, deadline = b"", list(answers), time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                answered = len(answers) - len(pending)
                if pending and out.rstrip().endswith(b":") and out.count(b"assword") > answered:  # a new prompt
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif p.poll() is not None:
                break
        return p.wait(timeout=10), out.decode(errors="replace")
    finally:
        p.kill()
        os.close(master)


def test_the_password_prompt_on_a_terminal(tmp_path):
    """With no password file and no $GRADCHAIN_PASSWORD the CLI asks on the terminal, without
    echo: twice for a new keystore (two different entries write nothing), once to open one."""
    rc, out = on_a_terminal(["keys", "new", "--out", "k.json", "--kdf-limits", "min"], [PW, PW], tmp_path)
    assert rc == 0, out
    assert "Password for new keystore k.json:" in out and "Repeat the password:" in out
    assert PW not in out  # not echoed
    key = load_key(tmp_path / "k.json", PW)
    rc, out = on_a_terminal(["keys", "new", "--out", "k2.json", "--kdf-limits", "min"], [PW, PW + "!"], tmp_path)
    assert rc == 1 and "the two passwords differ; nothing written" in out and not (tmp_path / "k2.json").exists()
    rc, out = on_a_terminal(["keys", "show", "k.json", "--private"], [PW], tmp_path)
    assert rc == 0 and "Password for keystore k.json:" in out and key.seed.hex() in out, out
    rc, out = on_a_terminal(["keys", "show", "k.json", "--private"], ["wrong"], tmp_path)
    assert rc == 1 and "wrong password for keystore k.json" in out and key.seed.hex() not in out


def test_cli_insecure_plaintext(tmp_path):
    assert "TESTS AND DEVNETS ONLY" in gradchain("keys", "new", "--help").stdout
    out = gradchain("keys", "new", "--out", str(tmp_path / "p.json"), "--insecure-plaintext").stdout
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["type"] == "ed25519" and "plaintext (insecure)" in out
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o600
    shown = json.loads(gradchain("keys", "show", str(tmp_path / "p.json"), "--private", "--json").stdout)
    assert shown["private_key"] == doc["seed"] and shown["encrypted"] is False


# ---- a validator node with a keystore key -----------------------------------------------------

def test_a_node_started_with_a_keystore_produces_blocks_and_the_cli_signs_with_one(tmp_path):
    from net.testnet import make_testnet
    validator = PrivateKey.generate()
    gpath, (nd,) = make_testnet(1, tmp_path / "tn", int(time.time() * 1000), keys=[validator])
    ks = tmp_path / "validator.json"
    save_key(validator, ks, PW, MINIMUM)
    node_args = [sys.executable, str(ROOT / "node.py"), "--data-dir", str(nd.data_dir), "--genesis", str(gpath),
                 "--key", str(ks), "--quiet", "--rpc-port", "0"]
    for env, why in (({keystore.PASSWORD_ENV: "nope"}, f"error: wrong password for keystore {ks}"),
                     ({}, "no terminal to ask it on: set GRADCHAIN_PASSWORD")):
        full = {k: v for k, v in os.environ.items() if k != keystore.PASSWORD_ENV} | env
        p = subprocess.run(node_args, cwd=ROOT, env=full, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 1 and why in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert validator.seed.hex() not in p.stderr + p.stdout

    node = NodeProcess(nd.data_dir, "--genesis", str(gpath), "--key", str(ks), block_time=0.2,
                       env={keystore.PASSWORD_ENV: PW}).start()
    try:
        with node.client() as c:
            wait_until(lambda: c.status()["height"] >= 2, 20, "two blocks")
            assert c.status()["validator"] == address_hex(validator.address)
        # the CLI signs with a keystore too: fund it, then send from it
        user = tmp_path / "user.json"
        save_key(user_key := PrivateKey.generate(), user, PW, MINIMUM)
        gradchain("--rpc", node.url, "transfer", "--key", "dev:0", "--to", address_hex(user_key.address),
                  "--amount", "2")
        pwf = tmp_path / "pw"
        pwf.write_text(PW)
        dev1 = address_hex(devnet_keys(2)[1].address)
        r = json.loads(gradchain("--rpc", node.url, "--json", "transfer", "--key", str(user), "--to", dev1,
                                 "--amount", "1", "--password-file", str(pwf)).stdout)
        assert r["receipt"]["status"] == "success", r
        with node.client() as c:
            assert c.account(user_key.address).nonce == 1
        err = gradchain("--rpc", node.url, "transfer", "--key", str(user), "--to", dev1, "--amount", "1",
                        env={keystore.PASSWORD_ENV: "nope"}, ok=False).stderr
        assert f"wrong password for keystore {user}" in err
    finally:
        node.kill()
