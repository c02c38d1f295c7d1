"""Testnet: `testnet -n N`, the genesis, keys and start script of N local validators
(written by net/testnet.py; neither imports consensus, see tests/test_layering.py)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json
from gradchain.client import Client
from gradchain.errors import ConnectionFailed, RpcError
from gradchain.progress import Progress


def _node_command() -> list[str]:
    """How to run node.py from here: the module the package installs (a checkout or a wheel)."""
    spec = importlib.util.find_spec("node")
    if spec is None or spec.origin is None:
        raise CliError("cannot find node.py (install gradchain, or run from its checkout)")
    return [sys.executable, spec.origin]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _height(url: str) -> int | None:
    """The node's height, or None while its RPC does not answer yet."""
    try:
        with Client(url, timeout=1) as c:
            return c.status()["height"]
    except (ConnectionFailed, RpcError, OSError):
        return None


def start_testnet(out: Path, quiet: bool, timeout: float) -> list[dict]:
    """Start every validator of the testnet in `out` in the background (logs in out/nodeI.log,
    pids in out/nodeI.pid, as start.sh does) and wait until each answers RPC and all have
    finalised block 1, showing validators ready of N on stderr (gradchain/progress.py);
    CliError, the processes stopped, if one exits or they are not ready within `timeout` s."""
    info = json.loads((out / "testnet.json").read_text())
    nodes, gpath = info["nodes"], info["genesis"]
    command, procs = _node_command(), []
    try:
        for nd in nodes:
            port = nd["rpc_url"].rsplit(":", 1)[1]
            argv = ["--data-dir", nd["data_dir"], "--genesis", gpath, "--key", nd["key"], "--rpc-port", port,
                    "--p2p-port", str(nd["p2p_port"]), "--peers", nd["peers"]]
            with open(out / f"node{nd['index']}.log", "ab") as log:
                procs.append(subprocess.Popen(command + argv, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              env=dict(os.environ, PYTHONUNBUFFERED="1")))
            (out / f"node{nd['index']}.pid").write_text(f"{procs[-1].pid}\n")
        deadline = time.monotonic() + timeout
        with Progress("testnet start", len(nodes), "validator", None if quiet else sys.stderr,
                      rate=False) as shown:
            heights: list[int | None] = [None] * len(nodes)
            while True:
                for i, (nd, p) in enumerate(zip(nodes, procs)):
                    if p.poll() is not None:
                        tail = (out / f"node{i}.log").read_text(errors="replace").strip().splitlines()[-3:]
                        raise CliError(f"validator {i} exited with status {p.returncode}: " + " | ".join(tail))
                    heights[i] = _height(nd["rpc_url"])
                ready = [h for h in heights if h is not None]
                shown.update(len(ready), height=min(ready, default=0))
                if len(ready) == len(nodes) and min(ready) >= 1:
                    shown.close(height=min(ready))
                    break
                if time.monotonic() > deadline:
                    what = "answering RPC" if len(ready) < len(nodes) else "finalising block 1"
                    raise CliError(f"the testnet's validators were not {what} within {timeout:g} s "
                                   f"(their logs: {out}/node*.log)")
                time.sleep(0.2)
    except BaseException:
        _stop(procs)
        raise
    return [dict(nd, pid=p.pid) for nd, p in zip(nodes, procs)]


def cmd_testnet(args: argparse.Namespace) -> int:
    from net.testnet import make_testnet
    out = Path(args.out)
    if args.start and (out / "testnet.json").is_file():  # start a testnet written before, as it is
        return _started(args, start_testnet(out, args.quiet, args.start_timeout))
    if not 1 <= args.n <= 100:
        raise CliError("-n must be between 1 and 100")
    for flag, base in (("--rpc-port", args.rpc_port), ("--p2p-port", args.p2p_port)):
        if not (0 < base and base + args.n <= 65536):
            raise CliError(f"{flag} {base}: the ports of all {args.n} nodes must lie in 1..65535")
    try:
        gpath, nodes = make_testnet(args.n, Path(args.out), int(time.time() * 1000), args.rpc_port, args.p2p_port)
    except (FileExistsError, ValueError) as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write the testnet to {args.out}: {e.strerror or e}") from None
    if args.start:
        return _started(args, start_testnet(out, args.quiet, args.start_timeout))
    if args.json:
        _emit_json(json.loads((Path(args.out) / "testnet.json").read_text()))
        return 0
    print(f"Wrote a {args.n}-validator testnet to {args.out} (genesis {gpath}).")
    print(f"Start every node:  sh {Path(args.out) / 'start.sh'}   (or one by one:)")
    for nd in nodes:
        print("  python node.py " + " ".join(nd.args(gpath)))
    print(f"RPC of node I: http://127.0.0.1:{args.rpc_port}+I; transfers with dev:N keys work as on the devnet.")
    return 0


def _started(args: argparse.Namespace, nodes: list[dict]) -> int:
    out = Path(args.out)
    if args.json:
        _emit_json(json.loads((out / "testnet.json").read_text()) | {"nodes": nodes})
        return 0
    print(f"Started {len(nodes)} validators of {out}; each has finalised block 1.")
    for nd in nodes:
        log = out / f"node{nd['index']}.log"
        print(f"  node {nd['index']}: {nd['rpc_url']}  pid {nd['pid']}  log {log}")
    print(f"Stop them with: kill $(cat {out}/*.pid)")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`testnet`."""
    tn = sub.add_parser("testnet", help="write genesis, keys and a start script for N local validators",
                        parents=[common])
    tn.add_argument("-n", type=int, default=4, help="number of validators, 1,000,000 GRAD of stake each (default 4)")
    tn.add_argument("--out", metavar="DIR", default="testnet", help="output directory (default ./testnet)")
    tn.add_argument("--rpc-port", type=int, default=8545, help="RPC port of node 0; node I uses it + I")
    tn.add_argument("--p2p-port", type=int, default=26656, help="p2p port of node 0; node I uses it + I")
    tn.add_argument("--start", action="store_true",
                    help="also start every validator in the background (logs and pids in DIR) and wait until "
                         "all have finalised block 1; a DIR that holds a testnet already is started as it is")
    tn.add_argument("--start-timeout", type=float, default=60, metavar="S",
                    help="seconds --start waits for the validators (default 60)")
    tn.add_argument("--quiet", action="store_true", help="with --start: no progress on stderr")
    tn.set_defaults(func=cmd_testnet)
