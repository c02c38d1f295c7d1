"""Real node processes for tests: start `node.py` on a free loopback port, wait until its
RPC answers, kill or stop it, start it again on the same data dir."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gradchain import Client, ConnectionFailed

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    def __init__(self, data_dir: Path, *extra: str, block_time: float = 0.5, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.extra = list(extra)
        self.block_time = block_time
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.url)

    def start(self, timeout: float = 30) -> "NodeProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "node.py"), "--data-dir", str(self.data_dir), "--rpc-port",
             str(self.port), "--block-time", str(self.block_time), "--quiet", *self.extra],
            cwd=ROOT, env=env, stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        with Client(self.url, timeout=2) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log.read_text()}")
                try:
                    c.status()
                    return self
                except (ConnectionFailed, OSError):
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError(f"node did not answer within {timeout} s:\n{self.log.read_text()}")
                    time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the node and every process it started (its signature workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 15) -> int:
        """Ctrl-C: SIGINT, wait for a clean exit, return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.kill()
        self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def heights(nodes: list[NodeProcess]) -> list[int]:
    out = []
    for n in nodes:
        with n.client() as c:
            out.append(c.status()["height"])
    return out


def check_agreement(nodes: list[NodeProcess]) -> int:
    """Same block hash at every height every node has; the highest height checked."""
    clients = [n.client() for n in nodes]
    try:
        tops = [c.status()["height"] for c in clients]
        for h in range(1, max(tops) + 1):
            hashes = {c.block(h)["header"]["hash"] for c, top in zip(clients, tops) if top >= h}
            assert len(hashes) == 1, f"nodes disagree at height {h}: {hashes}"
        return max(tops)
    finally:
        for c in clients:
            c.close()


def distinct_free_ports(n: int) -> list[int]:
    """n free loopback ports, all different (each socket is held until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def validator_processes(out: Path, keys: list, extra: dict[int, list[str]] | None = None,
                      block_time: float = 0.2, accounts: tuple[tuple[bytes, int], ...] = (),
                      verify_workers: int = 0) -> list[NodeProcess]:
    """One NodeProcess per key (not started): the files of `gradchain testnet` under `out`,
    free loopback ports, each node given the others as peers; extra[i] adds flags to node
    i (fault schedules, byzantine modes); `accounts` (address, balance) are funded too."""
    import dataclasses
    import json

    from ledger.genesis import load_genesis
    from net.testnet import make_testnet
    n = len(keys)
    gpath, tn = make_testnet(n, out, int(time.time() * 1000), keys=keys)
    if accounts:
        g = load_genesis(gpath)
        g = dataclasses.replace(g, accounts=tuple(sorted((dict(g.accounts) | dict(accounts)).items())))
        gpath.write_text(json.dumps(g.to_json(), indent=2) + "\n")
    ports = distinct_free_ports(2 * n)
    p2p, rpc = ports[:n], ports[n:]
    nodes = []
    for nd in tn:
        peers = ",".join(f"{keys[j].public_key.hex()}@127.0.0.1:{p2p[j]}" for j in range(n) if j != nd.index)
        nodes.append(NodeProcess(nd.data_dir, "--genesis", str(gpath), "--key", str(nd.key_file),
                                 "--p2p-port", str(p2p[nd.index]), "--peers", peers,
                                 "--verify-workers", str(verify_workers),
                                 *(extra or {}).get(nd.index, []), block_time=block_time))
        nodes[-1].port = rpc[nd.index]
    return nodes
