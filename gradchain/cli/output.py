"""Output for people and machines: JSON with --json, aligned `Name: value` rows, block times."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence


def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _rows(rows: Sequence[tuple[str, Any]], indent: str = "") -> None:
    width = max(len(k) for k, _ in rows) + 1
    for k, v in rows:
        print(f"{indent}{k + ':':<{width}} {v}")


def _time(ms: int) -> str:
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d} UTC"
