"""Progress where work is long (gradchain/progress.py), in real processes: a bar with "\\r"
updates on a pseudo-terminal, plain lines (no "\\r", no escape codes, never one per item) in
a pipe or a log file.  Block sync of a node catching up 300 blocks, `gradchain testnet
--start`, and a worker's training (the worker and verify-job commands on a tiny job)."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path


from gradchain import Client
from ledger.keys import PrivateKey
from ledger.votes import PREVOTE, make_commit
from tests.nodeproc import ROOT, NodeProcess, distinct_free_ports, wait_until

ESCAPE = re.compile(r"\x1b\[")


def redrawn(text: str) -> bool:
    """Whether a line was drawn over in place: a carriage return that is not the terminal's
    own end of line (a pty writes "\\n" as "\\r\\n")."""
    return re.search(r"\r(?!\n)", text) is not None


def plain(text: str) -> None:
    """Output for a pipe or a file: lines only."""
    assert "\r" not in text and not ESCAPE.search(text), repr(text[-400:])


class Terminal:
    """A child process whose stdout and stderr are a pseudo-terminal; read with a deadline."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: Path = ROOT,
                 size: tuple[int, int] | None = (24, 100)):
        self.master, slave = pty.openpty()
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                                     start_new_session=True)
        os.close(slave)
        self.text = ""

    def read_until(self, pred, timeout: float) -> str:
        """Read what the child wrote until pred(all text so far) or the deadline or its exit."""
        deadline = time.monotonic() + timeout
        while not pred(self.text) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace")
            elif self.proc.poll() is not None:
                break
        return self.text

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


# ---- the module itself, in a child process --------------------------------------------------

SCRIPT = """
import sys, time
from gradchain.progress import Progress
with Progress("work", 1000, "item", sys.stderr) as p:
    for i in range(1001):
        p.update(i, loss=f"{1 / (i + 1):.3f}")
        time.sleep(0.0005)
print("done", flush=True)
"""


def test_a_pipe_gets_a_line_per_tenth_and_a_terminal_a_bar():
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "done\n"  # stdout is untouched: progress is on stderr
    plain(p.stderr)
    lines = p.stderr.splitlines()
    assert 10 <= len(lines) <= 12, lines  # 0%, 10%, ..., 100%: never a line per item
    assert lines[0] == "work: item 0/1000 (0%), loss 1.000"
    assert re.fullmatch(r"work: item 1000/1000 \(100%\), loss 0\.001, [\d,.]+ items/s", lines[-1]), lines[-1]

    t = Terminal([sys.executable, "-c", SCRIPT])
    try:
        out = t.read_until(lambda s: "done" in s, 30)
    finally:
        t.close()
    assert "done" in out, out
    assert redrawn(out) and "1000/1000" in out and "loss=0.001" in out, repr(out)
    assert "item 500/1000 (50%)" not in out  # the bar, not the plain lines

    t = Terminal([sys.executable, "-c", SCRIPT], size=None)  # a terminal that does not say its width
    try:
        out = t.read_until(lambda s: "done" in s, 30)
    finally:
        t.close()
    assert redrawn(out) and "1000/1000" in out, repr(out)


# ---- block sync ------------------------------------------------------------------------------

KEYS = [PrivateKey.from_label(f"progress test validator {i}") for i in range(4)]
BLOCKS = 300


def chain_of(tmp_path: Path) -> tuple[Path, list]:
    """A 4-validator testnet whose validator 0 holds BLOCKS finalised blocks (built and signed
    in-process by three of the keys), and validator 1 nothing yet."""
    from net.testnet import make_testnet
    from node import Node, NodeConfig
    gpath, tn = make_testnet(4, tmp_path / "tn", int(time.time() * 1000) - BLOCKS * 1000, keys=KEYS)
    node = Node(NodeConfig(data_dir=tn[0].data_dir, genesis=gpath, key=tn[0].key_file, verify_workers=0, quiet=True))
    try:
        chain = node.chain
        for _ in range(BLOCKS):
            tip = chain.tip
            last = chain.store.commit(tip.height) if tip.height else None
            prop = chain.build_block([], KEYS[tip.height % 4].address, tip.time_ms + 1000, last)
            chain.commit_block(prop.block, make_commit(KEYS[:3], chain.chain_id, tip.height + 1, 0, prop.block.hash),
                               prop.output)
    finally:
        node.close()
    # validator 1 signed once (at height 1) before: not a fresh signer, so it starts consensus
    # once caught up instead of waiting for a block newer than itself (net/sync.py)
    from consensus.signer import Signer
    with Signer(KEYS[1], "gradchain-testnet", tn[1].data_dir / "priv_validator_state") as s:
        s.sign_vote(PREVOTE, 1, 0, None)
    return gpath, tn


