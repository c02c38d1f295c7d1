"""Testnet: `testnet -n N`, the genesis, keys and start script of N local validators
(written by net/testnet.py; neither imports consensus, see tests/test_layering.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json


def cmd_testnet(args: argparse.Namespace) -> int:
    import time
    from net.testnet import make_testnet
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
    if args.json:
        _emit_json(json.loads((Path(args.out) / "testnet.json").read_text()))
        return 0
    print(f"Wrote a {args.n}-validator testnet to {args.out} (genesis {gpath}).")
    print(f"Start every node:  sh {Path(args.out) / 'start.sh'}   (or one by one:)")
    for nd in nodes:
        print("  python node.py " + " ".join(nd.args(gpath)))
    print(f"RPC of node I: http://127.0.0.1:{args.rpc_port}+I; transfers with dev:N keys work as on the devnet.")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`testnet`."""
    tn = sub.add_parser("testnet", help="write genesis, keys and a start script for N local validators",
                        parents=[common])
    tn.add_argument("-n", type=int, default=4, help="number of validators, 1,000,000 GRAD of stake each (default 4)")
    tn.add_argument("--out", metavar="DIR", default="testnet", help="output directory (default ./testnet)")
    tn.add_argument("--rpc-port", type=int, default=8545, help="RPC port of node 0; node I uses it + I")
    tn.add_argument("--p2p-port", type=int, default=26656, help="p2p port of node 0; node I uses it + I")
    tn.set_defaults(func=cmd_testnet)
