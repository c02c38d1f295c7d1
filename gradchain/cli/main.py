"""The `gradchain` command's root: the parser (global --rpc and --json, then each group's
commands), the RPC URL, and main, which turns every failure into one `error:` line on
stderr and exit status 1."""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Sequence

import gradchain.cli.blobs as blobs
import gradchain.cli.contracts as contracts
import gradchain.cli.examples as examples
import gradchain.cli.keys as keys
import gradchain.cli.ml as ml
import gradchain.cli.reads as reads
import gradchain.cli.staking as staking
import gradchain.cli.testnet as testnet
import gradchain.cli.transfers as transfers
from gradchain.cli.args import _Parser
from gradchain.cli.errors import CliError, contract_failure_text
from gradchain.cli.staking import _staking_text
from gradchain.client import DEFAULT_URL, ENV_RPC, Client, default_url
from ledger.keystore import PASSWORD_ENV
from gradchain.errors import (ConnectionFailed, ContractFailed, NotFound, ProofError, RpcError, StakingFailed,
                              TxRejected)




def build_parser() -> argparse.ArgumentParser:
    # --rpc and --json are accepted before or after the subcommand.
    common = _Parser(add_help=False)
    common.add_argument("--rpc", metavar="URL", default=argparse.SUPPRESS,
                        help=f"node JSON-RPC URL (default: ${ENV_RPC}, else {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output")
    common.add_argument("--password-file", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help="password of an encrypted key file, less a trailing newline "
                             f"(default: ${PASSWORD_ENV}, else a prompt on the terminal)")

    p = _Parser(prog="gradchain", parents=[common],
                description="Command line for a gradchain node: keys, transfers, contracts, reads and raw "
                            "JSON-RPC.",
                epilog="Amounts: GRAD with up to 9 decimals (1.5) or base units with a u suffix "
                       "(1500000000u). Keys: a key file, or dev:N for devnet account N.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # Each group adds its commands; `gradchain --help` lists them in this order.
    keys.register(sub, common)
    transfers.register(sub, common)
    reads.register(sub, common)
    contracts.register(sub, common)
    staking.register(sub, common)
    blobs.register(sub, common)
    ml.register(sub, common)
    reads.register_rpc(sub, common)
    keys.register_devnet(sub, common)
    testnet.register(sub, common)
    examples.register(sub, common)
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    args.password_file = getattr(args, "password_file", None)
    args.rpc_url = getattr(args, "rpc", None) or default_url()
    try:
        u = urllib.parse.urlsplit(args.rpc_url)
        ok = u.scheme == "http" and bool(u.hostname) and (u.port is None or u.port > 0)
    except ValueError:
        ok = False
    if not ok:
        raise CliError(f"bad RPC URL {args.rpc_url!r}: expected http://host:port")
    if not getattr(args, "needs_client", False):
        return args.func(args)
    with Client(args.rpc_url, timeout=60) as client:
        return args.func(args, client)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except CliError as e:
        msg = str(e)
    except TxRejected as e:
        msg = f"transaction rejected ({e.reason}): {(e.data or {}).get('message') or e.message}"
    except NotFound as e:
        msg = f"not found: {e.message}"
    except ProofError as e:
        msg = f"proof check FAILED, do not trust this answer: {e}"
    except ContractFailed as e:
        msg = contract_failure_text(e)
    except StakingFailed as e:
        msg = _staking_text(e)
    except ConnectionFailed as e:
        msg = f"cannot reach a node: {e} (is it running? set --rpc URL or ${ENV_RPC})"
    except RpcError as e:
        data = f" {json.dumps(e.data)}" if e.data is not None else ""
        msg = f"RPC error {e.code}: {e.message}{data}"
    except KeyboardInterrupt:
        msg = "interrupted"
    except BrokenPipeError:  # output piped into `head` and the like
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    print(f"error: {msg}", file=sys.stderr)
    return 1
