"""gradchain for its users: the SDK client, the in-process test chain, keys, units and
one exception tree, importable from one place."""
