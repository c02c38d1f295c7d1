"""`gradchain`: the command line for a gradchain node (keys, transfers, contracts, reads,
raw RPC).

    gradchain keys new --out alice.json
    gradchain transfer --key dev:0 --to 0x... --amount 1.5
    gradchain balance 0x... --prove
    gradchain deploy token.py 1000000 --key dev:0
    gradchain send 0xCONTRACT transfer_to dev:1 10 --key dev:0
    gradchain call 0xCONTRACT balance_of dev:1
    gradchain storage 0xCONTRACT balance dev:1 --prove
    gradchain events --contract 0xCONTRACT --name Transfer
    gradchain bond --key dev:1 --amount 1000 | unbond --key dev:1 --amount 400
    gradchain validators [--height H] | evidence --key dev:2 FILE
    gradchain status | block [HEIGHT] | tx HASH | rpc METHOD [PARAMS...]
    gradchain devnet accounts
    gradchain testnet -n 4 --out DIR

Amounts are GRAD with up to 9 decimals (`1.5`), or base units with a `u` suffix
(`1500000000u`); they are parsed and printed with integer arithmetic only.  Contract
arguments are read by `args.parse_contract_arg` (its docstring is the rule).  Output is
text for people, or JSON with `--json`.  Every failure is one line on stderr starting
with `error:` and exit status 1; a failed contract run names its reason, function and
source line.

One module per command group, each with `register(sub, common)` adding its commands to
the parser (keys.py also has `register_devnet`, reads.py `register_rpc`: main.build_parser
calls them in the order `gradchain --help` lists the commands):
keys.py (keys, devnet accounts), reads.py (status, block, tx, balance, rpc), transfers.py,
contracts.py, staking.py, testnet.py.  Below them: args.py (argument values and the
parser class), output.py (JSON and rows), errors.py (CliError and failure texts).  A new
group gets its own module beside these (the ML commands `worker` and `verify-job` of
issue 13 go in ml.py) and one `register` call in main.build_parser.
"""
from __future__ import annotations

from gradchain.cli.main import main

__all__ = ["main"]
