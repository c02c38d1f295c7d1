"""Run one mlcore scenario under several XLA configurations, each in its own process
(XLA reads its flags once, at start), and check every one against the same hashes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> XLA_FLAGS: the configurations whose float results differ (DESIGN 4); integer
# results must not
CONFIGS = {
    "default": "",
    "8 devices": "--xla_force_host_platform_device_count=8",
    "fast math": "--xla_cpu_enable_fast_math=true",
    "sse4.2": "--xla_cpu_max_isa=SSE4_2",
}


def assert_same_everywhere(scenario: str, inputs: Path, expected: dict, configs: dict = CONFIGS) -> None:
    """Run `python -c scenario inputs` under each config, all at once; its last stdout
    line is a JSON object of hashes plus "devices" and "shards", which must be 8 under
    "8 devices" (the batch really was sharded) and 1 elsewhere."""
    procs = {}
    for name, flags in configs.items():
        env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        procs[name] = subprocess.Popen([sys.executable, "-c", scenario, str(inputs)], env=env, cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{name}: {err[-2000:]}"
        got = json.loads(out.strip().splitlines()[-1])
        devices = 8 if name == "8 devices" else 1
        assert (got.pop("devices"), got.pop("shards")) == (devices, devices), name
        assert got == expected, name