def sync_pair(tmp_path: Path) -> tuple[NodeProcess, list[str]]:
    """Validator 0 running (its chain served by block sync), and node.py's argv for validator 1
    (only each other as peers: 2 of 4 validators, so no new block is made meanwhile)."""
    gpath, tn = chain_of(tmp_path)
    p2p = distinct_free_ports(2)
    peer = [f"{KEYS[j].public_key.hex()}@127.0.0.1:{p2p[j]}" for j in range(2)]
    src = NodeProcess(tn[0].data_dir, "--genesis", str(gpath), "--key", str(tn[0].key_file), "--p2p-port",
                      str(p2p[0]), "--peers", peer[1], "--verify-workers", "0").start()
    argv = [sys.executable, str(ROOT / "node.py"), "--data-dir", str(tn[1].data_dir), "--genesis", str(gpath),
            "--key", str(tn[1].key_file), "--p2p-port", str(p2p[1]), "--peers", peer[0], "--verify-workers", "0",
            "--rpc-port", str(distinct_free_ports(1)[0])]
    return src, argv


def test_a_node_catching_up_shows_height_of_target_and_rate_in_lines_in_a_log(tmp_path):
    src, argv = sync_pair(tmp_path)
    log = tmp_path / "syncing.log"
    try:
        with open(log, "wb") as f:
            p = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            wait_until(lambda: "caught up at height" in log.read_text(), 60, "the node to catch up")
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    finally:
        src.kill()
    text = log.read_text()
    plain(text)
    lines = [ln for ln in text.splitlines() if "sync: block" in ln]
    assert 2 <= len(lines) <= 12, lines
    assert all(re.match(r"sync: block \d+/300 \(\d+%\), peers 1", ln) for ln in lines), lines
    assert re.search(r"sync: block 300/300 \(100%\), peers 1, [\d,.]+ blocks/s$", lines[-1]), lines
    assert f"caught up at height {BLOCKS}" in text
    # no line per block while catching up: neither the node's block lines nor sync's
    assert not re.search(r"block \d+ +0 txs", text) and "synced height" not in text, text[-2000:]


def test_a_node_catching_up_on_a_terminal_draws_a_bar(tmp_path):
    src, argv = sync_pair(tmp_path)
    try:
        t = Terminal(argv)
        try:
            out = t.read_until(lambda s: "caught up at height" in s and "300/300" in s, 60)
        finally:
            t.close()
    finally:
        src.kill()
    assert "caught up at height 300" in out, out[-2000:]
    bar = out[out.index("sync:"):]
    assert redrawn(bar) and "300/300" in bar and "block/s" in bar, repr(bar[-600:])
    assert "sync: block" not in out  # the bar, not the plain lines


# ---- a worker's training ---------------------------------------------------------------------

