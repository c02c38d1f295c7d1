"""Networking: the JSON-RPC server, the Python client and the CLI built on it."""
