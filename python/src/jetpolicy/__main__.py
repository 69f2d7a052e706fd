"""`python -m jetpolicy`: the same as the `jetpolicy` command."""

from __future__ import annotations

import sys
from typing import List

from jetpolicy.cli import main

__all__: List[str] = []

sys.exit(main())