def test_a_worker_draws_its_training_on_a_terminal_and_verify_job_prints_lines_to_a_pipe(tmp_path):
    """The tiny job of tests/test_jobs_node.py (8 segments of 3 steps): `gradchain worker` on a
    pseudo-terminal draws a bar of checkpoints with step and loss; `verify-job --json` in a pipe
    keeps stdout JSON and writes plain lines to stderr; `--quiet` writes nothing there."""
    from gradchain.jobs import post_job
    from tests.test_jobs_node import REQ, data, terms

    node = NodeProcess(tmp_path / "node", block_time=0.1).start()
    try:
        c = node.client()
        x, y = data()
        # a window of 80 blocks (8 s): time for both verifiers to re-run the job
        jid = post_job(c, REQ, dataclasses.replace(terms(c.put_blob((x, y), REQ, chunk_bytes=4096)), window=80))
        cli = [sys.executable, "-m", "gradchain.cli", "--rpc", node.url]
        worker = Terminal(cli + ["worker", str(jid), "--key", "dev:1", "--workdir", str(tmp_path / "w"),
                                 "--timeout", "120"])
        try:  # the verifiers wait for the result, then train
            q = subprocess.Popen(cli + ["verify-job", str(jid), "--key", "dev:3", "--workdir", str(tmp_path / "q"),
                                        "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            v = subprocess.run(cli + ["--json", "verify-job", str(jid), "--key", "dev:2", "--workdir",
                                      str(tmp_path / "v")], cwd=ROOT, capture_output=True, text=True, timeout=90)
            q_out, q_err = q.communicate(timeout=90)
            assert v.returncode == 0, v.stderr
            assert json.loads(v.stdout)["matches"] is True
            plain(v.stderr)
            lines = [ln for ln in v.stderr.splitlines() if ln.startswith(f"job {jid} training: ")]
            assert len(lines) == 9, v.stderr  # checkpoints 0..8, each an eighth of the work
            assert re.match(rf"job {jid} training: checkpoint 8/8 \(100%\), step 24/24, loss \d+\.\d{{4}}, ",
                            lines[-1]), lines
            assert q.returncode == 0 and q_err == "" and "matches" in q_out, q_out + q_err
            out = worker.read_until(lambda s: f"job {jid}: final" in s, 90)
        finally:
            worker.close()
    finally:
        node.stop()
    assert f"job {jid}: final" in out, out[-2000:]
    bar = out[out.index(f"job {jid} training"):]
    assert redrawn(bar) and "8/8" in bar and "step=24/24" in bar and "loss=" in bar, repr(bar[:800])
    assert f"job {jid} training: checkpoint" not in out  # the bar, not the lines


# ---- gradchain testnet --start ---------------------------------------------------------------

def free_base(n: int) -> int:
    """A port p with p .. p + n - 1 all free on loopback now."""
    import socket
    for _ in range(50):
        base = distinct_free_ports(1)[0]
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def stop_pids(out: Path) -> None:
    for f in out.glob("node*.pid"):
        try:
            os.kill(int(f.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_argv(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gradchain.cli", "testnet", "-n", "2", "--out", str(out), "--rpc-port",
            str(free_base(2)), "--p2p-port", str(free_base(2)), "--start", "--start-timeout", "40", *extra]


def test_testnet_start_shows_validators_ready_in_lines_keeps_json_on_stdout_and_quiet_is_silent(tmp_path):
    out = tmp_path / "tn"
    try:
        p = subprocess.run(start_argv(out) + ["--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        started = json.loads(p.stdout)
        assert [n["index"] for n in started["nodes"]] == [0, 1] and all(n["pid"] > 0 for n in started["nodes"])
        for n in started["nodes"]:
            assert (out / f"node{n['index']}.pid").read_text() == f"{n['pid']}\n"
            with Client(n["rpc_url"]) as c:
                assert c.status()["height"] >= 1
        plain(p.stderr)
        lines = p.stderr.splitlines()
        assert lines and all(re.fullmatch(r"testnet start: validator [0-2]/2 \(\d+%\), height \d+", ln)
                             for ln in lines), lines
        assert re.fullmatch(r"testnet start: validator 2/2 \(100%\), height [1-9]\d*", lines[-1]), lines
        stop_pids(out)
        time.sleep(0.5)
        # a directory that holds a testnet is started as it is; --quiet: nothing on stderr
        q = subprocess.run([sys.executable, "-m", "gradchain.cli", "testnet", "--out", str(out), "--start", "--quiet"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert q.returncode == 0 and q.stderr == "", q.stderr
        assert "Started 2 validators" in q.stdout and "Stop them with: kill" in q.stdout, q.stdout
    finally:
        stop_pids(out)


def test_testnet_start_on_a_terminal_draws_a_bar(tmp_path):
    out = tmp_path / "tn"
    t = Terminal(start_argv(out), cwd=tmp_path)
    try:
        text = t.read_until(lambda s: "Stop them with" in s, 60)
    finally:
        t.close()
        stop_pids(out)
    assert "Started 2 validators" in text, text
    bar = text[text.index("testnet start"):]
    assert redrawn(bar) and "2/2" in bar and "height=" in bar, repr(bar[:600])
    assert "testnet start: validator" not in text  # the bar, not the lines
