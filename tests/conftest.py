from __future__ import annotations

import pytest

from tests.nodeproc import NodeProcess
from tests.test_consensus_bft import cluster  # noqa: F401  (simulated validators, shared by the BFT tests)


@pytest.fixture
def node_factory(tmp_path):
    """Start real node processes; every one is killed at the end of the test."""
    started: list[NodeProcess] = []

    def make(*extra: str, name: str = "node", **kw) -> NodeProcess:
        n = NodeProcess(tmp_path / name, *extra, **kw)
        started.append(n)
        return n

    yield make
    for n in started:
        n.kill()


@pytest.fixture
def devnet(node_factory):
    """A running one-validator devnet (its 10 dev accounts are funded)."""
    return node_factory().start()
