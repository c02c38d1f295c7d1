"""`gradchain testnet -n 4 --out DIR`: files for N local validators of equal stake.

DIR/genesis.json       N validators (TESTNET_STAKE each), the devnet accounts funded (use dev:N keys),
                       and every validator's p2p address (`peers`: a node started without
                       --peers and --p2p-port takes them from there)
DIR/nodeI/key.json     validator I's key (mode 0600); it is also its p2p node key
DIR/start.sh           starts every node in the background, logs to DIR/nodeI.log
DIR/testnet.json       per node: data dir, key, ports, the --peers flag (for tools and tests)

Node I listens for RPC on rpc_base+I and for p2p on p2p_base+I, and is given every other
node as `KEYHEX@127.0.0.1:port`, so the links are authenticated to the expected keys.
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ledger.genesis import COIN, DEVNET_BALANCE, Genesis, devnet_keys, write_genesis
from ledger.validators import Validator, ValidatorSet
from ledger.keys import PrivateKey, save_key
from ledger.params import ChainParams

TESTNET_CHAIN_ID = "gradchain-testnet"
ROOT = Path(__file__).resolve().parent.parent
# Each validator's stake: as much as one devnet account holds, so a dev account that bonds
# what it has gets at most 1/(N+1) of the power, and the README's 1,000 GRAD bond a rounding
# error (with a stake of one base unit it took nearly all of it and the chain stopped).
TESTNET_STAKE = 1_000_000 * COIN


@dataclass(frozen=True)
class TestnetNode:
    index: int
    data_dir: Path
    key_file: Path
    public_key: bytes
    rpc_port: int
    p2p_port: int
    peers: tuple[str, ...]

    def args(self, genesis: Path) -> list[str]:
        """node.py's flags for this validator."""
        return ["--data-dir", str(self.data_dir), "--genesis", str(genesis), "--key", str(self.key_file),
                "--rpc-port", str(self.rpc_port), "--p2p-port", str(self.p2p_port),
                "--peers", ",".join(self.peers)]


def make_testnet(n: int, out: Path, time_ms: int, rpc_base: int = 8545, p2p_base: int = 26656,
                 host: str = "127.0.0.1", keys: list[PrivateKey] | None = None) -> tuple[Path, list[TestnetNode]]:
    """Write genesis, keys, start.sh and testnet.json under `out` (which must not hold a
    testnet yet); (genesis path, nodes).  `keys` fixes the validator keys (tests)."""
    if n < 1:
        raise ValueError("a testnet needs at least one validator")
    out = Path(out).absolute()  # start.sh cds to the checkout: relative paths would point elsewhere
    if (out / "genesis.json").exists():
        raise FileExistsError(f"{out} already holds a testnet; choose another --out")
    keys = keys or [PrivateKey.generate() for _ in range(n)]
    if len(keys) != n:
        raise ValueError("one key per validator")
    vset = ValidatorSet(tuple(Validator(k.public_key, TESTNET_STAKE) for k in keys))
    everyone = tuple(f"{k.public_key.hex()}@{host}:{p2p_base + j}" for j, k in enumerate(keys))
    genesis = Genesis(TESTNET_CHAIN_ID, time_ms, ChainParams(), vset,
                      tuple(sorted((k.address, DEVNET_BALANCE) for k in devnet_keys())), everyone)
    out.mkdir(parents=True, exist_ok=True)
    gpath = out / "genesis.json"
    write_genesis(genesis, gpath)
    nodes = []
    for i, k in enumerate(keys):
        kfile = out / f"node{i}" / "key.json"
        save_key(k, kfile)
        peers = everyone[:i] + everyone[i + 1:]
        nodes.append(TestnetNode(i, out / f"node{i}", kfile, k.public_key, rpc_base + i, p2p_base + i, peers))
    lines = ["#!/bin/sh", f"# {n} gradchain validators; stop them with: kill $(cat {shlex.quote(str(out))}/*.pid)",
             f"cd {shlex.quote(str(ROOT))}"]
    for nd in nodes:
        cmd = " ".join(shlex.quote(a) for a in [sys.executable, "node.py", *nd.args(gpath)])
        log = shlex.quote(str(out / f"node{nd.index}.log"))
        pid = shlex.quote(str(out / f"node{nd.index}.pid"))
        lines.append(f"{cmd} > {log} 2>&1 &\necho $! > {pid}")
    script = out / "start.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    (out / "testnet.json").write_text(json.dumps({
        "chain_id": TESTNET_CHAIN_ID, "genesis": str(gpath),
        "nodes": [{"index": nd.index, "data_dir": str(nd.data_dir), "key": str(nd.key_file),
                   "public_key": nd.public_key.hex(), "rpc_url": f"http://{host}:{nd.rpc_port}",
                   "p2p_port": nd.p2p_port, "peers": ",".join(nd.peers)} for nd in nodes]}, indent=2) + "\n")
    return gpath, nodes
