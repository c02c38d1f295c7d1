"""Consensus: when blocks are final (the Tendermint machine, the engine over a transport, the
signer, proposer selection, the solo devnet engine).  Validator sets, genesis, votes and
commits are ledger data (ledger/)."""
