"""ledger/files.py: durable writes leave the old file or the new one, never a torn or missing
one, and a key file is never overwritten."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.files import create_durably, write_durably
from ledger.keys import PrivateKey, load_key, save_key

ROOT = Path(__file__).resolve().parent.parent


def test_write_durably_replaces_the_file_whole(tmp_path):
    p = tmp_path / "state"
    write_durably(p, b"old", 0o600)
    write_durably(p, b"new" * 1000, 0o600)
    assert p.read_bytes() == b"new" * 1000
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not p.with_name("state.tmp").exists()


def test_a_process_killed_before_the_rename_leaves_the_old_file(tmp_path):
    """SIGKILL between the temp file's fsync and the rename (the signer's crash hook): the
    file still holds the old bytes, whole."""
    p = tmp_path / "state"
    write_durably(p, b"old")
    code = ("import os, signal, sys; from ledger.files import write_durably; "
            "write_durably(sys.argv[1], b'new' * 100000, "
            "before_replace=lambda: os.kill(os.getpid(), signal.SIGKILL))")
    r = subprocess.run([sys.executable, "-c", code, str(p)], cwd=ROOT, timeout=60)
    assert r.returncode == -9
    assert p.read_bytes() == b"old"


def test_create_durably_never_overwrites(tmp_path):
    p = tmp_path / "key.json"
    create_durably(p, b"first")
    with pytest.raises(FileExistsError):
        create_durably(p, b"second")
    assert p.read_bytes() == b"first"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["key.json"]  # no temp file left either way


def test_save_key_round_trips_and_refuses_an_existing_key(tmp_path):
    k1, k2 = PrivateKey.from_label("files a"), PrivateKey.from_label("files b")
    p = tmp_path / "keys" / "validator.json"
    save_key(k1, p)
    with pytest.raises(FileExistsError):
        save_key(k2, p)
    assert load_key(p).public_key == k1.public_key
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
