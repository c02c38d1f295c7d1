"""The contract VM: a Python subset validated at deploy, gas-metered and sandboxed."""
