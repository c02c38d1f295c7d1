"""gradchain for its users: one place to import from.

    from gradchain import Client, TestChain, PrivateKey, devnet_keys, Tensor, Model, Reverted

`Client` talks to a node over JSON-RPC (gradchain.client; blobs are named by `BlobRef`), `AsyncClient`
is its asyncio twin with the node's subscriptions (gradchain.aclient),
`TestChain` runs the same transactions in memory for tests (gradchain.testing); both
raise the errors of gradchain.errors.  `save_key`/`load_key` write and read key files
(an encrypted keystore when given a password; a wrong one raises `WrongPassword`).  Amounts are base units (gradchain.units converts GRAD).
"""
from __future__ import annotations

from gradchain.aclient import AsyncClient
from gradchain.client import Client, json_arg
from gradchain.errors import (CommitTimeout, ConnectionFailed, ContractFailed, GradchainError, NotFound, OutOfGas,
                              ProofError, Reverted, RpcError, StakingFailed, TxRejected)
from gradchain.testing import TestChain
from gradchain.units import COIN, format_grad, parse_amount
from ledger.blobs import BlobRef
from ledger.genesis import devnet_keys
from ledger.keys import PrivateKey, address_hex, load_key, save_key
from ledger.keystore import WrongPassword
from vm.decimals import Decimal
from vm.tensors import Model, Tensor

__all__ = [
    "Client", "AsyncClient", "TestChain", "PrivateKey", "devnet_keys", "address_hex", "Decimal", "Tensor", "Model",
    "load_key", "save_key", "WrongPassword",
    "json_arg",
    "BlobRef", "COIN", "parse_amount", "format_grad",
    "GradchainError", "RpcError", "TxRejected", "NotFound", "CommitTimeout", "ProofError", "ConnectionFailed",
    "ContractFailed", "Reverted", "OutOfGas", "StakingFailed",
]
