"""Consensus: validator sets, genesis, votes and commits, and the validator loop."""
