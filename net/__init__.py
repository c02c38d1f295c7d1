"""Networking: p2p, block sync, the consensus and mempool reactors, test-only faults, the
JSON-RPC server (net/rpc/) and the local testnet writer.  The SDK and the CLI built on
the RPC are the user's package, gradchain/."""
