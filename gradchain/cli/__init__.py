"""The `gradchain` command (console_scripts entry point `gradchain.cli:main`)."""
from __future__ import annotations

from gradchain.cli.main import main

__all__ = ["main"]
