"""`python -m gradchain.cli`: the `gradchain` command without the installed script."""
from __future__ import annotations

import sys

from gradchain.cli.main import main

sys.exit(main())
