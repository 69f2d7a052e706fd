"""`python -m jetpolicy`: the same as the `jetpolicy` command."""

from __future__ import annotations

import sys

from jetpolicy.cli import main

sys.exit(main())
