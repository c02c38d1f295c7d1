"""The ledger: keys, canonical encoding, transactions, blocks, state, its commitment and storage."""
